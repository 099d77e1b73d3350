"""Single-env steps per second of the memory tasks and the wrapper envs.

Random actions (drawn up front, so the figure is the env's cost, not the
sampler's), resets included. Each memory task is timed twice: the bare class
and ``gym.make`` (which adds the passive checker, order enforcing and the
time limit). The masked classic-control ids are shown next to their unmasked
Gymnasium originals, so the last column is the cost of the wrapper.

    python benchmarks/env_speed.py --seconds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: F401  (registers the ids)
from envs.memory import CountRecallEnv, GatedMemoryEnv, TMazeEnv

N_ACTIONS = 1 << 14


def steps_per_second(make: Callable[[], gym.Env], seconds: float, seed: int = 0) -> float:
    env = make()
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(N_ACTIONS)]
    env.reset(seed=seed)
    steps, i = 0, 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        # Check the clock once per block of steps, not per step.
        for _ in range(1024):
            _, _, terminated, truncated, _ = env.step(actions[i])
            i = (i + 1) & (N_ACTIONS - 1)
            if terminated or truncated:
                env.reset()
        steps += 1024
        now = time.perf_counter()
        if now >= deadline:
            env.close()
            return steps / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per env")
    args = parser.parse_args()

    memory_tasks: list[tuple[str, Callable[[], gym.Env], str]] = [
        ("TMaze (L=10)", TMazeEnv, "mnemo/TMaze-v0"),
        ("TMaze (L=100)", lambda: TMazeEnv(corridor_length=100), "mnemo/TMazeLong-v0"),
        ("GatedMemory", GatedMemoryEnv, "mnemo/GatedMemory-v0"),
        ("CountRecall", CountRecallEnv, "mnemo/CountRecall-v0"),
    ]
    print(f"{'memory task':<16}{'bare class':>14}{'gym.make':>14}   (steps/s, {args.seconds:g} s each)")
    for name, make_bare, env_id in memory_tasks:
        bare = steps_per_second(make_bare, args.seconds)
        made = steps_per_second(lambda env_id=env_id: gym.make(env_id), args.seconds)
        print(f"{name:<16}{bare:>14,.0f}{made:>14,.0f}")

    wrapped = [
        ("mnemo/CartPoleNoVel-v1", "CartPole-v1"),
        ("mnemo/CartPoleFlicker-v1", "CartPole-v1"),
        ("mnemo/PendulumNoVel-v1", "Pendulum-v1"),
        ("mnemo/AcrobotNoVel-v1", "Acrobot-v1"),
        ("mnemo/MountainCarNoVel-v0", "MountainCar-v0"),
    ]
    print(f"\n{'wrapper env (gym.make)':<28}{'wrapped':>12}{'original':>12}{'ratio':>8}")
    for env_id, original_id in wrapped:
        w = steps_per_second(lambda env_id=env_id: gym.make(env_id), args.seconds)
        o = steps_per_second(lambda original_id=original_id: gym.make(original_id), args.seconds)
        print(f"{env_id:<28}{w:>12,.0f}{o:>12,.0f}{w / o:>8.2f}")


if __name__ == "__main__":
    main()
