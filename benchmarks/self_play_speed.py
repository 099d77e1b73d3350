"""Self-play collection speed against the same game's plain multi-agent collection, at the same rows.

Self-play (agents/rollout/self_play.py) makes, per step, the learning policy's one batched call over all R rows
(as the plain multi-agent collector does) and then one batched call per pool snapshot in use over its opponent
rows; with ``--fuse-opponents`` the learner and the snapshots run as one fused forward (agents/model/fused.py).
The target: self-play collection at >= 0.8x the agent-steps/s of plain collection (one shared policy).

Per repeat, in this process, each of the three sides (plain, self-play, self-play fused) gets a fresh collector
and a fresh policy of the run's defaults (or ``--hidden-size``) and one warm-up rollout; then ``--collects``
rounds, in each of which every side times one rollout, the order rotating from round to round. Agent-steps are
the rows alive at each step, every agent counted whichever policy drives it; each rollout is timed by the wall
clock and by this process's CPU time (one torch thread), which leaves out the time other jobs hold the cores.
The ratios: of the medians over all rounds, and the median of the per-round ratios (a side against plain in the
same round, seconds apart, so the machine's load swings cancel out more). The self-play sides' pools are filled
to ``--pool-size`` distinct snapshots before the warm-up, so the timed rollouts play the mix of opponents a long
run plays (with ``--play-latest`` 0.5 and 8 copies, about 4 copies play a snapshot: about 1.1 snapshots in use
per step on FogTeam at the defaults).

    python benchmarks/self_play_speed.py                                  # FogTeam-v0, 8 copies x 2 agents
    python benchmarks/self_play_speed.py --num-envs 16 --hidden-size 64 --repeats 5

Prints one JSON line per round and a summary line with the medians and ratios (wall and CPU clocks) and the
1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import torch

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.backends import make_collector


def start_side(config: TrainConfig, seed: int) -> tuple[Any, list[int]]:
    """A started collector of ``config`` after one warm-up rollout, and its agent-step counter."""
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
    return collector, agent_steps


def time_rollout(collector: Any, agent_steps: list[int]) -> tuple[float, float]:
    """Agent-steps per wall-clock second and per CPU second of this process, of one rollout."""
    agent_steps[0] = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    collector.collect()
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return agent_steps[0] / elapsed, agent_steps[0] / elapsed_cpu


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
    self_play = {"self_play": True, "pool_size": args.pool_size, "play_latest": args.play_latest}
    configs = {
        "plain": plain,
        "self_play": TrainConfig().with_overrides({**overrides, **self_play}).validate(),
        "self_play_fused": TrainConfig().with_overrides({**overrides, **self_play,
                                                         "fuse_opponents": True}).validate(),
    }
    sides = list(configs)
    load_before = os.getloadavg()[0]
    rates: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}  # (wall, cpu) per round
    for repeat in range(args.repeats):
        started = {side: start_side(configs[side], seed=repeat) for side in sides}
        for round_ in range(args.collects):
            shift = (repeat * args.collects + round_) % len(sides)
            line = {"repeat": repeat, "round": round_}
            for side in sides[shift:] + sides[:shift]:
                rate, cpu_rate = time_rollout(*started[side])
                rates[side].append((rate, cpu_rate))
                line[side] = [round(rate, 1), round(cpu_rate, 1)]
            print(json.dumps(line), flush=True)
        for collector, _ in started.values():
            collector.close()
    summary = {"env_id": args.env_id, "rows": plain.env.num_envs * len(make_collector(plain).agent_names),
               "hidden_size": plain.policy.hidden_size, "pool_size": args.pool_size,
               "play_latest": args.play_latest, "rounds": args.repeats * args.collects}
    for clock, column in (("s", 0), ("cpu_s", 1)):
        medians = {side: statistics.median(r[column] for r in side_rates) for side, side_rates in rates.items()}
        summary.update({f"{side}_agent_steps_per_{clock}": round(median, 1) for side, median in medians.items()})
        for side, name in (("self_play", "ratio"), ("self_play_fused", "ratio_fused")):
            paired = statistics.median(a[column] / b[column] for a, b in zip(rates[side], rates["plain"],
                                                                             strict=True))
            summary[f"{name}_{clock}"] = round(medians[side] / medians["plain"], 3)
            summary[f"{name}_paired_{clock}"] = round(paired, 3)
    print(json.dumps({**summary, "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]}))

if __name__ == "__main__":
    main()
