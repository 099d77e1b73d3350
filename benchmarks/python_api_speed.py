"""Training speed through the Python API against ``python train.py``, with the same config, side by side.

Each side runs in a fresh subprocess: ``python train.py FLAGS``, and a script that builds the same config
(``agents.train.cli.resolve_config(FLAGS)``) and calls ``Trainer(config).train()`` without touching torch's
thread setting, as a user's script would. Both report ``sps`` (steps per second of the training loop, the
final evaluation left out) in their summary.json; the sides alternate, and the median of ``--repeats`` runs
each is printed with their ratio, and the ratio of each back-to-back pair.

    python benchmarks/python_api_speed.py                       # the T-maze preset, 20,480 steps, 3 repeats
    python benchmarks/python_api_speed.py --flags "--env-id mnemo/CartPoleNoVel-v1 --total-steps 8192"
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXED = ["--eval-episodes", "0", "--no-progress", "--device", "cpu", "--seed", "1"]

API_SCRIPT = """
import sys
from agents.train.cli import resolve_config
from agents.train.trainer import Trainer

config, _ = resolve_config(sys.argv[1:])
Trainer(config).train()
"""


def run_side(side: str, flags: list[str], run_dir: Path, root: Path) -> float:
    """One run in a fresh process; its summary.json's steps per second."""
    argv = [*flags, *FIXED, "--run-dir", str(run_dir)]
    command = ([sys.executable, "train.py", *argv] if side == "train.py"
               else [sys.executable, "-c", API_SCRIPT, *argv])
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads((run_dir / "summary.json").read_text())["sps"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", default="--env-id mnemo/TMaze-v0 --total-steps 20480",
                        help="train.py flags both sides run with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = parser.parse_args(argv)
    flags = shlex.split(args.flags)
    import torch

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads by default, torch "
          f"{torch.__version__}, Python {platform.python_version()}; {args.root}")
    print(f"flags: {' '.join(flags + FIXED)}")
    sps: dict[str, list[float]] = {"train.py": [], "Python API": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for side in sps:
                sps[side].append(run_side(side, flags, Path(tmp) / f"{side}-{repeat}", args.root))
    for side, values in sps.items():
        print(f"{side:>10}: {statistics.median(values):8.0f} steps/s (median; runs: "
              f"{', '.join(f'{v:.0f}' for v in values)})")
    # Each pair ran back to back, so a pair's ratio is the steadier figure on a machine shared with other work.
    pairs = [api / cli for api, cli in zip(sps["Python API"], sps["train.py"], strict=True)]
    ratio = statistics.median(sps["Python API"]) / statistics.median(sps["train.py"])
    print(f"Python API / train.py: {ratio:.2f} (medians); per pair {', '.join(f'{r:.2f}' for r in pairs)}, "
          f"median {statistics.median(pairs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
