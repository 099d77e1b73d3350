"""Multi-agent throughput against single-agent throughput at the same number of policy rows.

A multi-agent run with N env copies of A agents puts R = N x A rows through the policy in one batched call per
step (agents/rollout/multiagent_collector.py). Its single-agent equivalent is R single-agent envs with the same
observation and action spaces and the same per-step cost, under the same policy config. The target: the
multi-agent side's agent-steps/s >= 0.8 x the single-agent side's steps/s.

The envs (both defined here, so they cost the same per agent-step):

- ``RandomTeam``: a PettingZoo ParallelEnv of A agents, each observing a fresh random vector (``obs_dim``, 80
  by default: FogTeam's size) with reward 0, ``Discrete(5)`` actions, every agent alive for the whole episode
  of ``episode_len`` (64) steps;
- ``RandomSingle``: the same for one agent, a Gymnasium Env (registered as ``bench/RandomSingle-v0``).

Also ``mnemo/FogTeam-v0`` with 2 agents (80 observations, ``Discrete(5)``) against ``RandomSingle`` (its step
is cheaper than FogTeam's: the raw env rates are printed, so the env's own share is visible).

Per case, in a fresh process, the two sides interleaved (the order alternating) for ``--repeats`` repeats,
each measurement with a fresh collector or trainer:

- raw env stepping with random actions (the vector env the collector uses), agent-steps/s;
- collection: ``collect()`` of the run's collector with a fresh policy (one warm-up rollout, then at least
  ``--collects`` rollouts and ``--collect-seconds`` timed), agent-steps/s;
- training: ``Trainer.train`` over 1 warm-up + ``--iterations`` timed iterations (2 with the default policy
  config, 8 with the small one; each is collect + update + log), agent-steps/s from their wall time.

One torch thread. Policy configs: ``default`` (the library defaults: LSTM 256, 128-step rollouts, 4 minibatches,
8 epochs) and ``small`` (the T-maze preset's: LSTM 64, 32-step rollouts, bptt 16, 4 minibatches, 4 epochs).

    python benchmarks/multiagent_throughput.py                       # every case
    python benchmarks/multiagent_throughput.py --agents 4 --rows 32 --policies small
    python benchmarks/multiagent_throughput.py --profile --agents 2 --rows 32 --policies small --seconds 10
    python benchmarks/multiagent_throughput.py --profile --profile-env fog --agents 2 --rows 32 --policies small
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pettingzoo import ParallelEnv  # noqa: E402

from agents.config import TrainConfig  # noqa: E402
from agents.model.policy import RecurrentActorCritic  # noqa: E402
from agents.rollout.backends import make_collector  # noqa: E402
from agents.train.trainer import Trainer  # noqa: E402

MODULE = "benchmarks.multiagent_throughput"
SINGLE_ID = "bench/RandomSingle-v0"
TEAM_ID = f"{MODULE}:RandomTeam"
FOG_ID = "mnemo/FogTeam-v0"
OBS_DIM, N_ACTIONS, EPISODE_LEN = 80, 5, 64

POLICIES = {
    "default": {},
    "small": {"num_steps": 32, "bptt_len": 16, "num_minibatches": 4, "update_epochs": 4, "hidden_size": 64},
}
ITERATIONS = {"default": 2, "small": 8}  # timed training iterations (after one warm-up) per measurement


class RandomTeam(ParallelEnv):
    """A agents, each observing a fresh random vector, reward 0, all alive for ``episode_len`` steps."""

    metadata = {"name": "random_team_v0", "render_modes": []}

    def __init__(self, n_agents: int = 2, obs_dim: int = OBS_DIM, episode_len: int = EPISODE_LEN):
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self.obs_dim, self.episode_len = obs_dim, episode_len
        self._obs_space = spaces.Box(0.0, 1.0, (obs_dim,), np.float32)
        self._act_space = spaces.Discrete(N_ACTIONS)
        self.rng = np.random.default_rng()
        self.t = 0

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self.rng.random(self.obs_dim, dtype=np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        done = self.t >= self.episode_len
        obs = {a: self.rng.random(self.obs_dim, dtype=np.float32) for a in self.agents}
        rewards = {a: 0.0 for a in self.agents}
        terms = {a: False for a in self.agents}
        truncs = {a: done for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos


class RandomSingle(gym.Env):
    """``RandomTeam``'s one agent as a Gymnasium Env: the same observation, reward, actions and episode."""

    def __init__(self, obs_dim: int = OBS_DIM, episode_len: int = EPISODE_LEN):
        self.obs_dim, self.episode_len = obs_dim, episode_len
        self.observation_space = spaces.Box(0.0, 1.0, (obs_dim,), np.float32)
        self.action_space = spaces.Discrete(N_ACTIONS)
        self.rng = np.random.default_rng()
        self.t = 0

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        return self.rng.random(self.obs_dim, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return self.rng.random(self.obs_dim, dtype=np.float32), 0.0, False, self.t >= self.episode_len, {}


if SINGLE_ID not in gym.registry:
    gym.register(SINGLE_ID, entry_point=f"{MODULE}:RandomSingle")


# ---------------------------------------------------------------- one case, in its own process
def side_config(side: str, env: str, agents: int, rows: int, policy: str, run_dir: str, total_steps: int = 0):
    """The TrainConfig of one side: ``ma`` (rows // agents copies of the multi-agent env) or ``sa`` (rows envs)."""
    if side == "ma":
        env_id = TEAM_ID if env == "team" else FOG_ID
        env_kw = {"n_agents": agents}
        num_envs = rows // agents
    else:
        env_id, env_kw, num_envs = SINGLE_ID, {}, rows
    over = {"env_id": env_id, "env_kwargs": env_kw, "num_envs": num_envs, "env_import": (MODULE,),
            "run_dir": run_dir, "progress": False, "device": "cpu", "eval_episodes": 0, "seed": 1,
            "checkpoint_every": 10**9, "torch_threads": 1, **POLICIES[policy]}
    if total_steps:
        over["total_steps"] = total_steps
    return TrainConfig().with_overrides(over).validate()


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def raw_sps(collector, seconds: float) -> float:
    """Agent-steps/s of the collector's vector env with random actions (no policy)."""
    envs, rows = collector.envs, collector.num_envs
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, N_ACTIONS, size=(256, rows))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(actions[steps % 256])
        steps += 1
    return steps * rows / (time.perf_counter() - t0)


def collect_sps(config: TrainConfig, collects: int, seconds: float, raw_seconds: float) -> tuple[float, float]:
    """(collection agent-steps/s, raw env agent-steps/s) with a fresh collector and policy: at least ``collects``
    rollouts and ``seconds`` seconds after one warm-up rollout."""
    collector = make_collector(config)
    try:
        raw = raw_sps(collector, raw_seconds)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            policy = RecurrentActorCritic(collector.observation_space, collector.action_space, config.policy)
        collector.start(policy, torch.device("cpu"), 0, 0)
        collector.collect()
        n, t0 = 0, time.perf_counter()
        while n < collects or time.perf_counter() - t0 < seconds:
            collector.collect()
            n += 1
        wall = time.perf_counter() - t0
        return n * config.ppo.num_steps * collector.num_envs / wall, raw
    finally:
        collector.close()


def train_sps(side: str, case: dict, iterations: int, tmp: str) -> float:
    """Agent-steps/s of ``iterations`` training iterations (after one warm-up) of a fresh Trainer."""
    probe = side_config(side, case["env"], case["agents"], case["rows"], case["policy"], f"{tmp}/probe")
    total = probe.batch_size * (iterations + 1)
    config = side_config(side, case["env"], case["agents"], case["rows"], case["policy"], f"{tmp}/{side}", total)
    stamps: list[float] = []
    trainer = Trainer(config, overwrite=True)
    try:
        trainer.train(on_iteration=lambda _t: stamps.append(time.perf_counter()))
    finally:
        trainer.close()
    rows_per_iter = config.ppo.num_steps * case["rows"]
    return rows_per_iter * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run_case(case: dict, a) -> dict:
    torch.set_num_threads(1)
    out: dict = {"case": case, "ma": [], "sa": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.repeats):
            for side in (("ma", "sa") if rep % 2 == 0 else ("sa", "ma")):
                cfg = side_config(side, case["env"], case["agents"], case["rows"], case["policy"], f"{tmp}/c")
                load0 = loadavg()
                coll, raw = collect_sps(cfg, a.collects, a.collect_seconds, a.raw_seconds)
                load1 = loadavg()
                iters = a.iterations if a.iterations is not None else ITERATIONS[case["policy"]]
                train = train_sps(side, case, iters, f"{tmp}/r{rep}") if iters > 0 else float("nan")
                out[side].append({"collect": coll, "raw": raw, "train": train, "load_collect": load0,
                                  "load_train": load1})
    return out


def profile_case(case: dict, a) -> None:
    """cProfile of the multi-agent side's collection for about ``--seconds`` seconds; prints the top costs."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = side_config("ma", case["env"], case["agents"], case["rows"], case["policy"], f"{tmp}/c")
        collector = make_collector(cfg)
        policy = RecurrentActorCritic(collector.observation_space, collector.action_space, cfg.policy)
        collector.start(policy, torch.device("cpu"), 0, 0)
        collector.collect()
        prof = cProfile.Profile()
        n, t0 = 0, time.perf_counter()
        prof.enable()
        while time.perf_counter() - t0 < a.seconds:
            collector.collect()
            n += 1
        prof.disable()
        collector.close()
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)
    print(f"profile: {case}, {n} rollouts, {n * cfg.ppo.num_steps * case['rows']} agent-steps, load {loadavg()}")
    print(stream.getvalue())


# ---------------------------------------------------------------- the table
def med(xs):
    return statistics.median(xs)


def summarise(res: dict) -> dict:
    c, ma, sa = res["case"], res["ma"], res["sa"]
    row = {**c}
    for key in ("collect", "train", "raw"):
        m, s = med([r[key] for r in ma]), med([r[key] for r in sa])
        row[key] = {"ma": m, "sa": s, "ratio": m / s,
                    "paired": med([x[key] / y[key] for x, y in zip(ma, sa, strict=True)])}
    row["load_collect"] = med([r["load_collect"] for r in ma + sa])
    row["load_train"] = med([r["load_train"] for r in ma + sa])
    return row


def print_table(rows: list[dict]) -> None:
    head = ("| env | A | N | rows | policy | collect MA agent-steps/s (env-steps/s) | SA steps/s | ratio | load | "
            "train MA agent-steps/s | SA steps/s | ratio | load | raw env ratio |")
    print(head)
    print("|" + "---|" * head.count(" | ") + "---|")
    for r in rows:
        c, t = r["collect"], r["train"]
        env = "RandomTeam" if r["env"] == "team" else "FogTeam"
        print(f"| {env} | {r['agents']} | {r['rows'] // r['agents']} | {r['rows']} | {r['policy']} | "
              f"{c['ma']:,.0f} ({c['ma'] / r['agents']:,.0f}) | {c['sa']:,.0f} | {c['ratio']:.2f} | "
              f"{r['load_collect']:.2f} | {t['ma']:,.0f} | {t['sa']:,.0f} | {t['ratio']:.2f} | "
              f"{r['load_train']:.2f} | {r['raw']['ratio']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, nargs="+", default=[2, 4])
    p.add_argument("--rows", type=int, nargs="+", default=[16, 32], help="N x A policy rows")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    p.add_argument("--no-fog", action="store_true", help="skip mnemo/FogTeam-v0 (A=2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--collects", type=int, default=3, help="at least this many timed rollouts per collection")
    p.add_argument("--collect-seconds", type=float, default=1.0, help="and at least this long")
    p.add_argument("--iterations", type=int, help="timed training iterations (0: skip training; default: "
                   "2 with the default policy config, 8 with the small one)")
    p.add_argument("--raw-seconds", type=float, default=0.5)
    p.add_argument("--json", help="write the per-case results here")
    p.add_argument("--profile", action="store_true", help="cProfile the first case's multi-agent collection")
    p.add_argument("--seconds", type=float, default=10.0, help="--profile's duration")
    p.add_argument("--profile-env", choices=["team", "fog"], default="team", help="--profile's env")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print its JSON
    a = p.parse_args()
    if a.case:
        print(json.dumps(run_case(json.loads(a.case), a)))
        return
    cases = [{"env": "team", "agents": ag, "rows": r, "policy": pol}
             for pol in a.policies for r in a.rows for ag in a.agents]
    if not a.no_fog:
        cases += [{"env": "fog", "agents": 2, "rows": r, "policy": pol} for pol in a.policies for r in a.rows]
    if a.profile:
        profile_case(next(c for c in cases if c["env"] == a.profile_env), a)
        return
    print(f"{platform.processor() or platform.machine()}, {torch.__version__}, 1 torch thread; load at start "
          f"{Path('/proc/loadavg').read_text().strip()}", flush=True)
    results, rows = [], []
    for case in cases:
        cmd = [sys.executable, __file__, "--case", json.dumps(case), "--repeats", str(a.repeats), "--collects",
               str(a.collects), "--collect-seconds", str(a.collect_seconds), "--raw-seconds", str(a.raw_seconds)]
        if a.iterations is not None:
            cmd += ["--iterations", str(a.iterations)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
                         .strip().splitlines()[-1])
        results.append(res)
        rows.append(summarise(res))
        r = rows[-1]
        print(f"{case}: collect ratio {r['collect']['ratio']:.2f} (MA {r['collect']['ma']:,.0f} agent-steps/s, "
              f"SA {r['collect']['sa']:,.0f}), train ratio {r['train']['ratio']:.2f}, raw env ratio "
              f"{r['raw']['ratio']:.2f}, load {r['load_collect']:.2f}", flush=True)
    print()
    print_table(rows)
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "summary": rows}, indent=1))


if __name__ == "__main__":
    main()
