"""Small vector memory tasks in pure numpy.

Each task hides what the agent needs behind time: the information is shown once
(or spread over many steps) and asked for later. A memoryless policy is capped
well below the maximum return; an LSTM policy can reach it.

- :class:`TMazeEnv` (``mnemo/TMaze-v0``, ``mnemo/TMazeLong-v0``): remember a cue
  for the length of a corridor (Bakker 2001).
- :class:`GatedMemoryEnv` (``mnemo/GatedMemory-v0``): write, clear and read an
  additive memory cell, the hand-set LSTM cell of the tutorial turned into a game.
- :class:`CountRecallEnv` (``mnemo/CountRecall-v0``): count how often each symbol
  has appeared, answer for the one asked, every step.

The envs are built for speed (> 100k steps/s in one process): episodes are drawn
in ``reset``, observations precomputed, and ``step`` only indexes and copies.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Colours of the tiny rgb_array drawings (RGB, uint8).
_BLACK = (0, 0, 0)
_FLOOR = (200, 200, 200)
_AGENT = (220, 40, 40)
_GOOD = (40, 180, 60)
_BAD = (120, 30, 30)
_CUE_UP = (60, 90, 230)
_CUE_DOWN = (240, 180, 30)


def _check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> None:
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode must be None or one of {metadata['render_modes']}, got {render_mode!r}")


class TMazeEnv(gym.Env[np.ndarray, np.int64]):
    """The T-maze of Bakker (NIPS 2001): remember a cue until the end of a corridor.

    ## Description
    The agent starts at the west end of a corridor of ``corridor_length`` cells
    and walks east to a T-junction, where it must turn north or south. Which arm
    holds the reward is shown only in the very first observation (the cue). In
    the corridor and at the junction the observations are the same whatever the
    cue, so the turn needs a memory of the first step.

    ```
        N (goal if cue = up)
        |
    S - - - - - - J
        |
        S (goal if cue = down)
    ```

    A memoryless policy turns the same way whatever the cue and is right half of
    the time (with the default rewards, a mean return of at most 1.5 of 4). With
    a perfect memory the return is 4. Other rewards make other T-mazes:
    ``goal_reward=1, bump_reward=0`` is the sparse +1 / -1 maze, where a
    memoryless policy averages 0 and nothing but the turn is paid, so nothing
    pushes it towards the junction.

    ## Observation Space
    ``Box(0, 1, (4,), float32)``:

    | Num | Observation                              |
    |-----|------------------------------------------|
    | 0   | cue up: 1 on the first step if the goal is north |
    | 1   | cue down: 1 on the first step if the goal is south |
    | 2   | in the corridor (not at the junction)    |
    | 3   | at the junction                          |

    ## Action Space
    ``Discrete(3)``: 0 = north, 1 = east (forward), 2 = south. There is no west:
    walking back never helps (Bakker's fourth action only wasted steps).

    ## Rewards
    By default Bakker's (arguments below change them):

    - +4 for turning into the goal arm at the junction (episode terminates),
    - -1 for turning into the wrong arm (episode terminates),
    - -0.1 for a move that makes no progress: north or south in the corridor,
      east at the junction (bumping a wall),
    - 0 for a step east along the corridor.

    Maximum return: ``goal_reward`` (``corridor_length`` steps east, then the right turn).

    ## Starting State
    Position 0 (the west end); the goal arm is north or south with probability 1/2.

    ## Episode End
    Termination on a turn at the junction. Truncation by the registered time
    limit: ``mnemo/TMaze-v0`` (length 10) after 50 steps, ``mnemo/TMazeLong-v0``
    (length 100) after 500. For other lengths pass a limit to ``gym.make``,
    e.g. ``gym.make("mnemo/TMaze-v0", corridor_length=30, max_episode_steps=150)``
    (``5 * corridor_length`` leaves room for exploration: see
    :func:`tmaze_time_limit`).

    ## Arguments
    - ``corridor_length`` (int, default 10): steps east from the start to the
      junction, ``>= 0`` (0 puts the start on the junction: no memory needed).
    - ``goal_reward``, ``wrong_reward``, ``bump_reward`` (float, defaults 4,
      -1 and -0.1): what the right turn, the wrong turn and a move without
      progress pay.
    - ``render_mode`` (``None``, ``"ansi"`` or ``"rgb_array"``).
    """

    # action_names: what the memory panel and watch's captions call each action (agents/inspector.py).
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8,
                                          "action_names": ("north", "east", "south")}

    NORTH, EAST, SOUTH = 0, 1, 2
    GOAL_REWARD = 4.0
    WRONG_REWARD = -1.0
    BUMP_REWARD = -0.1

    def __init__(self, corridor_length: int = 10, render_mode: str | None = None, goal_reward: float = GOAL_REWARD,
                 wrong_reward: float = WRONG_REWARD, bump_reward: float = BUMP_REWARD):
        if int(corridor_length) != corridor_length or corridor_length < 0:
            raise ValueError(f"corridor_length must be an integer >= 0, got {corridor_length!r}")
        for name, value in (("goal_reward", goal_reward), ("wrong_reward", wrong_reward),
                            ("bump_reward", bump_reward)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        self.goal_reward, self.wrong_reward = float(goal_reward), float(wrong_reward)
        self.bump_reward = float(bump_reward)
        _check_render_mode(render_mode, self.metadata)
        self.corridor_length = int(corridor_length)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)

        self._corridor_obs = np.array([0, 0, 1, 0], dtype=np.float32)
        self._junction_obs = np.array([0, 0, 0, 1], dtype=np.float32)
        start = self._junction_obs if self.corridor_length == 0 else self._corridor_obs
        # _start_obs[goal]: goal 0 = north (cue up), 1 = south (cue down).
        self._start_obs = np.stack([start, start]).astype(np.float32)
        self._start_obs[0, 0] = 1.0
        self._start_obs[1, 1] = 1.0
        self._goal_action = (self.NORTH, self.SOUTH)

        self.position = 0
        self.goal = 0
        self.last_reward = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = 0
        self.goal = int(self.np_random.integers(2))
        self.last_reward = 0.0
        return self._start_obs[self.goal].copy(), {}

    def step(self, action):
        a = int(action)
        if self.position < self.corridor_length:
            if a == self.EAST:
                self.position += 1
                reward = 0.0
            elif a == self.NORTH or a == self.SOUTH:
                reward = self.bump_reward
            else:
                raise ValueError(f"TMaze action must be 0, 1 or 2, got {action!r}")
            terminated = False
        elif a == self.EAST:
            reward = self.bump_reward
            terminated = False
        elif a == self.NORTH or a == self.SOUTH:
            reward = self.goal_reward if a == self._goal_action[self.goal] else self.wrong_reward
            terminated = True
        else:
            raise ValueError(f"TMaze action must be 0, 1 or 2, got {action!r}")
        self.last_reward = reward
        obs = self._junction_obs if self.position == self.corridor_length else self._corridor_obs
        return obs.copy(), reward, terminated, False, {}

    def render(self):
        if self.render_mode == "ansi":
            cells = ["J" if i == self.corridor_length else "-" for i in range(self.corridor_length + 1)]
            cells[self.position] = "@"
            cue = "up" if self.goal == 0 else "down"
            return f"goal={cue} |{''.join(cells)}| r={self.last_reward:+.1f}"
        if self.render_mode == "rgb_array":
            return self._draw()
        return None

    def _draw(self) -> np.ndarray:
        n = self.corridor_length + 1
        cell = max(2, min(16, 960 // n))
        img = np.zeros((3 * cell, n * cell, 3), dtype=np.uint8)
        img[cell : 2 * cell, :] = _FLOOR
        j = (n - 1) * cell
        north, south = (_GOOD, _BAD) if self.goal == 0 else (_BAD, _GOOD)
        img[:cell, j:] = north
        img[2 * cell :, j:] = south
        img[cell : 2 * cell, :cell] = _CUE_UP if self.goal == 0 else _CUE_DOWN
        x = self.position * cell
        pad = max(1, cell // 4)
        img[cell + pad : 2 * cell - pad, x + pad : x + cell - pad] = _AGENT
        return img


def tmaze_time_limit(corridor_length: int) -> int:
    """A time limit that leaves a random walker room to reach the junction: ``5 * max(L, 2)``."""
    return 5 * max(int(corridor_length), 2)


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
        _check_render_mode(render_mode, self.metadata)
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
            colour = (60, 90, 230) if read else (_GOOD if gate == self.WRITE else _AGENT)
            img[h : h + 4, t * w : (t + 1) * w - 1] = colour
            level = 4 * int(self._memory[t])
            if level:
                img[h - level : h, t * w : (t + 1) * w - 1] = _FLOOR
        return img


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
        _check_render_mode(render_mode, self.metadata)
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
