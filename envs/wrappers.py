"""Partial-observability wrappers, and the classic-control tasks they make.

Each wrapper is a small :class:`gymnasium.ObservationWrapper` over a 1-D ``Box``
observation:

- :class:`MaskObservation` keeps a subset of the entries (hide velocities).
- :class:`FlickerObservation` blanks the whole observation with probability ``p``
  (the flickering screens of DRQN, Hausknecht & Stone 2015).
- :class:`GaussianObservationNoise` adds zero-mean Gaussian noise.

The factories at the bottom are the entry points of the registered ids
(``mnemo/CartPoleNoVel-v1`` and friends, see ``envs/__init__.py``). They build
the raw classic-control env, without a ``TimeLimit``: registration adds it.

Randomness: the stochastic wrappers draw from their own generator, seeded from the
``seed`` passed to ``reset``. They do not share the inner env's ``np_random``
(``Wrapper.np_random`` forwards to it), so wrapping never changes the inner env's
random stream: ``CartPole`` seeded with 3 starts in the same state with or without
flicker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import AcrobotEnv, CartPoleEnv, MountainCarEnv, PendulumEnv

# Mixed into the wrapper seeds so that a wrapper's stream differs from the inner env's
# stream even though both come from the same user seed.
_FLICKER_STREAM = 0xF11C
_NOISE_STREAM = 0x0015E


def _require_1d_box(env: gym.Env, wrapper: str) -> spaces.Box:
    space = env.observation_space
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{wrapper} needs a 1-D Box observation space, got {space}")
    return space


def _wrapper_rng(seed: int | None, stream: int) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, stream])


class MaskObservation(gym.ObservationWrapper[np.ndarray, Any, np.ndarray], gym.utils.RecordConstructorArgs):
    """Keep only some entries of a 1-D ``Box`` observation.

    Hiding the velocities of a classic-control task turns it into a POMDP: the
    agent must infer them from consecutive positions, which needs memory.

    Example:
        >>> import gymnasium as gym
        >>> env = MaskObservation(gym.make("CartPole-v1"), keep_indices=[0, 2])
        >>> env.observation_space.shape
        (2,)
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, obs.dtype
        ((2,), dtype('float32'))

    Args:
        env: env with a 1-D ``Box`` observation space.
        keep_indices: indices of the entries to keep, in the order given; no
            duplicates, each in ``[0, obs_dim)``.

    Raises:
        ValueError: non-Box or not 1-D space, empty, duplicate or out-of-range indices.
    """

    def __init__(self, env: gym.Env, keep_indices: Sequence[int]):
        gym.utils.RecordConstructorArgs.__init__(self, keep_indices=list(keep_indices))
        space = _require_1d_box(env, "MaskObservation")
        indices = [int(i) for i in keep_indices]
        n = space.shape[0]
        if not indices:
            raise ValueError("MaskObservation keep_indices must not be empty")
        if len(set(indices)) != len(indices):
            raise ValueError(f"MaskObservation keep_indices has duplicates: {indices}")
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"MaskObservation keep_indices {bad} out of range for an observation of size {n}")
        gym.ObservationWrapper.__init__(self, env)
        self.keep_indices = np.asarray(indices, dtype=np.intp)
        self.observation_space = spaces.Box(
            low=space.low[self.keep_indices],
            high=space.high[self.keep_indices],
            dtype=space.dtype,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep_indices]


class FlickerObservation(gym.ObservationWrapper[np.ndarray, Any, np.ndarray], gym.utils.RecordConstructorArgs):
    """Replace the whole observation by zeros with probability ``p`` each step.

    As in DRQN's flickering Atari (Hausknecht & Stone 2015): on a blank step the
    agent sees nothing and must act on what it remembers. The reset observation
    flickers too. The bounds of the space are widened to include 0 if needed.

    Example:
        >>> import gymnasium as gym
        >>> env = FlickerObservation(gym.make("CartPole-v1"), p=0.5)
        >>> obs, _ = env.reset(seed=0)
        >>> obs, *_ = env.step(0)
        >>> obs.shape
        (4,)

    Args:
        env: env with a 1-D ``Box`` observation space.
        p: blanking probability, in ``[0, 1]``.

    Raises:
        ValueError: ``p`` outside ``[0, 1]`` or a non-Box observation space.
    """

    def __init__(self, env: gym.Env, p: float = 0.5):
        gym.utils.RecordConstructorArgs.__init__(self, p=p)
        space = _require_1d_box(env, "FlickerObservation")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"FlickerObservation p must be in [0, 1], got {p}")
        gym.ObservationWrapper.__init__(self, env)
        self.p = float(p)
        self._zeros = np.zeros(space.shape, dtype=space.dtype)
        self.observation_space = spaces.Box(
            low=np.minimum(space.low, 0), high=np.maximum(space.high, 0), dtype=space.dtype
        )
        self._rng = _wrapper_rng(None, _FLICKER_STREAM)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = _wrapper_rng(seed, _FLICKER_STREAM)
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if self._rng.random() < self.p:
            return self._zeros.copy()
        return observation


class GaussianObservationNoise(gym.ObservationWrapper[np.ndarray, Any, np.ndarray], gym.utils.RecordConstructorArgs):
    """Add zero-mean Gaussian noise with standard deviation ``std`` to every entry.

    The noise is truncated at 5 ``std`` and the space widened by as much, so that
    observations stay inside finite bounds.

    Example:
        >>> import gymnasium as gym
        >>> env = GaussianObservationNoise(gym.make("Pendulum-v1"), std=0.1)
        >>> obs, _ = env.reset(seed=0)
        >>> obs.dtype
        dtype('float32')

    Args:
        env: env with a 1-D ``Box`` observation space.
        std: noise standard deviation, ``>= 0`` (0 leaves observations unchanged).

    Raises:
        ValueError: negative or non-finite ``std`` or a non-Box observation space.
    """

    def __init__(self, env: gym.Env, std: float = 0.1):
        gym.utils.RecordConstructorArgs.__init__(self, std=std)
        space = _require_1d_box(env, "GaussianObservationNoise")
        if not (np.isfinite(std) and std >= 0):
            raise ValueError(f"GaussianObservationNoise std must be finite and >= 0, got {std}")
        gym.ObservationWrapper.__init__(self, env)
        self.std = float(std)
        bound = 5.0 * self.std
        self._low = (space.low - bound).astype(space.dtype)
        self._high = (space.high + bound).astype(space.dtype)
        self.observation_space = spaces.Box(low=self._low, high=self._high, dtype=space.dtype)
        self._rng = _wrapper_rng(None, _NOISE_STREAM)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = _wrapper_rng(seed, _NOISE_STREAM)
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        noise = np.clip(self._rng.standard_normal(observation.shape), -5.0, 5.0) * self.std
        noisy = (observation + noise).astype(observation.dtype, copy=False)
        return np.clip(noisy, self._low, self._high, out=noisy)


# ---------------------------------------------------------------------------
# Entry points of the registered ids. Velocities dropped:
#   CartPole [x, x_dot, theta, theta_dot]            -> [x, theta]
#   Pendulum [cos th, sin th, th_dot]                -> [cos th, sin th]
#   Acrobot  [cos1, sin1, cos2, sin2, th1_dot, th2_dot] -> first four
#   MountainCar [position, velocity]                  -> [position]
# ---------------------------------------------------------------------------

CARTPOLE_KEEP = (0, 2)
PENDULUM_KEEP = (0, 1)
ACROBOT_KEEP = (0, 1, 2, 3)
MOUNTAINCAR_KEEP = (0,)


def make_cartpole_no_velocity(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """CartPole with cart velocity and pole angular velocity hidden: obs = [x, theta]."""
    return MaskObservation(CartPoleEnv(render_mode=render_mode, **kwargs), CARTPOLE_KEEP)


def make_pendulum_no_velocity(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Pendulum with angular velocity hidden: obs = [cos theta, sin theta]."""
    return MaskObservation(PendulumEnv(render_mode=render_mode, **kwargs), PENDULUM_KEEP)


def make_acrobot_no_velocity(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """Acrobot with both joint velocities hidden: obs = [cos1, sin1, cos2, sin2]."""
    return MaskObservation(AcrobotEnv(render_mode=render_mode, **kwargs), ACROBOT_KEEP)


def make_mountaincar_no_velocity(render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """MountainCar with velocity hidden: obs = [position]."""
    return MaskObservation(MountainCarEnv(render_mode=render_mode, **kwargs), MOUNTAINCAR_KEEP)


def make_cartpole_flicker(render_mode: str | None = None, p: float = 0.5, **kwargs: Any) -> gym.Env:
    """Full-state CartPole whose observation is blanked with probability ``p``."""
    return FlickerObservation(CartPoleEnv(render_mode=render_mode, **kwargs), p=p)
