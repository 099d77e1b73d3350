"""Illegal actions over a long masked run: train and evaluate on a masked memory task, and count.

The env (defined here, registered as ``bench/MaskedCue-v0``): step 0 shows a cue, one of ``n`` actions; every
step's ``action_mask`` allows a random subset (at least one legal action per dimension); on the last step only the
cue and one other action are legal, and the reward is 1 for the cue. With ``--action multidiscrete`` the action is
MultiDiscrete([n, 3]) (the second part's mask is random at every step) and the reward reads the first part. The
observation is PettingZoo's ``{"observation", "action_mask"}``.

Two independent counts of illegal actions, both of which must be 0:

- mnemo's: ``summary.json``'s ``action_masks`` (training's collector and the final evaluation check every env
  action against the mask the env gave, agents/rollout/collector.py ``count_illegal_actions``);
- the env's own: each env counts the actions its mask forbade (it does not raise, so a bug would be counted
  rather than end the run), summed over every env the run made in this process (training and evaluation).

    python benchmarks/action_mask_count.py                                   # 1M training steps
    python benchmarks/action_mask_count.py --total-steps 200000 --action multidiscrete

Prints one JSON object: steps, counts, the evaluation's returns, wall time and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Every env of this process adds its steps and illegal actions here (training and evaluation envs are in-process).
ENV_COUNTS = {"steps": 0, "illegal": 0}


class MaskedCue(gym.Env):
    """The masked memory task of the module docstring; counts illegal actions into ``ENV_COUNTS``."""

    metadata = {"render_modes": []}

    def __init__(self, n: int = 6, length: int = 8, action: str = "discrete"):
        self.n, self.length = n, length
        self.sizes = [n] if action == "discrete" else [n, 3]
        self.action_space = spaces.Discrete(n) if action == "discrete" else spaces.MultiDiscrete(self.sizes)
        self.observation_space = spaces.Dict({
            "observation": spaces.Box(0.0, 1.0, (n + 1,), np.float32),
            "action_mask": spaces.MultiBinary(sum(self.sizes)),
        })

    def _random_part(self, size: int) -> np.ndarray:
        part = (self.np_random.random(size) < 0.5).astype(np.int8)
        part[self.np_random.integers(size)] = 1
        return part

    def _obs(self) -> dict:
        x = np.zeros(self.n + 1, dtype=np.float32)
        if self.t == 0:
            x[self.cue] = 1.0
        if self.t == self.length:
            x[self.n] = 1.0
            first = np.zeros(self.n, dtype=np.int8)
            first[[self.cue, (self.cue + 1 + int(self.np_random.integers(self.n - 1))) % self.n]] = 1
        else:
            first = self._random_part(self.n)
        self.mask = np.concatenate([first, *[self._random_part(s) for s in self.sizes[1:]]])
        return {"observation": x, "action_mask": self.mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(self.n))
        return self._obs(), {}

    def step(self, action):
        parts = np.atleast_1d(np.asarray(action)).astype(np.int64)
        offsets = np.cumsum([0, *self.sizes[:-1]])
        ENV_COUNTS["steps"] += 1
        ENV_COUNTS["illegal"] += int(not self.mask[offsets + parts].all())
        if self.t == self.length:
            return self._obs(), float(parts[0] == self.cue), True, False, {}
        self.t += 1
        return self._obs(), 0.0, False, False, {}


gym.register("bench/MaskedCue-v0", entry_point=MaskedCue)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total-steps", type=int, default=1_000_000)
    parser.add_argument("--action", choices=("discrete", "multidiscrete"), default="discrete")
    parser.add_argument("--eval-episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-dir", default=None, help="default: a temporary directory")
    args = parser.parse_args(argv)

    from agents.config import TrainConfig
    from agents.train.trainer import Trainer

    run_dir = args.run_dir or tempfile.mkdtemp(prefix="action_mask_count_")
    config = TrainConfig().with_overrides({
        "env_id": "bench/MaskedCue-v0", "env_kwargs": {"action": args.action}, "hidden_size": 64,
        "num_envs": 16, "num_steps": 64, "bptt_len": 16, "num_minibatches": 4, "update_epochs": 4,
        "total_steps": args.total_steps, "eval_episodes": args.eval_episodes, "eval_mode": "both",
        "seed": args.seed, "progress": False, "device": "cpu", "torch_threads": 1, "run_dir": run_dir})
    start = time.perf_counter()
    summary = Trainer(config.validate(), overwrite=True).train()
    wall = time.perf_counter() - start
    counts = summary["action_masks"]
    result = {
        "env": "bench/MaskedCue-v0", "action": args.action, "seed": args.seed,
        "training_steps": summary["total_steps"], "eval_episodes": args.eval_episodes,
        "mnemo_counts": counts,
        "env_counts": dict(ENV_COUNTS),
        "illegal_total": counts["training"]["illegal"] + counts["evaluation"]["illegal"] + ENV_COUNTS["illegal"],
        "eval_return_mean": summary["eval_return_mean"],
        "eval_sampled_return_mean": summary["eval_sampled_return_mean"],
        "wall_s": round(wall, 1), "sps": summary["sps"], "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(), "run_dir": run_dir,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    out = main()
    sys.exit(0 if out["illegal_total"] == 0 else 1)
