"""The T-maze (``mnemo/TMaze-v0``, ``mnemo/TMazeLong-v0``): remember a cue for the length of a corridor
(Bakker 2001). Pure numpy, > 100k steps/s: the episode is drawn in ``reset``, ``step`` only indexes."""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.memory.rendering import AGENT, BAD, CUE_DOWN, CUE_UP, FLOOR, GOOD, check_render_mode


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

    # action_names: what the memory panel and watch's captions call each action (agents/watch/inspector.py).
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
        check_render_mode(render_mode, self.metadata)
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
        img[cell : 2 * cell, :] = FLOOR
        j = (n - 1) * cell
        north, south = (GOOD, BAD) if self.goal == 0 else (BAD, GOOD)
        img[:cell, j:] = north
        img[2 * cell :, j:] = south
        img[cell : 2 * cell, :cell] = CUE_UP if self.goal == 0 else CUE_DOWN
        x = self.position * cell
        pad = max(1, cell // 4)
        img[cell + pad : 2 * cell - pad, x + pad : x + cell - pad] = AGENT
        return img


def tmaze_time_limit(corridor_length: int) -> int:
    """A time limit that leaves a random walker room to reach the junction: ``5 * max(L, 2)``."""
    return 5 * max(int(corridor_length), 2)
