"""The pygame side of rendering: an off-screen canvas and, in human mode, a window.

Everything here imports pygame lazily, inside the functions that draw, so that
importing a game or stepping it with vector or pixel observations never loads
pygame. Observations are never read back from these surfaces. Text is drawn by
``envs.games.text``; the memory panel by ``agents.watch.memory_panel``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

RENDER_MODES = ("human", "rgb_array")


# Said wherever pygame is missing: the two distributions ship the same module and break each other.
ONE_PYGAME_ONLY = "pygame-ce works too; install one of the two, not both: they ship the same `pygame` module"


class PygameMissingError(ImportError):
    """pygame (or pygame-ce) is needed for a window or for drawing, and cannot be imported."""


def import_pygame() -> Any:
    """Import pygame without its "Hello from the pygame community" banner.

    The banner is silenced through ``PYGAME_HIDE_SUPPORT_PROMPT`` in pygame's
    docs, but a library must not write environment variables, so the print is
    swallowed instead (only on the first import; later imports are cached).
    Either distribution works: pygame and pygame-ce both provide the module.

    Raises:
        PygameMissingError: neither is installed, or the module fails to load; the message says what to do.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pygame
    except ImportError as exc:
        if getattr(exc, "name", None) == "pygame":
            raise PygameMissingError(
                "pygame is needed here (windows, the memory panel and the built-in games' frames are drawn with "
                "it) and is not installed. Install it with "
                f"`pip install pygame` (or `pip install -e \".[pygame]\"` in a checkout); {ONE_PYGAME_ONLY}.") from exc
        raise PygameMissingError(
            f"pygame is installed but fails to import ({exc}). If both pygame and pygame-ce are installed, they "
            f"overwrite each other's files: `pip uninstall -y pygame pygame-ce`, then install one of them.") from exc
    return pygame


HEADLESS_VIDEO_DRIVERS = ("dummy", "offscreen")
"""SDL video drivers that draw nowhere: a window opens without error and nobody sees it."""


def invisible_video_driver() -> str | None:
    """SDL's video driver when a window would be invisible (``"dummy"``, ``"offscreen"``), else None.

    Initialises pygame's display. SDL falls back to such a driver when no display is reachable (or when
    ``SDL_VIDEODRIVER`` asks for one), so commands that show a person a window ask this first.

    Raises:
        PygameMissingError: pygame cannot be imported.
        pygame.error: SDL cannot initialise any video driver (no display at all).
    """
    pygame = import_pygame()
    pygame.display.init()
    driver = pygame.display.get_driver()
    return driver if driver in HEADLESS_VIDEO_DRIVERS else None


def check_render_mode(render_mode: str | None) -> None:
    """Raise ``ValueError`` for a render mode the games do not support."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")


def array_to_surface(rgb: np.ndarray) -> Any:
    """(H, W, 3) uint8 -> a pygame Surface (a copy)."""
    pygame = import_pygame()
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return pygame.image.frombuffer(rgb.tobytes(), (rgb.shape[1], rgb.shape[0]), "RGB").copy()


def surface_to_array(surface: Any) -> np.ndarray:
    """pygame Surface -> (H, W, 3) uint8."""
    pygame = import_pygame()
    return np.ascontiguousarray(pygame.surfarray.array3d(surface).transpose(1, 0, 2))


def key_code(name: str) -> int:
    """pygame's code for a key name such as ``"up"``, ``"w"`` or ``"space"`` (``pygame.K_UP``, ...).

    Looked up among the ``K_`` constants rather than with ``pygame.key.key_code``,
    which warns unless all of pygame (audio included) has been initialised.
    """
    pygame = import_pygame()
    code = getattr(pygame, f"K_{name}" if len(name) == 1 else f"K_{name.upper()}", None)
    if code is None:
        raise ValueError(f"unknown key name {name!r}: expected a pygame key name such as 'up', 'w', 'space'")
    return code


def key_codes(keys_to_action: Mapping[tuple[str, ...], int]) -> dict[tuple[int, ...], int]:
    """Turn a game's ``KEYS_TO_ACTION`` (pygame key names) into pygame key codes.

    The result is the format of ``gymnasium.utils.play.play(keys_to_action=...)``.
    """
    return {tuple(sorted(key_code(name) for name in combo)): action for combo, action in keys_to_action.items()}


class GameWindow:
    """Owns the pygame surface, window and clock that one env renders into.

    Args:
        render_mode: ``"human"`` (a window, ticked at ``fps``), ``"rgb_array"``
            (an off-screen surface returned as an array) or ``None``.
        size: (width, height) of the rendered frame in pixels.
        fps: frames per second of human mode.
        title: window caption.
    """

    def __init__(self, render_mode: str | None, size: tuple[int, int], fps: int, title: str) -> None:
        check_render_mode(render_mode)
        self.render_mode = render_mode
        self.size = size
        self.fps = fps
        self.title = title
        self._surface: Any = None
        self._screen: Any = None
        self._clock: Any = None

    def show(self, draw: Callable[[Any], None]) -> np.ndarray | None:
        """Call ``draw(surface)`` and present the result.

        Returns:
            ``(H, W, 3)`` uint8 frame in ``rgb_array`` mode, else ``None``.
        """
        if self.render_mode is None:
            return None
        pygame = import_pygame()
        if self._surface is None:
            self._surface = pygame.Surface(self.size)
        draw(self._surface)
        if self.render_mode == "rgb_array":
            return np.transpose(pygame.surfarray.array3d(self._surface), (1, 0, 2))
        if self._screen is None:
            pygame.display.init()
            pygame.display.set_caption(self.title)
            self._screen = pygame.display.set_mode(self.size)
            self._clock = pygame.time.Clock()
        self._screen.blit(self._surface, (0, 0))
        pygame.event.pump()
        self._clock.tick(self.fps)
        pygame.display.flip()
        return None

    def close(self) -> None:
        """Close the window if one is open; safe to call twice."""
        if self._screen is not None:
            pygame = import_pygame()
            pygame.display.quit()
            self._screen = None
            self._clock = None
        self._surface = None


class RenderedGame:
    """What the three games share on their rendering side: ``render``, ``get_keys_to_action``, ``close``.

    A game sets ``self._window`` (a ``GameWindow``), ``self.state``, ``self.params``,
    ``self.render_reveal`` and the class attribute ``KEYS_TO_ACTION``, and names
    its pure drawing function in ``draw_state``. Listed before ``gymnasium.Env``
    in the game's bases.
    """

    KEYS_TO_ACTION: Mapping[tuple[str, ...], int]

    @staticmethod
    def draw_state(surface: Any, state: Any, params: Any, reveal: bool) -> None:
        raise NotImplementedError

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            import gymnasium as gym

            gym.logger.warn(
                "You are calling render method without specifying any render mode. "
                'Pass render_mode="rgb_array" or "human" when making the env.'
            )
            return None
        if self.state is None:
            raise RuntimeError("call reset() before render()")
        state = self.state
        return self._window.show(lambda surface: self.draw_state(surface, state, self.params, self.render_reveal))

    def get_keys_to_action(self) -> dict[tuple[int, ...], int]:
        """``KEYS_TO_ACTION`` as pygame key codes, for ``gymnasium.utils.play.play``."""
        return key_codes(self.KEYS_TO_ACTION)

    def close(self) -> None:
        self._window.close()
