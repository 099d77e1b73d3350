"""The previous action and reward as inputs to the policy (``--prev-action-reward``).

Memory agents in the RL^2 / IMPALA line feed the core what it did and what it
earned one step ago, beside the observation. Many memory tasks need it: a
bandit shows the payout but not which arm was pulled, and an agent can only
learn from its own past choices if it sees them.

The inputs are added by an env wrapper, ``PreviousActionReward``, so that the
recurrent bookkeeping stays exactly as it is: the previous action and reward
are part of the observation, stored, replayed and reset with it. The
observation becomes a Dict::

    {"obs": <the env's observation>, "prev_action": Box(A,), "prev_reward": Box(1,)}

- ``prev_action``: a one-hot for Discrete (concatenated one-hots for
  MultiDiscrete), the bits for MultiBinary, and for Box actions the clipped
  action through ``symlog``. All zeros before the first step of an episode,
  which no real action encodes as (one-hots always have a one).
- ``prev_reward``: ``symlog(reward)`` clipped to +-10 (symlog = sign(x)
  log(1 + |x|), DreamerV3's squashing), so that rewards of any scale arrive on
  a small known one and the observation normalisation rule
  (``agents/spaces.py``, ``needs_obs_normalization``) is not turned on by the
  reward alone. 0 before the first step.

Episode boundaries follow the policy's memory: in reset mode both are zeroed at
every reset; in carry mode (``carry_across_episodes``) they carry over resets,
so that the first step of an episode sees the reward that ended the last one
(RL^2's choice).

A game loop that drives a policy trained this way (``PolicyRunner``, the ONNX
export) passes the same Dict; ``previous_inputs_obs`` builds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.spaces import ACTION_MASK_KEY, has_action_mask, policy_observation_space, split_action_mask

# symlog(x) <= 10 for |x| < 22,025: far beyond any reward scale PPO copes with unscaled.
SYMLOG_CLIP = 10.0


def symlog(x: np.ndarray | float) -> np.ndarray:
    """sign(x) * log(1 + |x|), clipped to +-SYMLOG_CLIP: float32, same shape."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip(np.sign(x) * np.log1p(np.abs(x)), -SYMLOG_CLIP, SYMLOG_CLIP).astype(np.float32)


def action_input_space(action_space: spaces.Space) -> spaces.Box:
    """The Box that ``encode_action`` fills for ``action_space`` (raises ValueError for other spaces)."""
    if isinstance(action_space, spaces.Discrete):
        return spaces.Box(0.0, 1.0, (int(action_space.n),), np.float32)
    if isinstance(action_space, spaces.MultiDiscrete):
        return spaces.Box(0.0, 1.0, (int(np.sum(action_space.nvec)),), np.float32)
    if isinstance(action_space, spaces.MultiBinary):
        return spaces.Box(0.0, 1.0, (int(np.prod(action_space.shape)),), np.float32)
    if isinstance(action_space, spaces.Box):
        low = symlog(np.ravel(action_space.low))
        high = symlog(np.ravel(action_space.high))
        return spaces.Box(low, high, low.shape, np.float32)
    raise ValueError(f"--prev-action-reward: action space {action_space} is not supported "
                     "(Discrete, MultiDiscrete, MultiBinary and Box are).")


def encode_action(action_space: spaces.Space, action: Any) -> np.ndarray:
    """One env action as the ``prev_action`` input: a float32 vector of ``action_input_space``'s shape."""
    if isinstance(action_space, spaces.Discrete):
        out = np.zeros(int(action_space.n), np.float32)
        out[int(action) - int(action_space.start)] = 1.0
        return out
    if isinstance(action_space, spaces.MultiDiscrete):
        nvec = np.ravel(action_space.nvec)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        out = np.zeros(int(np.sum(nvec)), np.float32)
        out[offsets + np.ravel(np.asarray(action, dtype=np.int64) - np.ravel(action_space.start))] = 1.0
        return out
    if isinstance(action_space, spaces.MultiBinary):
        return np.ravel(np.asarray(action)).astype(np.float32)
    clipped = np.clip(np.ravel(np.asarray(action, dtype=np.float64)), np.ravel(action_space.low),
                      np.ravel(action_space.high))
    return symlog(clipped)


def previous_inputs_obs(obs: Any, prev_action: np.ndarray, prev_reward: float | np.ndarray) -> dict:
    """The observation a ``--prev-action-reward`` policy reads: ``prev_action`` from ``encode_action``
    (zeros at an episode start), ``prev_reward`` the raw reward of the previous step (0 at a start). A masked
    env's observation keeps its ``action_mask`` at the top level, as ``PreviousActionReward`` lays it out."""
    inputs = {"prev_action": np.asarray(prev_action, np.float32), "prev_reward": symlog(np.reshape(prev_reward, (1,)))}
    if isinstance(obs, dict) and ACTION_MASK_KEY in obs:
        inner, mask = split_action_mask(obs)
        return {"obs": inner, **inputs, ACTION_MASK_KEY: mask}
    return {"obs": obs, **inputs}


class PreviousActionReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds the previous action and reward to the observation (see the module docstring).

    Args:
        env: any env with a supported action space.
        keep_across_resets: carry mode: do not zero the previous action and reward at a reset.
    """

    def __init__(self, env: gym.Env, keep_across_resets: bool = False):
        gym.utils.RecordConstructorArgs.__init__(self, keep_across_resets=keep_across_resets)
        gym.Wrapper.__init__(self, env)
        self.keep_across_resets = keep_across_resets
        action_box = action_input_space(env.action_space)
        # A masked env's mask stays at the top level, where the policy finds it (agents.spaces, "action masks").
        self.masked = has_action_mask(env.observation_space)
        entries = {
            "obs": policy_observation_space(env.observation_space),
            "prev_action": action_box,
            "prev_reward": spaces.Box(-SYMLOG_CLIP, SYMLOG_CLIP, (1,), np.float32),
        }
        if self.masked:
            entries[ACTION_MASK_KEY] = env.observation_space[ACTION_MASK_KEY]
        self.observation_space = spaces.Dict(entries)
        self.prev_action = np.zeros(action_box.shape, np.float32)
        self.prev_reward = np.zeros(1, np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if not self.keep_across_resets:
            self.prev_action[:] = 0.0
            self.prev_reward[:] = 0.0
        return self._observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.prev_action[:] = encode_action(self.env.action_space, action)
        self.prev_reward[:] = symlog(np.reshape(reward, (1,)))
        return self._observation(obs), reward, terminated, truncated, info

    def _observation(self, obs: Any) -> dict:
        if self.masked:
            inner, mask = split_action_mask(obs)
            return {"obs": inner, "prev_action": self.prev_action.copy(), "prev_reward": self.prev_reward.copy(),
                    ACTION_MASK_KEY: mask}
        return {"obs": obs, "prev_action": self.prev_action.copy(), "prev_reward": self.prev_reward.copy()}


def run_input_wrapper(policy_config: Any) -> Callable[[gym.Env], gym.Env] | None:
    """The wrapper every env of a run goes through (training, evaluation, watch) for a ``PolicyConfig``, or
    None: a picklable callable, so that AsyncVectorEnv's workers can apply it."""
    if not getattr(policy_config, "prev_action_reward", False):
        return None
    return functools.partial(PreviousActionReward, keep_across_resets=policy_config.carry_across_episodes)
