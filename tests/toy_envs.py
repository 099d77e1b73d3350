"""Small envs for bookkeeping tests: known episode boundaries, every space kind."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class BoundaryEnv(gym.Env):
    """Episodes of random length 2..``max_len`` that end by termination or truncation (both happen).

    Observations are a Dict (a noisy Box, a step counter as Discrete) so that tree observations,
    and actions of the given kind, travel through the whole pipeline.

    ``masked`` (Discrete / MultiDiscrete actions): the observation also has an ``action_mask`` (int8, the
    dimensions' masks side by side) drawn at random every step, with at least one legal action per dimension;
    an illegal action raises ``IllegalActionError``.
    """

    metadata = {"render_modes": []}

    def __init__(self, action_kind: str = "discrete", max_len: int = 7, masked: bool = False):
        self.max_len, self.masked = max_len, masked
        self.action_space = {
            "discrete": spaces.Discrete(3),
            "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "multidiscrete": spaces.MultiDiscrete([2, 3]),
            "multibinary": spaces.MultiBinary(3),
        }[action_kind]
        entries = {"x": spaces.Box(-1.0, 1.0, (3,), np.float32), "t": spaces.Discrete(max_len + 1)}
        if masked:
            self.sizes = ([int(self.action_space.n)] if action_kind == "discrete"
                          else [int(n) for n in self.action_space.nvec])
            entries["action_mask"] = spaces.MultiBinary(sum(self.sizes))
        self.observation_space = spaces.Dict(entries)

    def _obs(self):
        obs = {"x": self.np_random.uniform(-1, 1, 3).astype(np.float32), "t": self.t}
        if self.masked:
            self.mask = random_mask(self.np_random, self.sizes)
            obs["action_mask"] = self.mask
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(2, self.max_len + 1))
        self.truncates = bool(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        if self.masked:
            check_legal(self.mask, self.sizes, action)
        self.t += 1
        end = self.t >= self.length
        reward = float(self.np_random.normal())
        return self._obs(), reward, end and not self.truncates, end and self.truncates, {}


class IllegalActionError(RuntimeError):
    """A toy env got an action its mask forbade."""


def random_mask(rng: np.random.Generator, sizes: list[int]) -> np.ndarray:
    """A random int8 mask (sum(sizes),): each dimension's entries side by side, at least one legal in each."""
    parts = []
    for n in sizes:
        part = (rng.random(n) < 0.5).astype(np.int8)
        part[rng.integers(n)] = 1
        parts.append(part)
    return np.concatenate(parts)


def check_legal(mask: np.ndarray, sizes: list[int], action) -> None:
    """Raise IllegalActionError unless every part of ``action`` is legal under ``mask``."""
    offsets = np.cumsum([0, *sizes[:-1]])
    for offset, a in zip(offsets, np.atleast_1d(np.asarray(action)), strict=True):
        if not mask[offset + int(a)]:
            raise IllegalActionError(f"action {action} is illegal under the mask {mask}")


class MaskedCueEnv(gym.Env):
    """A memory task whose legal actions change every step.

    Step 0 shows a cue (one of ``n`` actions, as a one-hot); later steps show zeros. Every step's
    ``action_mask`` allows a random subset; on the last step (``length``) it allows exactly two: the cue and one
    other, and the reward is 1 when the action is the cue. A policy without memory scores 0.5 there; one that
    remembers the cue scores 1. Observation: Dict {"observation": Box(n + 1,) (cue one-hot, last-step flag),
    "action_mask": Box(n,) int8}, PettingZoo's layout. An illegal action raises ``IllegalActionError``.
    """

    metadata = {"render_modes": []}

    def __init__(self, n: int = 4, length: int = 4):
        self.n, self.length = n, length
        self.observation_space = spaces.Dict({
            "observation": spaces.Box(0.0, 1.0, (n + 1,), np.float32),
            "action_mask": spaces.Box(0, 1, (n,), np.int8),
        })
        self.action_space = spaces.Discrete(n)

    def _obs(self):
        x = np.zeros(self.n + 1, dtype=np.float32)
        if self.t == 0:
            x[self.cue] = 1.0
        if self.t == self.length:
            x[self.n] = 1.0
            self.mask = np.zeros(self.n, dtype=np.int8)
            other = (self.cue + 1 + int(self.np_random.integers(self.n - 1))) % self.n
            self.mask[[self.cue, other]] = 1
        else:
            self.mask = random_mask(self.np_random, [self.n])
        return {"observation": x, "action_mask": self.mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(self.n))
        return self._obs(), {}

    def step(self, action):
        check_legal(self.mask, [self.n], action)
        if self.t == self.length:
            return self._obs(), float(int(action) == self.cue), True, False, {}
        self.t += 1
        return self._obs(), 0.0, False, False, {}


if "tests/Boundary-v0" not in gym.registry:
    gym.register("tests/Boundary-v0", entry_point=BoundaryEnv)
if "tests/MaskedCue-v0" not in gym.registry:
    gym.register("tests/MaskedCue-v0", entry_point=MaskedCueEnv)


class InfoMaskCueEnv(MaskedCueEnv):
    """``MaskedCueEnv`` that gives its mask in ``info["action_mask"]`` instead of the observation (plain Box)."""

    def __init__(self, n: int = 4, length: int = 4):
        super().__init__(n, length)
        self.observation_space = self.observation_space["observation"]

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs["observation"], {**info, "action_mask": obs["action_mask"]}

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs["observation"], reward, terminated, truncated, {**info, "action_mask": obs["action_mask"]}


def make_info_mask_cue(**kwargs):
    """``InfoMaskCueEnv`` wrapped in mnemo's InfoActionMask (the opt-in for masks given in info)."""
    from agents.rollout.info_mask import InfoActionMask

    return InfoActionMask(InfoMaskCueEnv(**kwargs))


if "tests/InfoMaskCue-v0" not in gym.registry:
    gym.register("tests/InfoMaskCue-v0", entry_point=make_info_mask_cue)
