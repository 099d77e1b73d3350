"""Peer for the defaults benchmark: sb3-contrib's RecurrentPPO with its own defaults on any Gymnasium id.

Runs in a separate virtual environment that has sb3-contrib (never a dependency
of this package), e.g.::

    python -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0 sb3-contrib popgym minigrid
    /tmp/peer/bin/python benchmarks/sb3_defaults_peer.py --env-id popgym-CountRecallEasy-v0 \
        --env-import popgym --steps 100000 --seed 1

Everything is RecurrentPPO's default (n_steps 128, batch_size 128, 10 epochs,
lr 3e-4, no entropy bonus, a 256-unit LSTM for the actor and another for the
critic), except the number of envs (``--num-envs``, default 8 as in this
project's default config, so both sides step the same vector of envs). The
policy class follows the observation space: ``CnnLstmPolicy`` for an image
Box of at least 36x36 (the smallest its CNN takes), ``MultiInputLstmPolicy``
for a Dict, ``MlpLstmPolicy`` otherwise.

Prints one JSON line: steps, wall time, steps/s, the mean return of the last
``--window`` training episodes, and the greedy and sampled evaluation returns
(``--eval-episodes`` each), plus the training curve as (step, return) pairs so
that the caller can find when a threshold was first reached.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor


class FlattenFeatures(FlattenExtractor):
    """SB3's default extractor, with its size as a Python int: SB3 computes it as a numpy int for
    MultiDiscrete spaces, which recent torch refuses as nn.LSTM's input_size. Same computation otherwise."""

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space)
        self._features_dim = int(self._features_dim)


class EpisodeLog(BaseCallback):
    """Records (env step, return) for every finished training episode."""

    def __init__(self) -> None:
        super().__init__()
        self.curve: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.curve.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def evaluate(model: RecurrentPPO, make, episodes: int, seed: int, deterministic: bool) -> list[float]:
    """Plain episode loop with the LSTM state carried and reset at episode starts."""
    env = make()
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        state, start, total, done = None, np.ones((1,), dtype=bool), 0.0, False
        while not done:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            start = np.zeros((1,), dtype=bool)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--env-import", action="append", default=[])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--eval-episodes", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path.cwd()))
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
    for module in args.env_import:
        importlib.import_module(module)

    make = lambda: gym.make(args.env_id)  # noqa: E731
    space = make().observation_space
    # SB3's CNN (NatureCNN) needs frames of at least 36x36; smaller images (a 7x7 grid) go to the MLP policy.
    frame = is_image_space(space) and min(space.shape[:2] if space.shape[-1] in (1, 3, 4) else space.shape[1:]) >= 36
    policy = ("MultiInputLstmPolicy" if isinstance(space, gym.spaces.Dict)
              else "CnnLstmPolicy" if frame else "MlpLstmPolicy")
    env = make_vec_env(make, n_envs=args.num_envs, seed=args.seed)
    policy_kwargs = {"features_extractor_class": FlattenFeatures} if policy == "MlpLstmPolicy" else None
    model = RecurrentPPO(policy, env, seed=args.seed, verbose=0, policy_kwargs=policy_kwargs)
    log = EpisodeLog()
    start = time.perf_counter()
    model.learn(args.steps, callback=log)
    wall = time.perf_counter() - start
    recent = [r for _, r in log.curve[-args.window:]]
    greedy = evaluate(model, make, args.eval_episodes, args.seed + 10_000, deterministic=True)
    sampled = evaluate(model, make, args.eval_episodes, args.seed + 20_000, deterministic=False)
    print(json.dumps({
        "env_id": args.env_id, "seed": args.seed, "policy": policy, "steps": args.steps, "wall_s": round(wall, 2),
        "sps": round(args.steps / wall, 1), "train_return_recent": float(np.mean(recent)) if recent else None,
        "eval_return_mean": float(np.mean(greedy)), "eval_sampled_return_mean": float(np.mean(sampled)),
        "eval_sampled_return_std": float(np.std(sampled)), "curve": log.curve,
    }))


if __name__ == "__main__":
    main()
