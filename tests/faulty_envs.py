"""Misbehaving envs for the robustness tests: NaN / inf output, exceptions, unsnapshottable state, odd spaces.

Each env learns its index in the vector env from its first reset seed (the trainer seeds env i with
``seed + i``), so ``fail_index`` picks the one env that misbehaves.
"""

from __future__ import annotations

import threading

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class FaultyEnv(gym.Env):
    """Episodes of 10 steps with a 3-float observation; env ``fail_index`` misbehaves at its ``fail_at``-th step.

    Args:
        mode: ``"nan_obs"``, ``"inf_reward"``, ``"nan_reset"`` (after the failing step, every reset
            returns NaN), ``"raise"`` (step raises RuntimeError) or ``"hang"`` (step never returns).
        fail_index: which env of the vector env misbehaves (-1: none).
        fail_at: the env's step count (over all its episodes, from 1) at which it misbehaves.
        repeat: misbehave every ``fail_at`` steps instead of once.
        base_seed: the run's seed, so that ``first reset seed - base_seed`` is the env's index.
    """

    metadata = {"render_modes": []}

    def __init__(self, mode: str = "nan_obs", fail_index: int = 0, fail_at: int = 50, repeat: bool = False,
                 base_seed: int = 1):
        self.mode, self.fail_index, self.fail_at, self.repeat, self.base_seed = (
            mode, fail_index, fail_at, repeat, base_seed)
        self.observation_space = spaces.Box(-10.0, 10.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.index: int | None = None
        self.total_steps, self.t = 0, 0
        self.broken = False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.index is None and seed is not None:
            self.index = seed - self.base_seed
        self.t = 0
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        if self.broken and self.mode == "nan_reset":
            obs[:] = np.nan
        return obs, {}

    def _failing_now(self) -> bool:
        if self.index != self.fail_index:
            return False
        return self.total_steps % self.fail_at == 0 if self.repeat else self.total_steps == self.fail_at

    def step(self, action):
        self.total_steps += 1
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        reward = float(action == (obs[0] > 0))
        if self._failing_now():
            if self.mode == "raise":
                raise RuntimeError(f"simulated failure at step {self.total_steps}")
            if self.mode == "hang":
                threading.Event().wait()  # a stuck env: only killing its process ends it
            if self.mode == "nan_obs":
                obs[1] = np.nan
            if self.mode == "inf_reward":
                reward = float("inf")
            if self.mode == "nan_reset":
                self.broken = True
                obs[1] = np.nan
        return obs, reward, self.t >= 10, False, {}


class UnsnapshottableEnv(FaultyEnv):
    """A healthy FaultyEnv that holds a lock: its state cannot be written to JSON."""

    def __init__(self, **kwargs):
        super().__init__(fail_index=-1, **kwargs)
        self.lock = threading.Lock()


class TextObservationEnv(gym.Env):
    """Observes a Text space, which no policy encoder supports."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = spaces.Text(8)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "hello", {}

    def step(self, action):
        return "hello", 0.0, True, False, {}


class GraphActionEnv(gym.Env):
    """Acts in a Sequence space, which no action head supports."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Sequence(spaces.Discrete(2))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class NeedsMissingPackageEnv(gym.Env):
    """Fails in its constructor the way Gymnasium's Box2D envs do when Box2D is not installed."""

    def __init__(self):
        raise gym.error.DependencyNotInstalled('Box2D is not installed, run `pip install "gymnasium[box2d]"`')


for _id, _entry in (("tests/Faulty-v0", FaultyEnv), ("tests/NeedsMissingPackage-v0", NeedsMissingPackageEnv),
                    ("tests/NoSnapshot-v0", UnsnapshottableEnv),
                    ("tests/TextObs-v0", TextObservationEnv), ("tests/SequenceAction-v0", GraphActionEnv)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry)
