"""Count and recall (``mnemo/CountRecall-v0``): count how often each symbol has appeared, answer for the
one asked, every step. Pure numpy: episodes are drawn in ``reset``."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.memory.rendering import check_render_mode


class CountRecallEnv(gym.Env[np.ndarray, np.int64]):
    """Count how many times each symbol has been shown; answer for the one asked.

    ## Description
    After POPGym's CountRecall (Morad et al., ICLR 2023). Each step shows a
    symbol (one of ``n_symbols``, drawn uniformly) and a query symbol (also
    drawn uniformly); the agent must answer how many times the query symbol has
    been shown so far, the current step included. Every step asks, so every
    step gives feedback. Since the query changes, the agent must keep one
    counter per symbol: a memoryless policy sees only whether the current
    symbol equals the query and cannot know the counts (about 0.2 of the
    return for the defaults), an LSTM can count in its cell.

    ## Observation Space
    ``Box(0, 1, (2 * n_symbols,), float32)``:

    | Num                          | Observation                  |
    |------------------------------|------------------------------|
    | 0..n_symbols-1               | one-hot symbol shown         |
    | n_symbols..2 * n_symbols - 1 | one-hot query symbol         |

    The observation after the last step is all zeros.

    ## Action Space
    ``Discrete(length + 1)``: the count ``0..length``.

    ## Rewards
    ``1 / length`` for each correct count, 0 otherwise. Maximum return: 1.

    ## Starting State
    The symbols and queries of the whole episode, drawn from ``np_random``.

    ## Episode End
    Termination after ``length`` steps. No truncation.

    ## Arguments
    - ``length`` (int, default 10): steps per episode, ``>= 1``.
    - ``n_symbols`` (int, default 2): number of symbols, ``>= 1``.
    - ``render_mode`` (``None``, ``"ansi"`` or ``"rgb_array"``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    _PALETTE = np.array(
        [(60, 90, 230), (240, 180, 30), (40, 180, 60), (220, 40, 40), (150, 60, 200), (40, 200, 200)],
        dtype=np.uint8,
    )

    def __init__(self, length: int = 10, n_symbols: int = 2, render_mode: str | None = None):
        if int(length) != length or length < 1:
            raise ValueError(f"length must be an integer >= 1, got {length!r}")
        if int(n_symbols) != n_symbols or n_symbols < 1:
            raise ValueError(f"n_symbols must be an integer >= 1, got {n_symbols!r}")
        check_render_mode(render_mode, self.metadata)
        self.length = int(length)
        self.n_symbols = int(n_symbols)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(2 * self.n_symbols,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.length + 1)
        self.unit_reward = 1.0 / self.length

        self._eye = np.eye(self.n_symbols, dtype=np.float32)
        self._obs = np.zeros((self.length + 1, 2 * self.n_symbols), dtype=np.float32)
        self.symbols = np.zeros(self.length, dtype=np.int64)
        self.queries = np.zeros(self.length, dtype=np.int64)
        self.answers = np.zeros(self.length, dtype=np.int64)
        self.t = 0
        self.last_action: int | None = None
        self.last_reward = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n, k = self.length, self.n_symbols
        self.symbols = self.np_random.integers(k, size=n)
        self.queries = self.np_random.integers(k, size=n)
        counts = np.cumsum(self._eye[self.symbols], axis=0)  # (n, k): counts up to and including t
        self.answers = counts[np.arange(n), self.queries].astype(np.int64)
        self._obs[:n, :k] = self._eye[self.symbols]
        self._obs[:n, k:] = self._eye[self.queries]
        self._obs[n] = 0.0
        self.t = 0
        self.last_action = None
        self.last_reward = 0.0
        return self._obs[0].copy(), {}

    def step(self, action):
        t = self.t
        if t >= self.length:
            raise RuntimeError("CountRecallEnv episode is over: call reset()")
        a = int(action)
        reward = self.unit_reward if a == self.answers[t] else 0.0
        self.t = t + 1
        self.last_action = a
        self.last_reward = reward
        return self._obs[self.t].copy(), reward, self.t == self.length, False, {}

    def render(self):
        t = min(self.t, self.length - 1)
        if self.render_mode == "ansi":
            shown = " ".join(str(s) for s in self.symbols[: t + 1])
            return (
                f"t={self.t} shown: {shown} | query {self.queries[t]}: count={self.answers[t]} "
                f"answer={self.last_action}"
            )
        if self.render_mode == "rgb_array":
            # Top row: the symbols shown so far; bottom row: the queries.
            w = 8
            img = np.zeros((18, w * self.length, 3), dtype=np.uint8)
            for i in range(t + 1):
                img[:8, i * w : (i + 1) * w - 1] = self._PALETTE[self.symbols[i] % len(self._PALETTE)]
                img[10:, i * w : (i + 1) * w - 1] = self._PALETTE[self.queries[i] % len(self._PALETTE)]
            return img
        return None
