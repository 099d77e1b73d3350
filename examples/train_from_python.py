"""Train, evaluate and play a recurrent PPO agent from a Python script (docs/api.md explains each step).

```
python examples/train_from_python.py                          # the T-maze with its preset, 20,000 steps
python examples/train_from_python.py --total-steps 512 --run-dir /tmp/tmaze
```

The same run as ``python train.py --env-id mnemo/TMaze-v0 --total-steps 20000``, with three things a
script adds: a callback after every iteration, a collector factory of its own (here the local vector env,
counting rollouts), and the trained policy played afterwards in a game loop of its own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym

ROOT = str(Path(__file__).resolve().parents[1])  # the repository: agents and the built-in envs
if ROOT not in sys.path:
    sys.path.append(ROOT)

import envs  # noqa: E402, F401  (registers the mnemo/ ids)
from agents import PolicyRunner  # noqa: E402
from agents.config import TrainConfig  # noqa: E402
from agents.rollout.collector import local_collector  # noqa: E402
from agents.train.evaluation import evaluate_run  # noqa: E402
from agents.train.trainer import Trainer  # noqa: E402
from envs.presets import preset_for  # noqa: E402

ENV_ID = "mnemo/TMaze-v0"


class CountingCollector:
    """A collector of one's own: here the local vector env, counting the rollouts it hands over.

    ``env_id`` names the env it runs (the one the config's env settings make), so that the final evaluation,
    ``mnemo watch`` and ``--resume`` make the same env; a collector without it trains with eval_episodes=0.
    """

    def __init__(self, config: TrainConfig):
        self.inner = local_collector(config)
        self.env_id = config.env.env_id
        self.num_envs = self.inner.num_envs
        self.observation_space, self.action_space = self.inner.observation_space, self.inner.action_space
        self.rollouts = 0

    def collect(self):
        self.rollouts += 1
        return self.inner.collect()

    def __getattr__(self, name):  # start, set_weights, state_dict, load_state_dict, close: the local ones
        return getattr(self.inner, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=20_000)
    parser.add_argument("--run-dir", default="runs/tmaze_from_python")
    parser.add_argument("--episodes", type=int, default=5, help="episodes to evaluate and to play")
    args = parser.parse_args(argv)

    # 1. Settings: defaults < the env's preset < this script's overrides, checked before anything runs.
    config = TrainConfig().with_overrides({
        **preset_for(ENV_ID), "env_id": ENV_ID, "preset": ENV_ID, "total_steps": args.total_steps,
        "run_dir": args.run_dir, "eval_episodes": args.episodes, "progress": False,
    }).validate()

    # 2. Train. The trainer applies config.run.torch_threads while it runs; overwrite=True starts afresh.
    made: list[CountingCollector] = []

    def collector_factory(cfg: TrainConfig) -> CountingCollector:
        made.append(CountingCollector(cfg))
        return made[-1]

    def on_iteration(trainer: Trainer) -> None:
        if trainer.iteration % 10 == 0 or trainer.global_step >= trainer.config.ppo.total_steps:
            recent = sum(trainer.recent_returns) / max(len(trainer.recent_returns), 1)
            print(f"step {trainer.global_step:>7}  recent return {recent:+.2f}", flush=True)

    trainer = Trainer(config, overwrite=True, collector_factory=collector_factory)
    summary = trainer.train(on_iteration=on_iteration)
    print(f"trained {summary['total_steps']} steps in {made[0].rollouts} rollouts; "
          f"greedy eval return {summary['eval_return_mean']:+.2f}")

    # 3. Evaluate the saved run again, e.g. with sampled actions (its config names the env).
    sampled = evaluate_run(args.run_dir, episodes=args.episodes, deterministic=False)
    print(f"sampled eval return {sampled.mean():+.2f} over {len(sampled)} episodes")

    # 4. Play it in a game loop: one observation in, one action out; the runner keeps the memory.
    runner = PolicyRunner.load(args.run_dir)
    env = gym.make(ENV_ID)
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=episode)
        runner.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(runner.act(obs))
            total += float(reward)
            done = terminated or truncated
        print(f"episode {episode}: return {total:+.2f}")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
