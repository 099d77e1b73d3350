"""Dark catch: catch balls that are visible only at the start of their fall.

The "Catch" toy game (bsuite, after Mnih et al., 2014) with the lights going
out: each ball shows for its first ``visible_steps`` steps (one by default),
then falls in the dark; the agent has to remember where it was shown and get
the paddle there while nothing on screen tells it. With ``max_vx > 0`` the
balls also drift sideways and bounce off the side walls, and the agent has to
infer the velocity from two or more shown frames and extrapolate: a harder
variant.

Simulation (``reset_state``/``step_state``) and observation
(``observe_vector``/``rasterize``) are numpy only; ``draw`` uses pygame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.env_args import check_min_ints
from envs.games import raster
from envs.games.window import GameWindow, RenderedGame, check_render_mode

STAY, LEFT, RIGHT = 0, 1, 2

# Geometry in unit coordinates (x right, y down).
BALL_R = 0.03
PADDLE_TOP = 0.92  # the ball is caught or missed when its bottom reaches this line
PADDLE_THICK = 0.05


@dataclass(frozen=True)
class CatchParams:
    """Rules. Speeds are in screen widths per step."""

    n_balls: int = 5
    """balls per episode, dropped one after another"""
    fall_steps: int = 20
    """steps from the top to the paddle line"""
    visible_steps: int = 1
    """a ball is shown in the first ``visible_steps`` observations of its fall"""
    paddle_w: float = 0.2
    paddle_speed: float = 0.07
    max_vx: float = 0.0
    """the ball's horizontal speed is drawn from U(-max_vx, max_vx); 0: straight down"""
    miss_penalty: float = 1.0
    """reward -miss_penalty for a ball that falls past the paddle (+1 for a catch)"""


@dataclass(slots=True)
class CatchState:
    """One episode at one step."""

    ball_x: float
    ball_vx: float
    t: int
    """steps since the current ball was dropped; it lands at ``fall_steps``"""
    paddle_x: float
    """centre of the paddle"""
    drop: int
    """index of the current ball (0 .. n_balls-1)"""
    caught: int
    """balls caught so far"""


def ball_y(state: CatchState, params: CatchParams) -> float:
    """Centre height of the ball: from just under the top to touching the paddle line."""
    return BALL_R + (PADDLE_TOP - 2 * BALL_R) * state.t / params.fall_steps


def ball_visible(state: CatchState, params: CatchParams) -> bool:
    return state.t < params.visible_steps


# ---------------------------------------------------------------- simulation


def _new_ball(rng: np.random.Generator, params: CatchParams) -> tuple[float, float]:
    return 0.1 + 0.8 * rng.random(), (2.0 * rng.random() - 1.0) * params.max_vx


def reset_state(rng: np.random.Generator, params: CatchParams) -> CatchState:
    """Paddle centred, first ball dropped from a random place with a random sideways speed."""
    x, vx = _new_ball(rng, params)
    return CatchState(x, vx, 0, 0.5, 0, 0)


def step_state(
    state: CatchState, action: int, rng: np.random.Generator, params: CatchParams
) -> tuple[CatchState, float, bool]:
    """Move the paddle (0 stay, 1 left, 2 right), then the ball; score it when it lands.

    Returns:
        (next state, reward, terminated): +1 for a catch, -miss_penalty for a
        miss, 0 while a ball falls; terminated after the ``n_balls``-th lands.
    """
    half = params.paddle_w / 2
    paddle_x = state.paddle_x
    if action == LEFT:
        paddle_x = max(paddle_x - params.paddle_speed, half)
    elif action == RIGHT:
        paddle_x = min(paddle_x + params.paddle_speed, 1.0 - half)

    x, vx = state.ball_x + state.ball_vx, state.ball_vx
    if x < BALL_R:
        x, vx = 2 * BALL_R - x, -vx
    elif x > 1.0 - BALL_R:
        x, vx = 2 * (1.0 - BALL_R) - x, -vx
    t = state.t + 1
    if t < params.fall_steps:
        return CatchState(x, vx, t, paddle_x, state.drop, state.caught), 0.0, False

    hit = abs(x - paddle_x) <= half + BALL_R
    reward = 1.0 if hit else -params.miss_penalty
    drop, caught = state.drop + 1, state.caught + int(hit)
    if drop >= params.n_balls:
        return CatchState(x, vx, t, paddle_x, drop, caught), reward, True
    x, vx = _new_ball(rng, params)
    return CatchState(x, vx, 0, paddle_x, drop, caught), reward, False


# --------------------------------------------------------------- observation

VECTOR_SIZE = 4
_COLORS: dict[str, raster.Color] = {
    "sky": (14, 16, 34),
    "ball": (255, 214, 90),
    "paddle": (90, 200, 230),
}
_PIXELS = {gray: raster.palette(_COLORS, gray) for gray in (False, True)}


def observe_vector(state: CatchState, params: CatchParams) -> np.ndarray:
    """``[visible, ball_x, ball_y, paddle_x]``, positions in [-1, 1]; the ball's entries are 0 in the dark."""
    if ball_visible(state, params):
        obs = np.array([1.0, state.ball_x, ball_y(state, params), state.paddle_x], dtype=np.float32)
        obs[1:] = obs[1:] * 2.0 - 1.0
        return obs
    return np.array([0.0, 0.0, 0.0, state.paddle_x * 2.0 - 1.0], dtype=np.float32)


def rasterize(state: CatchState, params: CatchParams, size: int, grayscale: bool = False) -> np.ndarray:
    """The agent's pixel view, ``(size, size, 1 or 3)`` uint8: the paddle, and the ball while shown."""
    colors = _PIXELS[grayscale]
    img = raster.canvas(size, colors["sky"])
    half = params.paddle_w / 2
    raster.fill_rect(
        img,
        state.paddle_x - half,
        PADDLE_TOP,
        state.paddle_x + half,
        PADDLE_TOP + PADDLE_THICK,
        colors["paddle"],
    )
    if ball_visible(state, params):
        y = ball_y(state, params)
        raster.fill_rect(img, state.ball_x - BALL_R, y - BALL_R, state.ball_x + BALL_R, y + BALL_R, colors["ball"])
    return img


# ------------------------------------------------------------------- drawing

RENDER_SIZE = (360, 400)
_BAR_PX = 36  # status bar under the scene
_STARS = np.random.default_rng(7).random((40, 3))  # fixed backdrop, not simulation randomness


def draw(surface: Any, state: CatchState, params: CatchParams, reveal: bool = True) -> None:
    """Draw the scene on a pygame ``surface`` (any size; a status bar takes the bottom 36 px).

    Args:
        reveal: while the ball is in the dark, show it as a faint outline;
            ``False`` draws only what the agent sees.
    """
    from envs.games.text import blit_text
    from envs.games.window import import_pygame

    pygame = import_pygame()
    w, full_h = surface.get_size()
    h = full_h - _BAR_PX
    surface.fill((6, 6, 14))
    surface.fill(_COLORS["sky"], (0, 0, w, h))
    for sx, sy, shade in _STARS:
        c = int(40 + 50 * shade)
        surface.fill((c, c, c + 20), (int(sx * w), int(sy * h * 0.85), 2, 2))

    half = params.paddle_w / 2
    paddle = pygame.Rect(
        round((state.paddle_x - half) * w),
        round(PADDLE_TOP * h),
        round(params.paddle_w * w),
        math.ceil(PADDLE_THICK * h),
    )
    pygame.draw.rect(surface, _COLORS["paddle"], paddle, border_radius=6)

    if state.drop < params.n_balls:
        center = (round(state.ball_x * w), round(ball_y(state, params) * h))
        radius = max(round(BALL_R * w), 4)
        if ball_visible(state, params):
            pygame.draw.circle(surface, (90, 80, 40), center, radius + 4)
            pygame.draw.circle(surface, _COLORS["ball"], center, radius)
        elif reveal:
            pygame.draw.circle(surface, (110, 100, 70), center, radius, width=1)

    bar_y = h + _BAR_PX // 2
    blit_text(surface, f"caught {state.caught} of {state.drop}", (70, bar_y), 26, (200, 200, 215))
    for i in range(params.n_balls):  # one pip per ball: gray to come, then green caught / red missed
        color = (70, 74, 100) if i >= state.drop else (120, 220, 140) if i < state.caught else (200, 90, 90)
        pygame.draw.circle(surface, color, (w - 16 - 18 * (params.n_balls - 1 - i), bar_y), 6)


# ----------------------------------------------------------------------- env


class DarkCatchEnv(RenderedGame, gym.Env[np.ndarray, np.int64]):
    """Catch falling balls that are visible only at the start of their fall.

    ## Description

    ``n_balls`` (5) balls drop one after another from random places at the
    top. A ball is shown for its first ``visible_steps`` (1) steps and then
    falls in the dark for the rest of its ``fall_steps`` (20). The agent moves
    a paddle along the bottom and must be under the ball when it lands: it has
    to remember where the ball was shown and steer there while the screen
    shows nothing; the paddle needs up to 12 steps to cross the screen.

    With ``max_vx > 0`` each ball also drifts sideways at a random speed and
    bounces off the side walls: with ``visible_steps >= 2`` the agent has to
    infer the velocity from the shown frames and extrapolate (bounces
    included). This variant is harder; the preset does not solve it.

    ## Observation Space

    ``obs_mode="vector"``: ``Box(-1, 1, (4,), float32)``:

    | Num | Observation                              | Min | Max |
    |-----|------------------------------------------|-----|-----|
    | 0   | ball shown (1) or in the dark (0)        | 0   | 1   |
    | 1   | ball x (-1 left, 1 right; 0 in the dark) | -1  | 1   |
    | 2   | ball y (-1 top, 1 bottom; 0 in the dark) | -1  | 1   |
    | 3   | paddle centre x                          | -1  | 1   |

    ``obs_mode="pixels"``: ``Box(0, 255, (obs_size, obs_size, 3), uint8)``
    (``(.., .., 1)`` with ``grayscale=True``): the paddle, and the ball while shown.

    ## Action Space

    ``Discrete(3)``: 0 stay, 1 move left, 2 move right.

    ## Rewards

    +1 for each ball caught, -``miss_penalty`` (-1) for each ball missed, 0
    otherwise. Best return ``n_balls`` (5). Without memory a policy scores
    about -1.75 (staying in the centre: a ball lands within reach a third of
    the time); with the defaults a trained memoryless agent stays near -1.5.

    ## Starting State

    Paddle centred; the first ball at the top at x ~ U(0.1, 0.9) with
    horizontal speed ~ U(-max_vx, max_vx) (0 by default). Every later ball
    starts the same way on the step after the previous one lands; the paddle
    stays where it was.

    ## Episode End

    Terminated when the ``n_balls``-th ball lands: exactly
    ``n_balls * fall_steps`` (100) steps. The registered ids truncate after 200
    steps (never reached with the defaults).

    ## Arguments

    ```python
    gym.make("mnemo/DarkCatch-v0", render_mode=None, obs_mode="vector", obs_size=32,
             grayscale=False, n_balls=5, fall_steps=20, visible_steps=1,
             miss_penalty=1.0, max_vx=0.0, paddle_speed=0.07, render_reveal=True)
    ```

    * ``obs_mode``: ``"vector"`` or ``"pixels"``; ``obs_size``/``grayscale`` shape the pixels.
    * ``visible_steps``: 1 .. ``fall_steps``; with ``max_vx > 0``, 2 or more are needed to see the velocity.
    * ``max_vx``: >= 0, the largest sideways speed (screen widths per step); 0.035 makes the
      drifting, bouncing variant.
    * ``paddle_speed``: > 0, screen widths per step.
    * ``render_reveal``: rendering shows the ball in the dark as a faint outline.
    """

    draw_state = staticmethod(draw)
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 15, "action_names": ("stay", "left", "right")}
    KEYS_TO_ACTION: dict[tuple[str, ...], int] = {
        ("left",): LEFT,
        ("a",): LEFT,
        ("right",): RIGHT,
        ("d",): RIGHT,
    }
    """pygame key names -> action, for keyboard play (``python -m envs.play``)"""
    NOOP_ACTION = STAY
    TURN_BASED = False
    """keyboard play steps at ``render_fps`` with the no-op when no key is held"""

    def __init__(
        self,
        render_mode: str | None = None,
        obs_mode: str = "vector",
        obs_size: int = 32,
        grayscale: bool = False,
        n_balls: int = 5,
        fall_steps: int = 20,
        visible_steps: int = 1,
        miss_penalty: float = 1.0,
        max_vx: float = 0.0,
        paddle_speed: float = 0.07,
        render_reveal: bool = True,
    ) -> None:
        check_render_mode(render_mode)
        raster.check_obs_args(obs_mode, obs_size, grayscale)
        check_min_ints(("n_balls", n_balls, 1), ("fall_steps", fall_steps, 2))
        if (
            isinstance(visible_steps, bool)
            or not isinstance(visible_steps, int)
            or not (1 <= visible_steps <= fall_steps)
        ):
            raise ValueError(f"visible_steps must be an integer in [1, fall_steps={fall_steps}], got {visible_steps!r}")
        for name, value in (("miss_penalty", miss_penalty), ("max_vx", max_vx)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(paddle_speed) and paddle_speed > 0):
            raise ValueError(f"paddle_speed must be a finite number > 0, got {paddle_speed!r}")

        self.params = CatchParams(
            n_balls=n_balls,
            fall_steps=fall_steps,
            visible_steps=visible_steps,
            miss_penalty=float(miss_penalty),
            max_vx=float(max_vx),
            paddle_speed=float(paddle_speed),
        )
        self.obs_mode = obs_mode
        self.obs_size = obs_size
        self.grayscale = grayscale
        self.render_reveal = render_reveal
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(3)
        if obs_mode == "vector":
            self.observation_space = spaces.Box(-1.0, 1.0, shape=(VECTOR_SIZE,), dtype=np.float32)
        else:
            self.observation_space = raster.pixel_space(obs_size, grayscale)
        self.state: CatchState | None = None
        self._window = GameWindow(render_mode, RENDER_SIZE, self.metadata["render_fps"], "DarkCatch")

    def _observe(self) -> np.ndarray:
        assert self.state is not None
        if self.obs_mode == "vector":
            return observe_vector(self.state, self.params)
        return rasterize(self.state, self.params, self.obs_size, self.grayscale)

    def _info(self) -> dict[str, Any]:
        assert self.state is not None
        return {"caught": self.state.caught, "dropped": self.state.drop}

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
