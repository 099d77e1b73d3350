"""Fog maze: find the treasure in a foggy room, told only once which corner holds it.

Each corner of a small room holds a chest and only one holds the treasure; the
chests look the same. A cue at the start of the episode says which corner is
right, after which the agent sees only a small window around itself, with no
coordinates. The agent has to keep the cue in memory while it walks there.
This is the T-maze cue-recall test (Bakker, 2001) in a room with random walls.

Simulation (``reset_state``/``step_state``) and observation
(``observe_vector``/``rasterize``) are numpy only; ``draw`` uses pygame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.env_args import check_min_ints
from envs.games import raster
from envs.games.window import GameWindow, RenderedGame, check_render_mode

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (drow, dcol) per action

FLOOR, WALL, CHEST = 0, 1, 2
CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")


@dataclass(frozen=True)
class MazeParams:
    """Layout and rules."""

    size: int = 7
    """side of the room in cells, walls excluded"""
    view_radius: int = 2
    """the agent sees the (2r+1) x (2r+1) cells around itself"""
    n_goals: int = 4
    """chests in the first ``n_goals`` corners of top-left, top-right, bottom-right, bottom-left"""
    wall_density: float = 0.2
    """probability that an inner cell is a wall (the chests stay reachable)"""
    cue_steps: int = 1
    """the cue is in the first ``cue_steps`` observations of an episode"""
    step_penalty: float = 0.01
    """reward -step_penalty on each step that does not open a chest"""
    wrong_penalty: float = 1.0
    """reward -wrong_penalty for opening a wrong chest"""

    def corners(self) -> tuple[tuple[int, int], ...]:
        """(row, col) room coordinates of the chests, in ``CORNER_NAMES`` order."""
        last = self.size - 1
        return ((0, 0), (0, last), (last, last), (last, 0))[: self.n_goals]


@dataclass(slots=True)
class MazeState:
    """One episode at one step."""

    cells: np.ndarray
    """(size + 2r, size + 2r) uint8 FLOOR/WALL/CHEST: the room padded with ``view_radius`` of wall,
    so the view window never leaves the array; fixed during an episode, never written"""
    row: int
    """agent position in room coordinates (0 .. size-1)"""
    col: int
    goal: int
    """index of the corner holding the treasure"""
    t: int
    """steps taken in this episode"""


# ---------------------------------------------------------------- simulation


def _reachable(open_cells: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    seen = np.zeros_like(open_cells)
    seen[start] = True
    queue = deque([start])
    rows, cols = open_cells.shape
    while queue:
        r, c = queue.popleft()
        for dr, dc in _MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < rows and 0 <= nc < cols and open_cells[nr, nc] and not seen[nr, nc]:
                seen[nr, nc] = True
                queue.append((nr, nc))
    return seen


def _next_to(mask: np.ndarray, cell: tuple[int, int]) -> bool:
    rows, cols = mask.shape
    return any(
        0 <= cell[0] + dr < rows and 0 <= cell[1] + dc < cols and mask[cell[0] + dr, cell[1] + dc] for dr, dc in _MOVES
    )


def reset_state(rng: np.random.Generator, params: MazeParams) -> MazeState:
    """A fresh room: random walls (every chest reachable), agent in the centre, treasure in a random corner."""
    size, r = params.size, params.view_radius
    start = (size // 2, size // 2)
    corners = params.corners()
    walls = np.zeros((size, size), dtype=bool)
    for _ in range(100):  # resample until every chest is reachable; at density 0.2 nearly always at once
        walls = rng.random((size, size)) < params.wall_density
        walls[start] = False
        passable = ~walls
        for corner in corners:
            walls[corner] = False
            passable[corner] = False  # opening a chest ends the episode: no path leads through one
        reach = _reachable(passable, start)
        if all(_next_to(reach, corner) for corner in corners):
            break
    else:
        walls[:] = False
    cells = np.full((size + 2 * r, size + 2 * r), WALL, dtype=np.uint8)
    room = cells[r : r + size, r : r + size]
    room[:] = np.where(walls, WALL, FLOOR)
    for corner in corners:
        room[corner] = CHEST
    cells.flags.writeable = False
    return MazeState(cells, start[0], start[1], int(rng.integers(params.n_goals)), 0)


def step_state(
    state: MazeState, action: int, rng: np.random.Generator, params: MazeParams
) -> tuple[MazeState, float, bool]:
    """Move one cell (walls block); opening any chest ends the episode.

    Returns:
        (next state, reward, terminated): +1 for the treasure chest,
        -wrong_penalty for another chest, else -step_penalty.
    """
    dr, dc = _MOVES[action]
    row, col = state.row + dr, state.col + dc
    r = params.view_radius
    code = state.cells[row + r, col + r]
    if code == WALL:
        row, col = state.row, state.col
    next_state = MazeState(state.cells, row, col, state.goal, state.t + 1)
    if code == CHEST:
        found = params.corners().index((row, col)) == state.goal
        return next_state, (1.0 if found else -params.wrong_penalty), True
    return next_state, -params.step_penalty, False


# --------------------------------------------------------------- observation


def vector_size(params: MazeParams) -> int:
    """Length of the vector observation: wall and chest planes of the window, then the cue."""
    side = 2 * params.view_radius + 1
    return 2 * side * side + params.n_goals


def window(state: MazeState, params: MazeParams) -> np.ndarray:
    """The (2r+1, 2r+1) cell codes around the agent (a view into ``state.cells``, read-only)."""
    side = 2 * params.view_radius + 1
    return state.cells[state.row : state.row + side, state.col : state.col + side]


def cue_visible(state: MazeState, params: MazeParams) -> bool:
    return state.t < params.cue_steps


def observe_vector(state: MazeState, params: MazeParams) -> np.ndarray:
    """``[walls (side*side), chests (side*side), cue one-hot (n_goals)]`` in {0, 1}.

    The planes are row-major over the window with the agent in the centre; the
    cue is all zeros once ``cue_steps`` have passed.
    """
    view = window(state, params).ravel()
    n = view.shape[0]
    obs = np.zeros(2 * n + params.n_goals, dtype=np.float32)
    obs[:n] = view == WALL
    obs[n : 2 * n] = view == CHEST
    if cue_visible(state, params):
        obs[2 * n + state.goal] = 1.0
    return obs


_COLORS: dict[str, raster.Color] = {
    "margin": (0, 0, 0),
    "floor": (34, 34, 46),
    "wall": (112, 112, 132),
    "chest": (230, 188, 60),
    "agent": (80, 160, 255),
    "cue": (255, 255, 255),
}
_PIXELS = {gray: raster.palette(_COLORS, gray) for gray in (False, True)}
_LUTS = {
    gray: np.stack([_PIXELS[gray][name] for name in ("floor", "wall", "chest", "agent")]) for gray in (False, True)
}
_AGENT = 3  # code of the agent's cell in the pixel view


def rasterize(state: MazeState, params: MazeParams, size: int, grayscale: bool = False) -> np.ndarray:
    """The agent's pixel view: its window drawn in cells, centred; the cue is a white block
    of one cell in the image corner of the treasure's corner (first ``cue_steps`` steps only).

    Returns:
        (size, size, 1 or 3) uint8.
    """
    side = 2 * params.view_radius + 1
    cell = size // side
    codes = window(state, params).copy()
    codes[params.view_radius, params.view_radius] = _AGENT
    img = raster.blow_up(codes, _LUTS[grayscale], cell, size, _PIXELS[grayscale]["margin"])
    if cue_visible(state, params):
        # A whole cell: with half a cell (16 of 1,600 pixels at 40x40) the LSTM agent learnt the maze on 2 of 3
        # seeds in 1.6M steps, with a whole cell on 3 of 3 by 561k (docs/results.md).
        k = cell
        rows = slice(0, k) if state.goal in (0, 1) else slice(size - k, size)
        cols = slice(0, k) if state.goal in (0, 3) else slice(size - k, size)
        img[rows, cols] = _PIXELS[grayscale]["cue"]
    return img


# ------------------------------------------------------------------- drawing

_CELL_PX = 40
_BAR_PX = 36


def render_size(params: MazeParams) -> tuple[int, int]:
    side = (params.size + 2) * _CELL_PX
    return side, side + _BAR_PX


def draw(surface: Any, state: MazeState, params: MazeParams, reveal: bool = True) -> None:
    """Draw the room on a pygame ``surface`` of ``render_size(params)``.

    Args:
        reveal: show the whole room dimmed under the fog and the treasure;
            ``False`` shows only what the agent sees (its window and the cue).
    """
    from envs.games.text import blit_text
    from envs.games.window import import_pygame

    pygame = import_pygame()
    surface.fill((6, 6, 10))
    r, size = params.view_radius, params.size
    room = state.cells[r - 1 : r + size + 1, r - 1 : r + size + 1]  # the room and its outer wall
    px = _CELL_PX
    fog = pygame.Surface((px, px), pygame.SRCALPHA)
    fog.fill((6, 6, 10, 150))
    corners = params.corners()
    cue = cue_visible(state, params)
    for gr in range(room.shape[0]):
        for gc in range(room.shape[1]):
            seen = abs(gr - 1 - state.row) <= r and abs(gc - 1 - state.col) <= r
            if not (seen or reveal):
                continue
            rect = pygame.Rect(gc * px, gr * px, px, px)
            code = room[gr, gc]
            if code == WALL:
                pygame.draw.rect(surface, _COLORS["wall"], rect)
                pygame.draw.rect(surface, (80, 80, 98), rect, width=2)
            else:
                pygame.draw.rect(surface, (50, 52, 70), rect)
                pygame.draw.rect(surface, (62, 64, 84), rect, width=1)
            if code == CHEST:
                corner = corners.index((gr - 1, gc - 1))
                body = rect.inflate(-px // 3, -px // 2)
                pygame.draw.rect(surface, _COLORS["chest"], body, border_radius=4)
                pygame.draw.rect(surface, (150, 110, 30), body, width=2, border_radius=4)
                if reveal and corner == state.goal:
                    pygame.draw.circle(surface, (255, 250, 210), body.center, px // 8)
                if cue and corner == state.goal:
                    pygame.draw.rect(surface, _COLORS["cue"], rect, width=3)
            if not seen:
                surface.blit(fog, rect)
    center = ((state.col + 1) * px + px // 2, (state.row + 1) * px + px // 2)
    pygame.draw.circle(surface, _COLORS["agent"], center, px // 3)
    pygame.draw.circle(surface, (200, 225, 255), center, px // 3, width=2)

    w, h = surface.get_size()
    text = f"treasure: {CORNER_NAMES[state.goal]}" if cue else "remember the cue!"
    blit_text(surface, f"step {state.t}   {text}", (w // 2, h - _BAR_PX // 2), 26, (200, 200, 215))


# ----------------------------------------------------------------------- env


class FogMazeEnv(RenderedGame, gym.Env[np.ndarray, np.int64]):
    """Find the treasure in a foggy room, told only at the start which corner holds it.

    ## Description

    A ``size`` x ``size`` room (7 x 7) with random inner walls has a chest in
    each of its ``n_goals`` (4) corners; one holds the treasure. The agent starts
    in the centre. During the first ``cue_steps`` (1) observations a cue says
    which corner is right; after that the agent sees only the cells within
    ``view_radius`` (2) of itself, and no coordinates. All chests look the same,
    so the agent must remember the cue, and with walls and fog it must also
    keep track of where it is heading. Opening any chest ends the episode.

    ## Observation Space

    ``obs_mode="vector"``: ``Box(0, 1, (2 * (2r+1)**2 + n_goals,), float32)``
    (54 with the defaults), the agent always in the window's centre:

    | Index                        | Observation                              | Min | Max |
    |------------------------------|------------------------------------------|-----|-----|
    | 0 .. (2r+1)^2 - 1            | wall in that window cell (row-major)     | 0   | 1   |
    | (2r+1)^2 .. 2 (2r+1)^2 - 1   | chest in that window cell                | 0   | 1   |
    | 2 (2r+1)^2 + i               | cue: treasure in corner i (first steps)  | 0   | 1   |

    Corners are numbered top-left, top-right, bottom-right, bottom-left.

    ``obs_mode="pixels"``: ``Box(0, 255, (obs_size, obs_size, 3), uint8)``
    (``(.., .., 1)`` with ``grayscale=True``): the window drawn in square
    cells (agent blue, walls gray, chests gold); the cue is a white block of
    one cell in the image corner that matches the treasure's corner.

    ## Action Space

    ``Discrete(4)``: 0 up, 1 right, 2 down, 3 left. Walking into a wall stays put.

    ## Rewards

    +1 for opening the treasure chest, -``wrong_penalty`` (-1) for another
    chest, -``step_penalty`` (-0.01) for every other step. Best return with the
    defaults: 0.95 (six steps to a corner when no wall is in the way).
    An agent that forgets the cue can do no better than one fixed chest: about -0.6.

    ## Starting State

    A new room every episode: each inner cell is a wall with probability
    ``wall_density`` (0.2), resampled until every chest is reachable without
    passing another chest; the agent
    in the centre; the treasure in a uniformly random corner.

    ## Episode End

    Terminated when the agent opens a chest. The registered ids truncate after
    100 steps.

    ## Arguments

    ```python
    gym.make("mnemo/FogMaze-v0", render_mode=None, obs_mode="vector", obs_size=40,
             grayscale=False, size=7, view_radius=2, n_goals=4, wall_density=0.2,
             cue_steps=1, step_penalty=0.01, wrong_penalty=1.0, render_reveal=True)
    ```

    * ``obs_mode``: ``"vector"`` or ``"pixels"``; ``obs_size``/``grayscale`` shape the pixels
      (``obs_size`` at least ``2 * (2r+1)``, two pixels per cell).
    * ``render_reveal``: rendering shows the room under the fog and marks the treasure.
    """

    draw_state = staticmethod(draw)
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 8,
                "action_names": ("up", "right", "down", "left")}
    KEYS_TO_ACTION: dict[tuple[str, ...], int] = {
        ("up",): UP,
        ("w",): UP,
        ("right",): RIGHT,
        ("d",): RIGHT,
        ("down",): DOWN,
        ("s",): DOWN,
        ("left",): LEFT,
        ("a",): LEFT,
    }
    """pygame key names -> action, for keyboard play (``python -m envs.play``)"""
    NOOP_ACTION = None
    TURN_BASED = True
    """keyboard play steps once per key press"""

    def __init__(
        self,
        render_mode: str | None = None,
        obs_mode: str = "vector",
        obs_size: int = 40,
        grayscale: bool = False,
        size: int = 7,
        view_radius: int = 2,
        n_goals: int = 4,
        wall_density: float = 0.2,
        cue_steps: int = 1,
        step_penalty: float = 0.01,
        wrong_penalty: float = 1.0,
        render_reveal: bool = True,
    ) -> None:
        check_render_mode(render_mode)
        raster.check_obs_args(obs_mode, obs_size, grayscale)
        check_min_ints(("size", size, 3), ("view_radius", view_radius, 1), ("cue_steps", cue_steps, 1))
        if n_goals not in (2, 3, 4):
            raise ValueError(f"n_goals must be 2, 3 or 4 (chests in the corners), got {n_goals!r}")
        if not 0.0 <= wall_density <= 0.5:
            raise ValueError(f"wall_density must be in [0, 0.5], got {wall_density!r}")
        for name, value in (("step_penalty", step_penalty), ("wrong_penalty", wrong_penalty)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if obs_mode == "pixels" and obs_size < 2 * (2 * view_radius + 1):
            raise ValueError(
                f"obs_size must be at least 2 * (2 * view_radius + 1) = {2 * (2 * view_radius + 1)} "
                f"(two pixels per window cell), got {obs_size}"
            )

        self.params = MazeParams(
            size=size,
            view_radius=view_radius,
            n_goals=n_goals,
            wall_density=float(wall_density),
            cue_steps=cue_steps,
            step_penalty=float(step_penalty),
            wrong_penalty=float(wrong_penalty),
        )
        self.obs_mode = obs_mode
        self.obs_size = obs_size
        self.grayscale = grayscale
        self.render_reveal = render_reveal
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(4)
        if obs_mode == "vector":
            self.observation_space = spaces.Box(0.0, 1.0, shape=(vector_size(self.params),), dtype=np.float32)
        else:
            self.observation_space = raster.pixel_space(obs_size, grayscale)
        self.state: MazeState | None = None
        self._window = GameWindow(render_mode, render_size(self.params), self.metadata["render_fps"], "FogMaze")

    def _observe(self) -> np.ndarray:
        assert self.state is not None
        if self.obs_mode == "vector":
            return observe_vector(self.state, self.params)
        return rasterize(self.state, self.params, self.obs_size, self.grayscale)

    def _info(self) -> dict[str, Any]:
        assert self.state is not None
        return {"goal": self.state.goal, "position": (self.state.row, self.state.col)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.state = reset_state(self.np_random, self.params)
        if self.render_mode == "human":
            self.render()
        return self._observe(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        self.state, reward, terminated = step_state(self.state, int(action), self.np_random, self.params)
        if self.render_mode == "human":
            self.render()
        return self._observe(), reward, terminated, False, self._info()
