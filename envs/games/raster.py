"""Pixel observations drawn with numpy: no display and no pygame.

A game describes its frame in unit coordinates (``x`` right and ``y`` down, both
in ``[0, 1]``); these functions turn that description into the small uint8 image
an agent learns from. Drawing is a handful of slice assignments on a fresh
array, so a 48x48 frame costs a few microseconds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np
from gymnasium import spaces

Color = tuple[int, int, int]

OBS_MODES = ("vector", "pixels")

# ITU-R BT.601 luma, the weights Atari preprocessing (and OpenCV) use for grayscale.
_LUMA = (0.299, 0.587, 0.114)


def check_obs_args(obs_mode: str, obs_size: int, grayscale: bool) -> None:
    """Raise ``ValueError`` with a clear message for a bad observation setting."""
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
    if isinstance(obs_size, bool) or not isinstance(obs_size, int | np.integer) or obs_size < 8:
        raise ValueError(f"obs_size must be an integer >= 8 (pixels per side), got {obs_size!r}")
    if not isinstance(grayscale, bool | np.bool_):
        raise ValueError(f"grayscale must be a bool, got {grayscale!r}")


def pixel_space(size: int, grayscale: bool) -> spaces.Box:
    """The observation space of a ``size`` x ``size`` image: ``(H, W, 1)`` gray or ``(H, W, 3)`` RGB."""
    return spaces.Box(0, 255, shape=(size, size, 1 if grayscale else 3), dtype=np.uint8)


def palette(colors: Mapping[str, Color], grayscale: bool) -> dict[str, np.ndarray]:
    """Colors as uint8 pixel values: shape ``(3,)`` for RGB or ``(1,)`` for gray."""
    if grayscale:
        return {
            name: np.array([round(sum(w * c for w, c in zip(_LUMA, rgb, strict=True)))], dtype=np.uint8)
            for name, rgb in colors.items()
        }
    return {name: np.array(rgb, dtype=np.uint8) for name, rgb in colors.items()}


def canvas(size: int, fill: np.ndarray) -> np.ndarray:
    """A new ``(size, size, C)`` uint8 image filled with one color (``C`` from ``fill``)."""
    # Copying a cached blank frame is a memcpy; broadcasting a 3-byte color over
    # the image is ~30x slower (12 us vs 0.4 us at 48x48x3).
    return _blank(size, fill.tobytes()).copy()


@functools.lru_cache(maxsize=64)
def _blank(size: int, fill: bytes) -> np.ndarray:
    img = np.empty((size, size, len(fill)), dtype=np.uint8)
    img[:] = np.frombuffer(fill, dtype=np.uint8)
    img.flags.writeable = False
    return img


@functools.lru_cache(maxsize=64)
def _cell_index(rows: int, cols: int, cell: int) -> np.ndarray:
    """(rows*cell, cols*cell) index of the grid cell under each pixel, row-major."""
    return (np.arange(rows * cell) // cell)[:, None] * cols + (np.arange(cols * cell) // cell)[None, :]


def fill_rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: np.ndarray) -> None:
    """Paint the unit-coordinate box ``[x0, x1] x [y0, y1]`` onto ``img`` in place.

    Every pixel the box touches is painted, so an object smaller than a pixel
    still shows as one pixel instead of vanishing; parts off the image are cut.
    """
    h, w = img.shape[0], img.shape[1]
    c0 = max(math.floor(x0 * w), 0)
    c1 = min(max(math.ceil(x1 * w), c0 + 1), w)
    r0 = max(math.floor(y0 * h), 0)
    r1 = min(max(math.ceil(y1 * h), r0 + 1), h)
    if c0 < c1 and r0 < r1:
        img[r0:r1, c0:c1] = color


def blow_up(codes: np.ndarray, lut: np.ndarray, cell: int, size: int, margin: np.ndarray) -> np.ndarray:
    """Draw a grid of cell codes as ``cell``-pixel squares, centred on a ``size`` canvas.

    Args:
        codes: (rows, cols) small integer codes, one per cell.
        lut: (n_codes, C) uint8 color of each code.
        cell: pixels per cell side.
        size: side of the square output image (at least ``cell`` times the grid).
        margin: (C,) uint8 color around the grid.

    Returns:
        (size, size, C) uint8 image.
    """
    rows, cols = codes.shape
    tiles = np.take(lut, np.take(codes, _cell_index(rows, cols, cell)), axis=0)
    if tiles.shape[0] == size and tiles.shape[1] == size:
        return tiles
    img = canvas(size, margin)
    top = (size - tiles.shape[0]) // 2
    left = (size - tiles.shape[1]) // 2
    img[top : top + tiles.shape[0], left : left + tiles.shape[1]] = tiles
    return img
