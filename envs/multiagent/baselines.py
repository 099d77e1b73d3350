"""Baseline policies played over whole episodes: the mean team returns quoted in docs/multiagent_games.md.

A baseline policy is a function ``policy(env, agent, obs, rng) -> action`` for one live agent; each game module
defines its scripted, memoryless and random ones (their docstrings say what they read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

Policy = Callable[[Any, str, np.ndarray, np.random.Generator], int]


def team_returns(env: Any, policy: Policy, seeds: Iterable[int], shared: bool = False) -> np.ndarray:
    """The team return of one episode per seed: every agent's rewards summed over the episode, or with
    ``shared`` (every live agent gets the same team reward) that reward summed over the episode.

    ``env`` is reset with each seed and played by ``policy`` until no agent is left; the policy's own
    generator is seeded with the same seed, so the result is a fixed function of the seeds.

    Returns:
        (len(seeds),) float64.
    """
    returns = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        total = 0.0
        while env.agents:
            actions = {agent: policy(env, agent, obs[agent], rng) for agent in env.agents}
            obs, rewards, _, _, _ = env.step(actions)
            if rewards:
                total += max(rewards.values()) if shared else sum(rewards.values())
        returns.append(total)
    return np.array(returns)
