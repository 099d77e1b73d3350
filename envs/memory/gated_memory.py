"""Gated memory (``mnemo/GatedMemory-v0``): write, clear and read an additive memory cell, the hand-set
LSTM cell of the tutorial turned into a game. Pure numpy: episodes are drawn in ``reset``."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.memory.rendering import AGENT, FLOOR, GOOD, check_render_mode


class GatedMemoryEnv(gym.Env[np.ndarray, np.int64]):
    """Write, clear and read an additive memory: the hand-set LSTM cell as a game.

    ## Description
    The tutorial's one-unit LSTM (``docs``: SEEDS) reads input vectors
    ``(x1, x2, x3)``: ``x2 = +1`` adds ``x1`` to the cell, ``x2 = -1`` clears it,
    ``x3 = 1`` opens the output gate. This env shows those vectors and asks the
    agent to be that cell: on every read step it must answer what the memory
    holds. Example (the tutorial's sequence): write 3, write 4, read -> 7,
    clear, write 6, read -> 6.

    Random episodes have ``length`` steps, exactly ``n_reads`` of which are
    reads, the last step always one. Every other step is a write (probability
    ``p_write``) of a value in ``1..value_high``, or else a clear. A write that
    would take the memory above ``max_memory`` becomes a clear, so answers lie in
    ``0..max_memory``. Memory starts at 0.

    A memoryless policy sees the same read observation ``(0, 0, 1)`` every time
    and can only guess the most frequent memory value.

    ## Observation Space
    ``Box([0, -1, 0], [value_high, 1, 1], (3,), float32)``:

    | Num | Observation | Values                                  |
    |-----|-------------|-----------------------------------------|
    | 0   | value x1    | ``1..value_high`` on writes, else 0     |
    | 1   | gate x2     | +1 write, -1 clear, 0 otherwise         |
    | 2   | read x3     | 1 on read steps, else 0                 |

    The observation after the last step is all zeros.

    ## Action Space
    ``Discrete(max_memory + 1)``: the answer ``k`` means "the memory holds k".
    It is ignored on steps that are not reads.

    ## Rewards
    +1 for a correct answer on a read step, 0 otherwise. Maximum return:
    ``n_reads`` (3 by default).

    ## Starting State
    Memory 0, the whole episode drawn from ``np_random``. A fixed episode can be
    played with ``reset(options={"script": rows})``, ``rows`` a sequence of
    ``(value, gate, read)`` triples; on a step that both writes and reads, the
    write happens first (as in the cell, where ``h' = o * tanh(c')``).

    ## Episode End
    Termination after ``length`` steps (the length of the script, if one is
    given). No truncation.

    ## Arguments
    - ``length`` (int, default 12): steps per episode, ``>= 1``.
    - ``n_reads`` (int, default 3): read steps per episode, ``1..length``.
    - ``value_high`` (int, default 3): largest value written, ``>= 1``.
    - ``max_memory`` (int, default 6): largest memory, ``>= value_high``.
    - ``p_write`` (float, default 0.7): probability that a non-read step
      writes rather than clears, in ``[0, 1]``.
    - ``render_mode`` (``None``, ``"ansi"`` or ``"rgb_array"``).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    WRITE, CLEAR = 1.0, -1.0

    def __init__(
        self,
        length: int = 12,
        n_reads: int = 3,
        value_high: int = 3,
        max_memory: int = 6,
        p_write: float = 0.7,
        render_mode: str | None = None,
    ):
        if int(length) != length or length < 1:
            raise ValueError(f"length must be an integer >= 1, got {length!r}")
        if int(n_reads) != n_reads or not 1 <= n_reads <= length:
            raise ValueError(f"n_reads must be an integer in [1, length={length}], got {n_reads!r}")
        if int(value_high) != value_high or value_high < 1:
            raise ValueError(f"value_high must be an integer >= 1 (values are 1..value_high), got {value_high!r}")
        if int(max_memory) != max_memory or max_memory < value_high:
            raise ValueError(f"max_memory must be an integer >= value_high={value_high}, got {max_memory!r}")
        if not 0.0 <= p_write <= 1.0:
            raise ValueError(f"p_write must be in [0, 1], got {p_write!r}")
        check_render_mode(render_mode, self.metadata)
        self.length = int(length)
        self.n_reads = int(n_reads)
        self.value_high = int(value_high)
        self.max_memory = int(max_memory)
        self.p_write = float(p_write)
        self.render_mode = render_mode

        self.observation_space = spaces.Box(
            low=np.array([0.0, -1.0, 0.0], dtype=np.float32),
            high=np.array([self.value_high, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Discrete(self.max_memory + 1)

        # Episode arrays, filled by reset: _obs has one row per step plus the final zeros;
        # _answer[t] is the memory to report at step t, -1 where t is not a read.
        self._obs = np.zeros((self.length + 1, 3), dtype=np.float32)
        self._answer = np.full(self.length, -1, dtype=np.int64)
        self._memory = np.zeros(self.length, dtype=np.int64)
        self._steps = self.length
        self.t = 0
        self.last_action: int | None = None
        self.last_reward = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options is not None and "script" in options:
            self._load_script(options["script"])
        else:
            self._draw_episode()
        self.t = 0
        self.last_action = None
        self.last_reward = 0.0
        return self._obs[0].copy(), {}

    def _draw_episode(self) -> None:
        rng = self.np_random
        n = self.length
        reads = np.zeros(n, dtype=bool)
        reads[n - 1] = True
        if self.n_reads > 1:
            reads[rng.choice(n - 1, size=self.n_reads - 1, replace=False)] = True
        writes = rng.random(n) < self.p_write
        values = rng.integers(1, self.value_high + 1, size=n)
        obs = self._obs
        obs[:] = 0.0
        self._answer[:] = -1
        memory = 0
        for t in range(n):
            if reads[t]:
                obs[t, 2] = 1.0
                self._answer[t] = memory
            elif writes[t] and memory + values[t] <= self.max_memory:
                memory += int(values[t])
                obs[t, 0] = values[t]
                obs[t, 1] = self.WRITE
            else:
                memory = 0
                obs[t, 1] = self.CLEAR
            self._memory[t] = memory
        self._steps = n

    def _load_script(self, script) -> None:
        rows = np.asarray(script, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != 3 or not 1 <= len(rows) <= self.length:
            raise ValueError(
                f"script must be 1 to length={self.length} (value, gate, read) rows, got shape {rows.shape}"
            )
        if not np.all(np.isin(rows[:, 1], (-1.0, 0.0, 1.0))) or not np.all(np.isin(rows[:, 2], (0.0, 1.0))):
            raise ValueError("script gates must be -1, 0 or +1 and reads 0 or 1")
        n = len(rows)
        self._obs[:] = 0.0
        self._obs[:n] = rows
        self._answer[:] = -1
        memory = 0
        for t, (value, gate, read) in enumerate(rows):
            if gate == self.WRITE:
                if value != int(value) or not 1 <= value <= self.value_high:
                    raise ValueError(
                        f"script value at step {t} must be an integer in 1..{self.value_high}, got {value}"
                    )
                memory += int(value)
            elif gate == self.CLEAR:
                memory = 0
            if memory > self.max_memory:
                raise ValueError(f"script memory reaches {memory} at step {t}, above max_memory={self.max_memory}")
            if read:
                self._answer[t] = memory
            self._memory[t] = memory
        self._steps = n

    def step(self, action):
        t = self.t
        if t >= self._steps:
            raise RuntimeError("GatedMemoryEnv episode is over: call reset()")
        answer = self._answer[t]
        reward = 1.0 if answer >= 0 and int(action) == answer else 0.0
        self.t = t + 1
        self.last_action = int(action)
        self.last_reward = reward
        terminated = self.t == self._steps
        obs = self._obs[self._steps] if terminated else self._obs[self.t]
        return obs.copy(), reward, terminated, False, {}

    def render(self):
        if self.render_mode == "ansi":
            return self._text()
        if self.render_mode == "rgb_array":
            return self._draw()
        return None

    def _text(self) -> str:
        t = min(self.t, self._steps - 1)
        value, gate, read = self._obs[t]
        event = {1.0: f"write {int(value)}", -1.0: "clear", 0.0: "-"}[float(gate)]
        if read:
            event = f"{event}, read" if gate else "read"
        return f"t={self.t} step {t}: {event:<14} memory={self._memory[t]} reward={self.last_reward:.0f}"

    def _draw(self) -> np.ndarray:
        # One column per step: the memory level as a bar; green writes, red clears, blue reads.
        h, w = 4 * (self.max_memory + 1), 8
        img = np.zeros((h + 4, w * self._steps, 3), dtype=np.uint8)
        for t in range(min(self.t + 1, self._steps)):
            _, gate, read = self._obs[t]
            colour = (60, 90, 230) if read else (GOOD if gate == self.WRITE else AGENT)
            img[h : h + 4, t * w : (t + 1) * w - 1] = colour
            level = 4 * int(self._memory[t])
            if level:
                img[h - level : h, t * w : (t + 1) * w - 1] = FLOOR
        return img
