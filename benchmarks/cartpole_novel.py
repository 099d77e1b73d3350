"""Speed and learning on CartPole without velocities, side by side with sb3-contrib's RecurrentPPO.

Both use rl-baselines3-zoo's ppo_lstm hyperparameters for CartPoleNoVel-v1
(8 envs x 32 steps, one minibatch of 256, 20 epochs, lr 1e-3 and clip 0.2
decayed linearly, gamma 0.98, lambda 0.8, LSTM 64 with a separate critic
LSTM, pi/vf MLPs [64] with ReLU) and the zoo's ``normalize: True``
(observation and reward normalisation): ``envs.presets.ZOO_CARTPOLE_NOVEL``.
The env's own preset is tuned further and learns more reliably; this script
keeps the zoo's settings so that both sides run the same. The shared peer
script leaves VecNormalize out; ``--peer-normalized`` runs the peer with it
(``sb3_zoo_normalized.py``).

    python benchmarks/cartpole_novel.py --seeds 0 1 2
    python benchmarks/cartpole_novel.py --seeds 0 1 2 --peer-python /path/to/venv-with-sb3-contrib/bin/python
    python benchmarks/cartpole_novel.py --seeds 0 1 2 --peer-python ... --peer-normalized
    python benchmarks/cartpole_novel.py --seeds 0 --device cuda      # mnemo's network on the GPU

Prints, per seed: wall time, steps per second, deterministic eval return
(20 episodes); then medians and the speed ratio to the peer. Also prints the
rollout collection speed as a fraction of raw env stepping speed (random
actions, the same vector env), which bounds what any policy can add on top.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.config import TrainConfig  # noqa: E402
from agents.model.policy import RecurrentActorCritic  # noqa: E402
from agents.rollout.collector import VectorCollector, make_vector_env  # noqa: E402
from agents.train.trainer import Trainer  # noqa: E402
from envs.presets import ZOO_CARTPOLE_NOVEL  # noqa: E402

ENV_ID = "mnemo/CartPoleNoVel-v1"
PEER = ROOT.parent / "shared" / "peers" / "sb3_recurrent_ppo.py"
PEER_NORMALIZED = ROOT / "benchmarks" / "sb3_zoo_normalized.py"  # the peer plus the zoo's VecNormalize


def train_ours(steps: int, seed: int, eval_episodes: int, device: str = "cpu") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig().with_overrides({
            **ZOO_CARTPOLE_NOVEL, "env_id": ENV_ID, "total_steps": steps, "seed": seed, "run_dir": f"{tmp}/run",
            "eval_episodes": eval_episodes, "progress": False, "device": device,
            "checkpoint_every": 10 * steps})
        return Trainer(config.validate()).train()


def train_peer(python: str, steps: int, seed: int, eval_episodes: int, script: Path = PEER) -> dict:
    out = subprocess.run([python, str(script), "--steps", str(steps), "--seed", str(seed),
                          "--eval-episodes", str(eval_episodes)], capture_output=True, text=True, check=True)
    line = out.stdout.strip().splitlines()[-1]
    fields = dict(re.findall(r"(\w+)=([\d.+-]+)", line))
    mean, std = fields["eval_return"].split("+-")
    return {"wall_time_s": float(fields["wall_s"]), "sps": float(fields["sps"]),
            "eval_return_mean": float(mean), "eval_return_std": float(std)}


def raw_env_sps(num_envs: int, steps: int, seed: int) -> float:
    envs = make_vector_env(ENV_ID, num_envs)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    actions = [envs.action_space.sample() for _ in range(256)]
    t0 = time.perf_counter()
    for i in range(steps // num_envs):
        envs.step(actions[i % 256])
    sps = (steps // num_envs) * num_envs / (time.perf_counter() - t0)
    envs.close()
    return sps


def collect_sps(num_envs: int, steps: int, seed: int, device: torch.device) -> float:
    config = TrainConfig().with_overrides({**ZOO_CARTPOLE_NOVEL, "env_id": ENV_ID, "seed": seed})
    envs = make_vector_env(ENV_ID, num_envs)
    torch.manual_seed(seed)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, config.policy).to(device)
    collector = VectorCollector(envs, config.ppo.num_steps)
    collector.start(policy, device, seed, seed)
    rollouts = max(1, steps // config.batch_size)
    t0 = time.perf_counter()
    for _ in range(rollouts):
        collector.collect()
    sps = rollouts * config.batch_size / (time.perf_counter() - t0)
    collector.close()
    return sps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads for both implementations")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="where mnemo's network runs (train.py's --device; the peer always runs on the CPU)")
    p.add_argument("--peer-python", default=None,
                   help="Python of a venv with sb3-contrib installed; runs the peer after each of our seeds")
    p.add_argument("--peer-normalized", action="store_true",
                   help="run the peer with the zoo's VecNormalize (benchmarks/sb3_zoo_normalized.py) instead of "
                        "the shared peer script, which has none")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    gpu = f", GPU {torch.cuda.get_device_name()}" if a.device != "cpu" and torch.cuda.is_available() else ""
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"
          f"{gpu}, torch {torch.__version__}, python {platform.python_version()}, --device {a.device}")

    rows = []
    for seed in a.seeds:
        ours = train_ours(a.steps, seed, a.eval_episodes, a.device)
        rows.append(("mnemo", seed, ours))
        print(f"mnemo        seed={seed} wall_s={ours['wall_time_s']:.1f} sps={ours['sps']:.0f} "
              f"eval_return={ours['eval_return_mean']:.1f}+-{ours['eval_return_std']:.1f}", flush=True)
        if a.peer_python:
            peer = train_peer(a.peer_python, a.steps, seed, a.eval_episodes,
                              PEER_NORMALIZED if a.peer_normalized else PEER)
            rows.append(("sb3-contrib", seed, peer))
            print(f"sb3-contrib  seed={seed} wall_s={peer['wall_time_s']:.1f} sps={peer['sps']:.0f} "
                  f"eval_return={peer['eval_return_mean']:.1f}+-{peer['eval_return_std']:.1f}", flush=True)

    summary = {}
    for impl in ("mnemo", "sb3-contrib"):
        mine = [r for name, _, r in rows if name == impl]
        if mine:
            summary[impl] = {"median_sps": statistics.median(r["sps"] for r in mine),
                             "eval_returns": [r["eval_return_mean"] for r in mine],
                             "solved_475": sum(r["eval_return_mean"] >= 475 for r in mine), "runs": len(mine)}
            s = summary[impl]
            print(f"{impl:12s} median sps={s['median_sps']:.0f}  eval returns={s['eval_returns']}  "
                  f">=475: {s['solved_475']}/{s['runs']}")
    if "sb3-contrib" in summary:
        ratio = summary["mnemo"]["median_sps"] / summary["sb3-contrib"]["median_sps"]
        summary["speed_ratio"] = ratio
        print(f"speed ratio (median sps, mnemo / sb3-contrib): {ratio:.1f}x")

    raw = float(np.median([raw_env_sps(8, 20_000, s) for s in a.seeds]))
    collect_device = torch.device("cuda" if a.device == "cuda" else "cpu")
    coll = float(np.median([collect_sps(8, 20_000, s, collect_device) for s in a.seeds]))
    summary.update(raw_env_sps=raw, collect_sps=coll, collect_fraction=coll / raw)
    print(f"raw env stepping (random actions, 8-env SyncVectorEnv): {raw:.0f} steps/s; "
          f"rollout collection with the LSTM policy: {coll:.0f} steps/s = {coll / raw:.0%} of raw")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": [(n, s, r) for n, s, r in rows], "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
