"""sb3's PPO and sb3-contrib's RecurrentPPO on MountainCar, with rl-baselines3-zoo's MountainCar-v0 settings.

A learning comparison for the MountainCar section of docs/archive/results-log.md: does
the most used recurrent PPO find MountainCar's goal where a feed-forward PPO
does? The settings are the zoo's ``hyperparams/ppo.yml`` entry for
MountainCar-v0 (16 envs x 16 steps, minibatches of 64, 4 epochs, gamma 0.99,
lambda 0.98, no entropy bonus, observations normalised by VecNormalize) on
both policies' defaults otherwise. Run it with a Python that has sb3-contrib:

    /path/to/peer-venv/bin/python benchmarks/sb3_mountaincar.py --policy lstm --steps 300000 --seed 1

``--no-velocity`` trains mnemo/MountainCarNoVel-v0 instead (the position only; the
project's own registration, which needs gymnasium and numpy only).
Prints one JSON line: training episodes, how many reached the goal (return
above -200), the step of the first, the mean return of the last 100, the best
rolling mean of 100, and the wall time.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import envs  # noqa: F401  (registers mnemo/MountainCarNoVel-v0)


class EpisodeLog(BaseCallback):
    """Collects (env step, return) for every finished training episode."""

    def __init__(self):
        super().__init__()
        self.episodes: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
        return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", choices=["lstm", "mlp"], default="lstm",
                   help="lstm: RecurrentPPO MlpLstmPolicy; mlp: PPO MlpPolicy")
    p.add_argument("--no-velocity", action="store_true", help="observe the position only")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size (RecurrentPPO's own default is 128)")
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    env_id = "mnemo/MountainCarNoVel-v0" if a.no_velocity else "MountainCar-v0"
    env = VecNormalize(make_vec_env(env_id, n_envs=16, seed=a.seed), norm_obs=True, norm_reward=False)
    settings = dict(n_steps=16, batch_size=a.batch_size, gae_lambda=0.98, gamma=0.99, n_epochs=4, ent_coef=0.0,
                    seed=a.seed, verbose=0)
    model = RecurrentPPO("MlpLstmPolicy", env, **settings) if a.policy == "lstm" else PPO("MlpPolicy", env, **settings)
    log = EpisodeLog()
    start = time.perf_counter()
    model.learn(a.steps, callback=log)
    wall = time.perf_counter() - start

    steps = [s for s, _ in log.episodes]
    returns = np.array([r for _, r in log.episodes])
    goal = np.flatnonzero(returns > -200)
    window = min(100, len(returns))
    rolling = np.convolve(returns, np.ones(window) / window, mode="valid")
    print(json.dumps({
        "policy": a.policy, "velocity": not a.no_velocity, "seed": a.seed, "steps": a.steps,
        "episodes": len(returns), "goal_episodes": len(goal),
        "first_goal_step": steps[goal[0]] if len(goal) else None,
        "final_mean_100": round(float(returns[-window:].mean()), 1), "best_rolling_100": round(float(rolling.max()), 1),
        "wall_s": round(wall, 1),
    }))


if __name__ == "__main__":
    main()
