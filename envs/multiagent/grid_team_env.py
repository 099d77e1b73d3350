"""What the built-in multi-agent games (the grid team games and two-player Flicker Pong) share as PettingZoo
envs: the global state, rendering through a ``GameWindow`` and closing it. Each game keeps its own simulation,
observations and drawing as module functions over a plain state, and names them here through three hooks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pettingzoo import ParallelEnv


class GridTeamEnv(ParallelEnv):
    """A ``ParallelEnv`` whose episode lives in ``self.game`` (a plain state) with ``self.params``.

    A subclass sets ``title`` (the window's caption) and the hooks ``global_state_of(game, params)``,
    ``render_size_of(params)`` and ``draw_game(surface, game, params, reveal)`` (its module's functions, as
    ``staticmethod``\\ s), and sets ``render_mode``, ``render_reveal``, ``game`` and ``_window = None`` in
    ``__init__``.
    """

    title: str
    game: Any
    params: Any
    render_mode: str | None
    render_reveal: bool
    _window: Any

    @staticmethod
    def global_state_of(game: Any, params: Any) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def render_size_of(params: Any) -> tuple[int, int]:
        raise NotImplementedError

    @staticmethod
    def draw_game(surface: Any, game: Any, params: Any, reveal: bool) -> None:
        raise NotImplementedError

    def state(self) -> np.ndarray:
        if self.game is None:
            raise RuntimeError("call reset() before state()")
        return self.global_state_of(self.game, self.params)

    def render(self) -> np.ndarray | None:
        from envs.games.window import GameWindow

        if self.render_mode is None:
            import gymnasium as gym

            gym.logger.warn('render() was called without a render mode: make the env with render_mode="rgb_array"'
                            ' or "human".')
            return None
        if self.game is None:
            raise RuntimeError("call reset() before render()")
        if self._window is None:
            self._window = GameWindow(self.render_mode, self.render_size_of(self.params), self.metadata["render_fps"],
                                      self.title)
        game = self.game
        return self._window.show(lambda surface: self.draw_game(surface, game, self.params, self.render_reveal))

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
