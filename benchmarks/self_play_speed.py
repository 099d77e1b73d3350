"""Self-play collection speed against the same game's plain multi-agent collection, at the same rows.

Self-play (agents/rollout/self_play.py) makes, per step, the learning policy's one batched call over all R rows
(as the plain multi-agent collector does) and then one batched call per pool snapshot in use over its opponent
rows. The target: self-play collection at >= 0.8x the agent-steps/s of plain collection (one shared policy).

Per repeat, in this process, the two sides alternate (the order alternating too), each with a fresh collector
and a fresh policy of the run's defaults (or ``--hidden-size``): one warm-up rollout, then ``--collects``
timed rollouts; agent-steps are the rows alive at each step, every agent counted whichever policy drives it.
The self-play side's pool is filled to ``--pool-size`` distinct snapshots before the warm-up, so the timed
rollouts play the mix of opponents a long run plays (with ``--play-latest`` 0.5 and 8 copies, about 4 copies
play a snapshot, mostly distinct ones: up to 4 extra calls per step).

    python benchmarks/self_play_speed.py                                  # FogTeam-v0, 8 copies x 2 agents
    python benchmarks/self_play_speed.py --num-envs 16 --hidden-size 64 --repeats 5

Prints one JSON line per repeat and a summary line with the medians and their ratio, and the 1-minute load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.backends import make_collector


def measure(config: TrainConfig, collects: int, seed: int) -> float:
    """Agent-steps/s of ``collects`` rollouts of ``config``'s collector, after one warm-up rollout."""
    collector = make_collector(config)
    policy = RecurrentActorCritic(collector.observation_space, collector.action_space, config.policy,
                                  agents=collector.agent_names)
    collector.start(policy, torch.device("cpu"), seed, seed)
    pool = getattr(collector, "pool", None)
    if pool is not None:
        while len(pool.pool) < config.opponents.pool_size:
            pool.add(policy, 0)
    agent_steps = [0]
    step = collector.envs.step

    def counting_step(actions):
        agent_steps[0] += int(collector.envs.alive.sum())
        return step(actions)

    collector.envs.step = counting_step
    collector.collect()
    agent_steps[0] = 0
    start = time.perf_counter()
    for _ in range(collects):
        collector.collect()
    elapsed = time.perf_counter() - start
    collector.close()
    return agent_steps[0] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="mnemo/FogTeam-v0")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=None, help="default: the library's")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--play-latest", type=float, default=0.5)
    parser.add_argument("--collects", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"env_id": args.env_id, "num_envs": args.num_envs, "num_steps": args.num_steps}
    if args.hidden_size is not None:
        overrides["hidden_size"] = args.hidden_size
    plain = TrainConfig().with_overrides(overrides).validate()
    self_play = TrainConfig().with_overrides({**overrides, "self_play": True, "pool_size": args.pool_size,
                                              "play_latest": args.play_latest}).validate()
    load_before = os.getloadavg()[0]
    results: dict[str, list[float]] = {"plain": [], "self_play": []}
    for repeat in range(args.repeats):
        order = ["plain", "self_play"] if repeat % 2 == 0 else ["self_play", "plain"]
        for side in order:
            rate = measure(plain if side == "plain" else self_play, args.collects, seed=repeat)
            results[side].append(rate)
            print(json.dumps({"repeat": repeat, "side": side, "agent_steps_per_s": round(rate, 1)}), flush=True)
    medians = {side: statistics.median(rates) for side, rates in results.items()}
    print(json.dumps({
        "env_id": args.env_id, "rows": plain.env.num_envs * len(make_collector(plain).agent_names),
        "hidden_size": plain.policy.hidden_size, "pool_size": args.pool_size, "play_latest": args.play_latest,
        "plain_agent_steps_per_s": round(medians["plain"], 1),
        "self_play_agent_steps_per_s": round(medians["self_play"], 1),
        "ratio": round(medians["self_play"] / medians["plain"], 3),
        "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
