"""Play whole episodes with a policy and report their returns (deterministic by default)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from agents.collector import make_vector_env
from agents.policy import RecurrentActorCritic
from agents.spaces import obs_to_tensor


@torch.inference_mode()
def evaluate_policy(
    policy: RecurrentActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    env_kwargs: dict | None = None,
    deterministic: bool = True,
    num_envs: int = 8,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    should_stop: Callable[[], bool] | None = None,
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes, in parallel envs.

    Each env plays a fixed share of the episodes (as in SB3's evaluate_policy),
    so short episodes cannot crowd out long ones and bias the mean. ``should_stop`` is polled
    every step; once it returns True, the returns finished so far come back (Ctrl-C during the
    final evaluation of a training run). ``wrapper`` wraps each env as in training (``make_vector_env``).
    """
    num_envs = max(1, min(num_envs, episodes))
    targets = np.array([(episodes + i) // num_envs for i in range(num_envs)])
    envs = make_vector_env(env_id, num_envs, env_kwargs, wrapper=wrapper)
    try:
        obs, _ = envs.reset(seed=seed)
        state = policy.initial_state(num_envs, device)
        episode_start = torch.ones(num_envs, device=device)
        counts = np.zeros(num_envs, dtype=np.int64)
        running = np.zeros(num_envs)
        returns: list[float] = []
        while (counts < targets).any() and not (should_stop is not None and should_stop()):
            out = policy.step(obs_to_tensor(obs, device), state, episode_start, deterministic, generator)
            obs, reward, terminated, truncated, _ = envs.step(policy.action_head.to_env(out.action))
            running += reward
            done = terminated | truncated
            for i in np.flatnonzero(done):
                if counts[i] < targets[i]:
                    returns.append(float(running[i]))
                    counts[i] += 1
            running[done] = 0.0
            state = out.state
            episode_start = torch.as_tensor(done, dtype=torch.float32, device=device)
        return np.asarray(returns)
    finally:
        envs.close()
