"""Play a game with an exported mnemo policy using only numpy and onnxruntime (no torch).

```
python train.py --env-id mnemo/TMaze-v0 --total-steps 100000 --run-dir runs/tmaze
mnemo export runs/tmaze --format onnx --out tmaze.onnx
python examples/onnx_game_loop.py tmaze.onnx --env-id mnemo/TMaze-v0 --episodes 5
```

The runner is ``agents.deploy.onnx_runner.OnnxRunner`` (documented in docs/runtime.md): the same
per-agent ids, join / leave and ``reset`` as ``agents.PolicyRunner``, on numpy and onnxruntime.
This file is only the game loop around it; neither it nor the runner imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = str(Path(__file__).resolve().parents[1])  # the repository: agents.deploy.onnx_runner and the built-in envs
if ROOT not in sys.path:
    sys.path.append(ROOT)

from agents.deploy.onnx_runner import OnnxRunner  # noqa: E402  (after the repository is on the path)


def play(runner: OnnxRunner, env: Any, episodes: int, seed: int = 0, deterministic: bool = True) -> list[float]:
    """The game loop: returns of ``episodes`` episodes of a single-agent Gymnasium env."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        runner.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(runner.act(obs, deterministic=deterministic))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an .onnx file written by mnemo export")
    parser.add_argument("--env-id", default="mnemo/TMaze-v0")
    parser.add_argument("--env-import", default="envs", help="module that registers the env id ('' for none)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", action="store_true", help="sample actions instead of the greedy ones")
    args = parser.parse_args(argv)

    import gymnasium as gym

    if args.env_import:
        importlib.import_module(args.env_import)
    runner = OnnxRunner(args.model, seed=args.seed)
    env = gym.make(args.env_id)
    try:
        returns = play(runner, env, args.episodes, seed=args.seed, deterministic=not args.sample)
    finally:
        env.close()
    print(f"{args.env_id}: {len(returns)} episodes, mean return {np.mean(returns):.3f} "
          f"({runner.metadata['core']}, {runner.metadata['mode']} mode)")
    for i, r in enumerate(returns):
        print(f"  episode {i}: return {r:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
