"""Rollout throughput of the local backend vs Ray with 1 and 2 workers, a light env and a heavy one, side by side.

For each env: env steps per second of collection (``collect`` after ``set_weights``, as the trainer calls
them) for the local vector env of N envs, Ray with 1 worker of N envs and Ray with 2 workers of N / 2; the
Ray overhead per iteration (Ray W=1 minus local: the weights' broadcast, the call, the fragment's return);
the learner's update time per iteration (one PPO update of an N x T rollout); and the scaling model of
docs/ray.md (synchronous PPO: an iteration is the slowest actor's rollout, the overhead and the update)
with its projections for 8, 64 and 512 cores.

    python benchmarks/ray_scaling.py --iterations 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.collector import local_collector
from agents.train.trainer import Trainer

ENVS = {"light (TMaze-v0)": "mnemo/TMaze-v0", "heavy (FogMazePixels-v0)": "mnemo/FogMazePixels-v0"}


def config(env_id: str, num_envs: int, num_steps: int, **run) -> TrainConfig:
    return TrainConfig().with_overrides({"env_id": env_id, "num_envs": num_envs, "num_steps": num_steps,
                                         "progress": False, "eval_episodes": 0, "device": "cpu", **run}).validate()


def collect_seconds(factory, cfg: TrainConfig, iterations: int) -> float:
    """Mean seconds per ``set_weights`` + ``collect`` after one warm-up rollout."""
    collector = factory(cfg)
    try:
        torch.manual_seed(0)
        policy = RecurrentActorCritic(collector.observation_space, collector.action_space, cfg.policy)
        collector.start(policy, torch.device("cpu"), 0, 0)
        collector.collect()
        start = time.perf_counter()
        for _ in range(iterations):
            collector.set_weights(policy.state_dict())
            collector.collect()
        return (time.perf_counter() - start) / iterations
    finally:
        collector.close()


def update_seconds(cfg: TrainConfig, iterations: int) -> float:
    """Mean seconds of the learner's PPO update of one rollout (the trainer's own ``_update``)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg.with_overrides({"run_dir": str(Path(tmp) / "run")}).validate(),
                          collector_factory=local_collector)
        try:
            rollout = trainer.collector.collect()
            trainer._update(rollout, cfg.ppo.clip_coef)  # warm-up
            start = time.perf_counter()
            for _ in range(iterations):
                trainer._update(rollout, cfg.ppo.clip_coef)
            return (time.perf_counter() - start) / iterations
        finally:
            trainer.close()


def model(per_actor_sps: float, envs_per_actor: int, num_steps: int, overhead_s: float, update_s_per_step: float,
          workers: int) -> float:
    """Env steps/s with ``workers`` actors of ``envs_per_actor`` envs: batch / (rollout + overhead + update)."""
    batch = workers * envs_per_actor * num_steps
    rollout_s = envs_per_actor * num_steps / per_actor_sps
    return batch / (rollout_s + overhead_s + batch * update_s_per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ray

    from agents.rollout.ray_collector import ray_collector, worker_python_path

    n, t = args.num_envs, args.num_steps
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": worker_python_path()}})
    print(f"N = {n} envs, T = {t} steps per rollout, {args.iterations} timed iterations each; steps/s of collection")
    print(f"{'env':26s} {'local':>8s} {'ray W=1':>8s} {'ray W=2':>8s} {'overhead':>9s} {'update':>8s}")
    results = {}
    try:
        for label, env_id in ENVS.items():
            local = collect_seconds(local_collector, config(env_id, n, t), args.iterations)
            ray1 = collect_seconds(ray_collector, config(env_id, n, t, backend="ray", num_workers=1), args.iterations)
            ray2 = collect_seconds(ray_collector, config(env_id, n, t, backend="ray", num_workers=2), args.iterations)
            update = update_seconds(config(env_id, n, t), args.iterations)
            batch = n * t
            results[label] = (batch / local, ray1 - local, update / batch)
            print(f"{label:26s} {batch / local:8.0f} {batch / ray1:8.0f} {batch / ray2:8.0f} "
                  f"{(ray1 - local) * 1e3:7.1f}ms {update * 1e3:6.0f}ms")
    finally:
        ray.shutdown()
    print("\nModel (docs/ray.md): one core per actor of N envs, one for the learner; steps/s of training")
    print(f"{'env':26s} {'8 cores':>9s} {'64 cores':>9s} {'512 cores':>9s} {'learner cap':>11s}")
    for label, (actor_sps, overhead, update_per_step) in results.items():
        cells = [model(actor_sps, n, t, max(overhead, 0.0), update_per_step, cores - 1) for cores in (8, 64, 512)]
        print(f"{label:26s} " + " ".join(f"{c:9.0f}" for c in cells) + f" {1 / update_per_step:11.0f}")


if __name__ == "__main__":
    main()
