"""What the exploration aids cost: training steps per second without any, with RND, with NovelD and with
correlated sampling noise, side by side.

Trains a vector env (``mnemo/TMaze-v0``) and a pixel env (``mnemo/DarkCatchPixels-v0``) with the defaults
(``--preset none``) for a few iterations per mode, ``--repeats`` times, and prints the median of each run's
steps per second (collection + update, no evaluation), with the load average before and after. The bonus's
work is the novelty of every observation of a rollout (with ``--intrinsic-history 2``, the default, of it and
its last change), the predictor's training on a share of it (``--intrinsic-update-fraction``, once per epoch
and minibatch), the second value head and, for NovelD, hashing each observation. The noise's is one AR(1)
draw per env and step.

    python benchmarks/exploration_cost.py
    python benchmarks/exploration_cost.py --repeats 5 --iterations 4
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.config import TrainConfig  # noqa: E402
from agents.train.trainer import Trainer  # noqa: E402

ENVS = {
    "vector": ("mnemo/TMaze-v0", {}),
    "pixels": ("mnemo/DarkCatchPixels-v0", {"hidden_size": 64}),
}
# Each mode's settings over the defaults: no exploration aid, either bonus, correlated sampling noise.
MODES = {"none": {}, "rnd": {"exploration": "rnd"}, "noveld": {"exploration": "noveld"},
         "noise": {"noise_correlation": 0.98}}


def steps_per_second(env_id: str, extra: dict, mode: str, iterations: int, seed: int) -> float:
    """One short run's training speed (env steps / s over collection and updates)."""
    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig().with_overrides({
            "env_id": env_id, "preset": "none", **MODES[mode], "num_envs": 8, "num_steps": 128,
            "total_steps": 8 * 128 * iterations, "eval_episodes": 0, "progress": False, "device": "cpu",
            "seed": seed, "run_dir": run_dir, **extra})
        return float(Trainer(config.validate(), overwrite=True).train()["sps"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per env and mode (the median is printed)")
    parser.add_argument("--iterations", type=int, default=3, help="rollouts of 8 x 128 steps per run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"1 torch thread; load average before {load_before[0]:.2f}")
    print(f"{'env':<8} {'id':<26} " + " ".join(f"{mode + ' sps':>12}" for mode in MODES)
          + "".join(f" {mode + ' / none':>14}" for mode in MODES if mode != "none"))
    for kind, (env_id, extra) in ENVS.items():
        medians: dict[str, list[float]] = {mode: [] for mode in MODES}
        # Modes interleave within each repeat, so a change in the machine's load hits every mode alike.
        for repeat in range(args.repeats):
            for mode in MODES:
                medians[mode].append(steps_per_second(env_id, extra, mode, args.iterations, seed=repeat + 1))
        sps = {mode: statistics.median(values) for mode, values in medians.items()}
        print(f"{kind:<8} {env_id:<26} " + " ".join(f"{sps[mode]:>12.0f}" for mode in MODES)
              + "".join(f" {sps[mode] / sps['none']:>14.2f}" for mode in MODES if mode != "none"))
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
