"""Behaviour fingerprint: short training runs whose results must not change under a refactor.

Each run trains a few thousand steps with seed 3 through ``python train.py`` and records the sha256 of the
final policy's tensors, every return and length in ``summary.json`` (wall times and speeds left out) and the
sha256 of its ONNX export. Together the runs cover the three recurrent cores and the stack core, two
layers, a separate critic on and off its own thread, carry mode, refreshed start states, Box actions,
correlated sampling noise, reward and value normalisation, previous action and reward, async envs and a
pixel (CNN) env. Run it before and after a change that should not alter behaviour and compare the files:

    python benchmarks/fingerprint.py --out /tmp/before.json
    ... change the code ...
    python benchmarks/fingerprint.py --out /tmp/after.json
    diff /tmp/before.json /tmp/after.json && echo identical

About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--seed", "3", "--eval-episodes", "3", "--device", "cpu"]
SMALL = ["--num-envs", "4", "--num-steps", "64", "--total-steps", "2048"]

RUNS: dict[str, list[str]] = {
    "tmaze-preset": ["--env-id", "mnemo/TMaze-v0", "--total-steps", "4096"],
    "tmaze-defaults": ["--env-id", "mnemo/TMaze-v0", "--preset", "none", *SMALL],
    "countrecall-gru-2layers": ["--env-id", "mnemo/CountRecall-v0", "--preset", "none", "--core", "gru",
                                "--num-layers", "2", "--hidden-size", "32", *SMALL],
    "gated-none": ["--env-id", "mnemo/GatedMemory-v0", "--preset", "none", "--core", "none", *SMALL],
    "tmaze-stack": ["--env-id", "mnemo/TMaze-v0", "--preset", "none", "--core", "stack", "--stack-len", "3",
                    *SMALL],
    "cartpole-separate-parallel": ["--env-id", "mnemo/CartPoleNoVel-v1", "--preset", "none",
                                   "--separate-critic", "--parallel-critic", "--hidden-size", "32", *SMALL],
    "cartpole-separate-serial": ["--env-id", "mnemo/CartPoleNoVel-v1", "--preset", "none",
                                 "--separate-critic", "--no-parallel-critic", "--hidden-size", "32", *SMALL],
    "tmaze-carry-refresh": ["--env-id", "mnemo/TMaze-v0", "--preset", "none", "--carry-across-episodes",
                            "--refresh-start-states", "--hidden-size", "32", *SMALL],
    "pendulum-box-norms": ["--env-id", "mnemo/PendulumNoVel-v1", "--preset", "none", "--normalize-reward",
                           "--normalize-value", "--hidden-size", "32", *SMALL],
    "mountaincar-noise": ["--env-id", "mnemo/MountainCarNoVel-v0", "--preset", "none", "--noise-correlation",
                          "0.98", "--hidden-size", "32", *SMALL],
    "darkcatch-prev-async": ["--env-id", "mnemo/DarkCatch-v0", "--preset", "none", "--prev-action-reward",
                             "--async-envs", "--hidden-size", "32", *SMALL],
    "fogmaze-pixels": ["--env-id", "mnemo/FogMazePixels-v0", "--preset", "none", "--hidden-size", "32",
                       "--num-envs", "4", "--num-steps", "32", "--total-steps", "512"],
}

# Summary keys that measure the machine, not the behaviour.
_TIMING = ("wall_time_s", "sps", "checkpoint", "run_dir")


def _export_module() -> str:
    for name in ("agents.deploy.export_cli", "agents.export"):
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) and importlib.util.find_spec(name):
            return name
    raise SystemExit("no export module found")


def _tensors_sha(tensors: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint_run(name: str, flags: list[str], workdir: Path) -> dict:
    run_dir = workdir / name
    train = [sys.executable, "train.py", *flags, *COMMON, "--run-dir", str(run_dir)]
    done = subprocess.run(train, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"train exited {done.returncode}: {done.stderr[-2000:]}"}
    payload = torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    onnx_path = workdir / f"{name}.onnx"
    export = [sys.executable, "-m", _export_module(), str(run_dir), "--out", str(onnx_path), "--no-verify"]
    exported = subprocess.run(export, cwd=ROOT, capture_output=True, text=True)
    return {
        "policy_sha256": _tensors_sha(payload["policy"]),
        "optimizer_sha256": _tensors_sha({f"{k}": v for k, v in _flat_tensors(payload["optimizer"]).items()}),
        "summary": {k: v for k, v in summary.items() if k not in _TIMING},
        "onnx_sha256": (hashlib.sha256(onnx_path.read_bytes()).hexdigest() if exported.returncode == 0
                        else f"export failed: {exported.stderr[-500:]}"),
    }


def _flat_tensors(tree, prefix: str = "") -> dict:
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_flat_tensors(value, f"{prefix}/{key}"))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            out.update(_flat_tensors(value, f"{prefix}/{i}"))
    elif isinstance(tree, torch.Tensor):
        out[prefix] = tree
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write the fingerprint to")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
    parser.add_argument("--only", nargs="*", help="run only these names")
    args = parser.parse_args()
    names = args.only or list(RUNS)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(names, pool.map(lambda n: fingerprint_run(n, RUNS[n], Path(tmp)), names), strict=True))
    Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    failed = [n for n, r in results.items() if "error" in r]
    print(f"wrote {args.out}: {len(results)} runs" + (f", FAILED: {failed}" if failed else ""))


if __name__ == "__main__":
    main()
