"""Grid rooms for the multi-agent games: moves, padded cell planes, view windows, paths, seeding.

A room is ``size`` x ``size`` cells addressed as (row, col). Planes are padded with ``r`` cells on every side
(walls in the wall plane, zeros elsewhere), so the (2r+1) x (2r+1) window around any cell of the room is a
plain slice and never leaves the array. Pure numpy; pygame is never imported here.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from gymnasium.utils import seeding

STAY, UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3, 4
MOVES = np.array([(0, 0), (-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int64)
"""(drow, dcol) of each action: 0 stay, 1 up, 2 right, 3 down, 4 left"""
ACTION_NAMES = ("stay", "up", "right", "down", "left")


def make_rng(seed: int | None) -> np.random.Generator:
    """The env's generator for ``seed`` (Gymnasium's ``seeding.np_random``: the same stream as a Gymnasium env)."""
    rng, _ = seeding.np_random(seed)
    return rng


def padded(room: np.ndarray, r: int, fill: int | bool) -> np.ndarray:
    """``room`` with ``r`` cells of ``fill`` on every side."""
    return np.pad(room, r, constant_values=fill)


def plane(cells: np.ndarray, size: int, r: int, counts: bool = False) -> np.ndarray:
    """A padded (size + 2r)^2 float32 plane with 1 at each (row, col) of ``cells`` (N, 2); the number of them
    on a cell when ``counts``."""
    out = np.zeros((size + 2 * r, size + 2 * r), dtype=np.float32)
    if len(cells):
        if counts:
            np.add.at(out, (cells[:, 0] + r, cells[:, 1] + r), 1.0)
        else:
            out[cells[:, 0] + r, cells[:, 1] + r] = 1.0
    return out


def window(padded_plane: np.ndarray, row: int, col: int, r: int) -> np.ndarray:
    """The (2r+1, 2r+1) view of a padded plane centred on room cell (row, col) (a view, not a copy)."""
    return padded_plane[row : row + 2 * r + 1, col : col + 2 * r + 1]


def distances(open_cells: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Steps from ``start`` to every cell through ``open_cells`` (4-neighbour moves); -1 where unreachable.

    ``start`` itself need not be open (a path may end on a closed cell such as a pad: ask from the pad).
    """
    rows, cols = open_cells.shape
    dist = np.full((rows, cols), -1, dtype=np.int64)
    dist[start] = 0
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES[1:]:
            nr, nc = r + int(dr), c + int(dc)
            if 0 <= nr < rows and 0 <= nc < cols and open_cells[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def next_to(mask: np.ndarray, cell: tuple[int, int]) -> bool:
    """Whether a 4-neighbour of ``cell`` is set in ``mask``."""
    rows, cols = mask.shape
    return any(0 <= cell[0] + dr < rows and 0 <= cell[1] + dc < cols and bool(mask[cell[0] + dr, cell[1] + dc])
               for dr, dc in MOVES[1:].tolist())


def step_toward(dist: np.ndarray, row: int, col: int, blocked: np.ndarray | None = None) -> int:
    """The action that lowers ``dist`` (from ``distances``) the most from (row, col); STAY when none does.

    ``blocked`` (optional, bool like ``dist``) marks cells not to enter.
    """
    best, best_d = STAY, dist[row, col] if dist[row, col] >= 0 else np.iinfo(np.int64).max
    rows, cols = dist.shape
    for action in (UP, RIGHT, DOWN, LEFT):
        nr, nc = row + int(MOVES[action, 0]), col + int(MOVES[action, 1])
        if 0 <= nr < rows and 0 <= nc < cols and 0 <= dist[nr, nc] < best_d:
            if blocked is not None and blocked[nr, nc]:
                continue
            best, best_d = action, dist[nr, nc]
    return best
