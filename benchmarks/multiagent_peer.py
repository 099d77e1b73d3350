"""Multi-agent peer benchmark: mnemo against PettingZoo + SuperSuit + sb3-contrib RecurrentPPO on FogTeam-v0.

The common way to train one recurrent policy shared by every agent of a PettingZoo ``ParallelEnv`` is SuperSuit's
vectorisation with sb3-contrib's ``RecurrentPPO``: ``pettingzoo_env_to_vec_env_v1`` turns the game into a
vector env with one slot per agent, ``concat_vec_envs_v1`` stacks copies of it into one Stable-Baselines3
VecEnv, and the policy (one network, parameter sharing) keeps one LSTM state per slot, i.e. per agent,
reset at that slot's episode starts. SuperSuit needs agents that stay to the end of the episode, or its
``black_death_v3`` wrapper for those that leave; FogTeam keeps every agent in ``env.agents`` until the episode
ends for all of them (an agent on its pad waits there, its actions ignored), so it needs none.

One command per side, one run per seed::

    # the peer: a separate venv (never a dependency of this package), mnemo's source on PYTHONPATH
    python3.11 -m venv /work/peer-venv
    /work/peer-venv/bin/pip install torch==2.13.0      # first: an unpinned torch may pull a CUDA build
    /work/peer-venv/bin/pip install sb3-contrib supersuit pettingzoo gymnasium numpy pygame
    PYTHONPATH=$PWD /work/peer-venv/bin/python benchmarks/multiagent_peer.py --side peer --seed 1

    # mnemo, from the project's environment: runs `python train.py` and reads its summary.json
    python benchmarks/multiagent_peer.py --side mnemo --seed 1

Versions that install and run together (measured with them): torch 2.13.0 (CPU), sb3-contrib 2.9.2 /
stable-baselines3 2.9.2, SuperSuit 3.11.0, PettingZoo 1.27.0, Gymnasium 1.4.0, numpy 2.4.6.

Both sides train for ``--env-steps`` (200k) env steps of ``n_agents`` (2) agents; mnemo rounds its budget up
to whole rollouts (8 envs x 128 steps), and the peer trains for the same number of agent steps, which SB3
rounds up to whole rollouts of the same size (16 agent slots x 128 steps), so both take the same agent steps.

The peer's config (``--peer-config``):

- ``defaults``: RecurrentPPO's own defaults for everything it sets (n_steps 128, batch_size 128, 10 epochs,
  lr 3e-4 constant, no entropy bonus, no reward normalisation, separate 256-unit LSTMs for actor and critic);
  only the number of env copies is this benchmark's (8, mnemo's default ``--num-envs``: 16 agent slots).
- ``matched``: mnemo's defaults where RecurrentPPO has the same knob: 8 envs x 128 steps, 4 minibatches
  (batch_size 512), 8 epochs, lr 1e-3 annealed linearly to 0, entropy 0.01, one 256-unit LSTM shared by actor
  and critic, 64-unit tanh heads, rewards scaled by a running return std (VecNormalize). Still not mnemo's
  network: SB3 has no encoder MLP before the LSTM, nor mnemo's LSTM initialisation.

What each side prints (one JSON line): env steps, agent steps, training wall time (evaluation excluded),
agent steps/s, the mean training return of the last 20 agent episodes (mnemo's ``train_return_recent``
window), and the greedy and sampled evaluation returns: the mean return over ``--eval-episodes`` agent
episodes. FogTeam gives every agent the team reward, so an agent episode's return is the team's return.
The peer's evaluation plays whole games on envs seeded ``seed + 10_000 + game``, one LSTM state per agent,
zero at each game's start; mnemo's is its own final evaluation (``seed + 10_000``, the first agent episodes to
finish). Both print the training curve, the mean agent-episode return per ``--curve-every`` agent steps
(mnemo's from its TensorBoard events); the 1-minute load average is printed at the start and the end of
training.

The peer is slow (tens of agent steps/s on a busy 2-core machine: its update, 10 epochs of 16 minibatches
through two LSTMs, takes most of the time): ``--stop-after-s`` ends its training after that many seconds and
evaluates what it has, reporting ``stopped_early`` and the agent steps reached.

SuperSuit's SB3 vec env reports a time-limit truncation as a plain ``done`` without the final observation
(FogTeam returns none for agents whose episode ended), so the peer treats the 50-step time limit as a
termination; that is the common path as people run it, and this benchmark keeps it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "mnemo/FogTeam-v0"
MNEMO_NUM_ENVS = 8
"""mnemo's default --num-envs; the peer stacks as many copies of the game"""
MNEMO_NUM_STEPS = 128
"""mnemo's default --num-steps; one rollout is MNEMO_NUM_ENVS x MNEMO_NUM_STEPS env steps"""
TRAIN_WINDOW = 20
"""training episodes averaged for the train-end return, as mnemo's summary.json ``train_return_recent``"""


def load_average() -> float:
    """The 1-minute load average (other runs share the machine: it belongs beside every wall time)."""
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def agent_step_budget(env_steps: int, n_agents: int) -> int:
    """The agent steps of a mnemo run of ``env_steps``: its budget rounded up to whole rollouts, x agents
    (every FogTeam agent acts at every step of its game)."""
    rollout = MNEMO_NUM_ENVS * MNEMO_NUM_STEPS
    return -(-env_steps // rollout) * rollout * n_agents


def windowed_means(curve: list[tuple[int, float]], every: int) -> list[tuple[int, float]]:
    """The training curve in windows of ``every`` agent steps: (window end, mean return of the agent episodes
    that ended in it), windows without an episode left out; the last window ends at the last episode's step."""
    if not curve:
        return []
    last = max(step for step, _ in curve)
    means = []
    for end in range(every, last + every, every):
        window = [r for step, r in curve if end - every < step <= end]
        if window:
            means.append((min(end, last), round(float(np.mean(window)), 3)))
    return means


# ---------------------------------------------------------------------- mnemo


def mnemo_curve(run_dir: Path, n_agents: int) -> list[tuple[int, float]]:
    """(agent steps, return) of every training agent episode from the run's TensorBoard events. mnemo logs an
    episode at the env step of its iteration; FogTeam's agents all act at every env step, so agent steps are
    env steps x ``n_agents``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(event.step * n_agents, float(event.value)) for event in events.Scalars("charts/episodic_return")]


def run_mnemo(args: argparse.Namespace) -> dict:
    """``python train.py`` with the defaults (FogTeam has no preset), one torch thread; its summary.json."""
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix=f"fogteam_mnemo_{args.seed}_"))
    command = [sys.executable, str(ROOT / "train.py"), "--env-id", ENV_ID, "--seed", str(args.seed),
               "--total-steps", str(args.env_steps), "--run-dir", str(run_dir), "--torch-threads", str(args.threads),
               "--eval-episodes", str(args.eval_episodes), "--env-kwargs", json.dumps({"n_agents": args.agents})]
    load_start = load_average()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    load_end = load_average()
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "side": "mnemo", "config": "defaults", "seed": args.seed, "env_steps": summary["total_steps"],
        "agent_steps": summary["agent_steps"], "wall_s": summary["wall_time_s"], "agent_sps": summary["agent_sps"],
        "train_return_recent": summary["train_return_recent"], "eval_return_mean": summary["eval_return_mean"],
        "eval_sampled_return_mean": summary["eval_sampled_return_mean"], "eval_episodes": summary["eval_episodes"],
        "load_start": load_start, "load_end": load_end, "run_dir": str(run_dir), "command": " ".join(command),
        "curve_mean_return_per_window": windowed_means(mnemo_curve(run_dir, args.agents), args.curve_every),
    }


# ----------------------------------------------------------------------- peer


def peer_model_kwargs(config: str) -> dict:
    """RecurrentPPO's keyword arguments for ``--peer-config`` (see the module docstring)."""
    if config == "defaults":
        return {}
    import torch

    return {
        "n_steps": MNEMO_NUM_STEPS,
        "batch_size": MNEMO_NUM_ENVS * MNEMO_NUM_STEPS * 2 // 4,
        "n_epochs": 8,
        # SB3 calls a schedule with the fraction of training left (1 -> 0): mnemo's linear anneal to zero.
        "learning_rate": lambda remaining: 1e-3 * remaining,
        "ent_coef": 0.01,
        "policy_kwargs": {"lstm_hidden_size": 256, "shared_lstm": True, "enable_critic_lstm": False,
                          "net_arch": {"pi": [64], "vf": [64]}, "activation_fn": torch.nn.Tanh},
    }


def make_peer_vec_env(n_agents: int, config: str, seed: int):
    """FogTeam through SuperSuit into one SB3 VecEnv of ``MNEMO_NUM_ENVS x n_agents`` agent slots, with
    VecMonitor recording each slot's (each agent's) episode returns; ``matched`` also scales rewards."""
    import supersuit as ss
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize
    from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper

    from envs.multiagent.fog_team import make_env

    class SeedableSB3VecEnv(SB3VecEnvWrapper):
        """SuperSuit's SB3 wrapper (what ``concat_vec_envs_v1(base_class="stable_baselines3")`` returns), made
        seedable: SuperSuit 3.11's ``ConcatVecEnv`` has no ``seed()``, which SB3 calls for a model given a seed.
        Seeding resets copy i with ``seed + i``; SB3's later unseeded resets keep FogTeam's seeded generators."""

        def seed(self, seed: int | None = None) -> list[None]:
            if seed is not None:
                self.venv.reset(seed=seed)
            return [None] * self.num_envs

    vec = ss.pettingzoo_env_to_vec_env_v1(make_env(n_agents=n_agents))
    vec = SeedableSB3VecEnv(ss.concat_vec_envs_v1(vec, MNEMO_NUM_ENVS, num_cpus=0, base_class="gymnasium"))
    vec = VecMonitor(vec)
    if config == "matched":
        vec = VecNormalize(vec, norm_obs=False, norm_reward=True, gamma=0.99)
    vec.seed(seed)
    return vec


def evaluate_peer(model, n_agents: int, episodes: int, seed: int, deterministic: bool) -> list[float]:
    """Mean-able returns of the first ``episodes`` agent episodes of whole FogTeam games played by ``model``.

    Every game's agents act as one batch: ``obs`` (n_agents, 80) in ``possible_agents`` order, the LSTM state
    (1, n_agents, hidden) per tensor, so each agent keeps its own state; ``episode_start`` is True on a
    game's first step, which zeroes every agent's state. FogTeam keeps all agents to the game's end.
    """
    from envs.multiagent.fog_team import make_env

    env = make_env(n_agents=n_agents)
    agents = list(env.possible_agents)
    returns: list[float] = []
    game = 0
    while len(returns) < episodes:
        obs, _ = env.reset(seed=seed + game)
        state, start = None, np.ones(len(agents), dtype=bool)
        totals = dict.fromkeys(agents, 0.0)
        while env.agents:
            batch = np.stack([obs[agent] for agent in agents])
            actions, state = model.predict(batch, state=state, episode_start=start, deterministic=deterministic)
            obs, rewards, _, _, _ = env.step({agent: int(actions[i]) for i, agent in enumerate(agents)})
            for agent, reward in rewards.items():
                totals[agent] += reward
            start = np.zeros(len(agents), dtype=bool)
        returns.extend(totals[agent] for agent in agents)
        game += 1
    return returns[:episodes]


def run_peer(args: argparse.Namespace) -> dict:
    """Train sb3-contrib's RecurrentPPO through SuperSuit for mnemo's agent-step budget; evaluate it."""
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.utils import set_random_seed

    class EpisodeLog(BaseCallback):
        """(agent steps so far, return) for every finished agent episode, from VecMonitor's infos; a progress
        line on stderr every ``--progress-every`` rollouts; stops training once ``--stop-after-s`` have passed
        (SB3 ends ``learn`` when a callback returns False)."""

        def __init__(self) -> None:
            super().__init__()
            self.curve: list[tuple[int, float]] = []
            self.rollouts = 0
            self.started = time.perf_counter()

        def _on_step(self) -> bool:
            self.curve.extend((self.num_timesteps, float(info["episode"]["r"]))
                              for info in self.locals["infos"] if "episode" in info)
            return args.stop_after_s is None or time.perf_counter() - self.started < args.stop_after_s

        def _on_rollout_end(self) -> None:
            self.rollouts += 1
            if self.rollouts % args.progress_every == 0:
                recent = [r for _, r in self.curve[-TRAIN_WINDOW:]]
                print(json.dumps({"progress": True, "seed": args.seed, "agent_steps": self.num_timesteps,
                                  "wall_s": round(time.perf_counter() - self.started, 1),
                                  "train_return_recent": round(float(np.mean(recent)), 3) if recent else None,
                                  "load": load_average()}), file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    budget = agent_step_budget(args.env_steps, args.agents)
    vec = make_peer_vec_env(args.agents, args.peer_config, args.seed)
    model = RecurrentPPO("MlpLstmPolicy", vec, seed=args.seed, verbose=0,
                         **peer_model_kwargs(args.peer_config))
    load_start = load_average()
    start = time.perf_counter()
    log = EpisodeLog()
    model.learn(budget, callback=log)
    wall = time.perf_counter() - start
    load_end = load_average()
    greedy = evaluate_peer(model, args.agents, args.eval_episodes, args.seed + 10_000, deterministic=True)
    set_random_seed(args.seed + 20_000)  # sampling draws from torch's global generator
    sampled = evaluate_peer(model, args.agents, args.eval_episodes, args.seed + 10_000, deterministic=False)
    recent = [r for _, r in log.curve[-TRAIN_WINDOW:]]
    return {
        "side": "peer", "config": args.peer_config, "seed": args.seed,
        "env_steps": model.num_timesteps // args.agents, "agent_steps": model.num_timesteps,
        "agent_step_budget": budget, "stopped_early": model.num_timesteps < budget,
        "wall_s": round(wall, 2), "agent_sps": round(model.num_timesteps / wall, 1),
        "train_return_recent": float(np.mean(recent)) if recent else None,
        "eval_return_mean": float(np.mean(greedy)), "eval_sampled_return_mean": float(np.mean(sampled)),
        "eval_episodes": args.eval_episodes, "load_start": load_start, "load_end": load_end,
        "curve_mean_return_per_window": windowed_means(log.curve, args.curve_every),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("peer", "mnemo"), required=True,
                        help="peer: sb3-contrib + SuperSuit (its own venv); mnemo: train.py in this one")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--env-steps", type=int, default=200_000,
                        help="env steps of the mnemo run whose agent steps both sides train for")
    parser.add_argument("--agents", type=int, default=2, help="FogTeam's n_agents")
    parser.add_argument("--peer-config", choices=("defaults", "matched"), default="defaults")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--eval-episodes", type=int, default=100, help="agent episodes per evaluation mode")
    parser.add_argument("--curve-every", type=int, default=40_000, help="agent steps per point of the curve")
    parser.add_argument("--stop-after-s", type=float,
                        help="peer: end training after this many seconds (reported as stopped_early), then evaluate")
    parser.add_argument("--progress-every", type=int, default=10, help="peer: rollouts per progress line (stderr)")
    parser.add_argument("--run-dir", help="mnemo's run directory (default: a fresh temporary one)")
    parser.add_argument("--out", help="also append the JSON line to this file")
    args = parser.parse_args()
    if args.side == "peer":
        sys.path.insert(0, str(ROOT))  # envs.multiagent, without installing mnemo into the peer's venv
        result = run_peer(args)
    else:
        result = run_mnemo(args)
    line = json.dumps(result)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
