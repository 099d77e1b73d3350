"""Small pygame games in which memory matters, each a Gymnasium env.

Every game is one module with three layers over one plain state:

* simulation: ``reset_state(rng, params)`` and
  ``step_state(state, action, rng, params) -> (state, reward, terminated)``,
  pure numpy;
* observation: ``observe_vector(state, params)`` and
  ``rasterize(state, params, size, grayscale)``, pure numpy (``raster.py``);
* drawing: ``draw(surface, state, params, reveal)``, pygame, imported lazily
  (``window.py``).

Importing this package (or stepping a game with vector or pixel observations)
never imports pygame. The env ids are registered in ``envs/__init__.py``.
"""

from envs.games.dark_catch import DarkCatchEnv
from envs.games.flicker_pong import FlickerPongEnv
from envs.games.fog_maze import FogMazeEnv

__all__ = ["DarkCatchEnv", "FlickerPongEnv", "FogMazeEnv"]
