"""Multi-agent collection throughput: the local backend vs Ray with 1 and 2 workers, on ``mnemo/FogTeam-v0``.

For N env copies (``--num-envs``) of T steps per rollout: agent-steps per second of collection (``set_weights``
+ ``collect``, as the trainer calls them, after one warm-up rollout; an agent-step is a row alive at a step),
for the local multi-agent collector, Ray with 1 worker of N copies and Ray with 2 workers of N / 2. One torch
thread in this process; each Ray actor runs with one. The machine's load changes these figures: report it.

    python benchmarks/ray_multiagent.py --num-envs 8 --num-steps 64 --iterations 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.backends import make_collector


def config(env_id: str, num_envs: int, num_steps: int, **run) -> TrainConfig:
    return TrainConfig().with_overrides({"env_id": env_id, "num_envs": num_envs, "num_steps": num_steps,
                                         "progress": False, "eval_episodes": 0, "device": "cpu", **run}).validate()


def agent_steps_per_second(cfg: TrainConfig, iterations: int) -> float:
    """Alive rows stepped per second over ``iterations`` rollouts after one warm-up rollout."""
    collector = make_collector(cfg)
    try:
        torch.manual_seed(0)
        policy = RecurrentActorCritic(collector.observation_space, collector.action_space, cfg.policy,
                                      agents=collector.agent_names, state_space=collector.state_space)
        collector.start(policy, torch.device("cpu"), 0, 0)
        collector.collect()
        steps, start = 0.0, time.perf_counter()
        for _ in range(iterations):
            collector.set_weights(policy.state_dict())
            steps += float(collector.collect().alive.sum())
        return steps / (time.perf_counter() - start)
    finally:
        collector.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="mnemo/FogTeam-v0")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ray

    from agents.rollout.ray_collector import worker_python_path

    n, t = args.num_envs, args.num_steps
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": worker_python_path()}})
    print(f"{args.env_id}: N = {n} env copies, T = {t} steps per rollout, {args.iterations} timed rollouts each; "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    try:
        rates = {
            "local": agent_steps_per_second(config(args.env_id, n, t), args.iterations),
            "ray W=1": agent_steps_per_second(config(args.env_id, n, t, backend="ray", num_workers=1),
                                              args.iterations),
            "ray W=2": agent_steps_per_second(config(args.env_id, n, t, backend="ray", num_workers=2),
                                              args.iterations),
        }
    finally:
        ray.shutdown()
    for label, rate in rates.items():
        print(f"{label:8s} {rate:9.0f} agent-steps/s of collection")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
