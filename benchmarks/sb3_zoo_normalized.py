"""The sb3-contrib peer with rl-baselines3-zoo's ``normalize: True`` (VecNormalize), for learning comparisons.

``../shared/peers/sb3_recurrent_ppo.py`` runs RecurrentPPO with the zoo's
ppo_lstm hyperparameters for CartPoleNoVel-v1 but without the zoo's
VecNormalize wrapper (observation and reward normalisation), which the zoo's
reported 500 was trained with. This script is that peer with the wrapper, as
the zoo builds it: ``VecNormalize(env, gamma=0.98)`` (observations and
rewards, clipped at 10); evaluation uses the frozen observation statistics and
raw rewards. Run it with a Python that has sb3-contrib:

    /path/to/peer-venv/bin/python benchmarks/sb3_zoo_normalized.py --steps 100000 --seed 0

Prints the peer script's line: steps, wall time, steps per second, deterministic eval return.
"""

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

PEER = Path(__file__).resolve().parents[2] / "shared" / "peers" / "sb3_recurrent_ppo.py"


def load_peer_module():
    """The shared peer script as a module (for its NoVelocity wrapper: one definition of the env)."""
    spec = importlib.util.spec_from_file_location("sb3_recurrent_ppo", PEER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-episodes", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    peer = load_peer_module()
    import gymnasium as gym

    make = lambda: peer.NoVelocity(gym.make("CartPole-v1"))  # noqa: E731
    env = VecNormalize(make_vec_env(make, n_envs=8, seed=a.seed), gamma=0.98)
    linear = lambda v: (lambda progress: progress * v)  # noqa: E731
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98,
        n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2),
        policy_kwargs=dict(ortho_init=False, activation_fn=torch.nn.ReLU, lstm_hidden_size=64,
                           enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])),
        seed=a.seed, verbose=0)
    t0 = time.perf_counter()
    model.learn(a.steps)
    wall = time.perf_counter() - t0
    eval_env = VecNormalize(make_vec_env(make, n_envs=1, seed=a.seed + 10_000), training=False, norm_reward=False)
    eval_env.obs_rms = env.obs_rms
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=a.eval_episodes, deterministic=True)
    print(f"sb3-contrib RecurrentPPO+VecNormalize steps={a.steps} wall_s={wall:.1f} sps={a.steps / wall:.0f} "
          f"eval_return={mean:.1f}+-{std:.1f}")


if __name__ == "__main__":
    main()
