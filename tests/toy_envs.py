"""Small envs for bookkeeping tests: known episode boundaries, every space kind."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class BoundaryEnv(gym.Env):
    """Episodes of random length 2..``max_len`` that end by termination or truncation (both happen).

    Observations are a Dict (a noisy Box, a step counter as Discrete) so that tree observations,
    and actions of the given kind, travel through the whole pipeline.
    """

    metadata = {"render_modes": []}

    def __init__(self, action_kind: str = "discrete", max_len: int = 7):
        self.max_len = max_len
        self.observation_space = spaces.Dict({
            "x": spaces.Box(-1.0, 1.0, (3,), np.float32),
            "t": spaces.Discrete(max_len + 1),
        })
        self.action_space = {
            "discrete": spaces.Discrete(3),
            "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "multidiscrete": spaces.MultiDiscrete([2, 3]),
            "multibinary": spaces.MultiBinary(3),
        }[action_kind]

    def _obs(self):
        return {"x": self.np_random.uniform(-1, 1, 3).astype(np.float32), "t": self.t}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(2, self.max_len + 1))
        self.truncates = bool(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.length
        reward = float(self.np_random.normal())
        return self._obs(), reward, end and not self.truncates, end and self.truncates, {}


if "tests/Boundary-v0" not in gym.registry:
    gym.register("tests/Boundary-v0", entry_point=BoundaryEnv)
