"""Flickering Pong: Pong where each frame is blanked with probability ``p``.

After "Deep Recurrent Q-Learning for Partially Observable MDPs" (Hausknecht &
Stone, 2015), whose flickering Atari Pong shows each screen with probability
0.5. One frame never shows the ball's velocity, and blank frames break even
frame stacking, so the agent has to integrate the ball's motion over time.

The file is three layers over one plain state:
simulation (``reset_state``/``step_state``, numpy only) | observation
(``observe_vector``/``rasterize``, numpy only) | drawing (``draw``, pygame).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.games import raster
from envs.games.window import GameWindow, RenderedGame, check_render_mode

NOOP, UP, DOWN = 0, 1, 2
OPPONENTS = ("scripted", "external")

# Geometry in unit coordinates (x right, y down). The agent plays the right paddle.
BALL_R = 0.015  # half side of the square ball
PADDLE_W = 0.03
AGENT_FACE = 0.94  # x of the agent paddle's hitting face; the paddle spans [face, face + PADDLE_W]
OPPONENT_FACE = 0.06  # the opponent paddle spans [face - PADDLE_W, face]


@dataclass(frozen=True)
class PongParams:
    """Rules of one match. Speeds are in court widths per step."""

    flicker_p: float = 0.5
    """probability that a frame reaches the agent blank"""
    points_to_win: int = 3
    """the match ends when either side reaches this score"""
    hit_reward: float = 0.1
    """reward for each return by the agent's paddle (shaping; 0 gives classic Pong)"""
    paddle_h: float = 0.2
    """paddle height"""
    paddle_speed: float = 0.04
    """agent's (and an external opponent's) paddle speed; above the ball's top vertical speed"""
    opponent_speed: float = 0.02
    """the scripted opponent's paddle speed; below the ball's top vertical speed, so it can be beaten"""
    opponent_error: float = 0.2
    """the scripted opponent aims at ball_y + U(-error, error), drawn anew for every incoming ball"""
    serve_speed: float = 0.03
    """horizontal ball speed after a serve"""
    max_speed: float = 0.045
    """horizontal ball speed cap; each return speeds the ball up by ``speedup``"""
    speedup: float = 1.05
    max_slope: float = 0.8
    """|vy / vx| after a hit on the paddle's very edge"""


@dataclass(slots=True)
class PongState:
    """Everything about a match at one step."""

    ball_x: float
    ball_y: float
    ball_vx: float
    ball_vy: float
    agent_y: float
    """centre of the agent's (right) paddle"""
    opponent_y: float
    """centre of the opponent's (left) paddle"""
    agent_score: int
    opponent_score: int
    opponent_aim: float
    """the scripted opponent's aiming error for the incoming ball"""
    visible: bool
    """whether this frame reaches the agent (False: the observation is blank)"""


# ---------------------------------------------------------------- simulation


def _serve(rng: np.random.Generator, params: PongParams) -> tuple[float, float, float, float]:
    direction = 1.0 if rng.random() < 0.5 else -1.0
    vy = (rng.random() - 0.5) * params.serve_speed
    return 0.5, 0.3 + 0.4 * rng.random(), direction * params.serve_speed, vy


def reset_state(rng: np.random.Generator, params: PongParams) -> PongState:
    """A new match: 0-0, paddles centred, ball served from the centre to a random side."""
    x, y, vx, vy = _serve(rng, params)
    aim = _aim(rng, params)
    return PongState(x, y, vx, vy, 0.5, 0.5, 0, 0, aim, bool(rng.random() >= params.flicker_p))


def _aim(rng: np.random.Generator, params: PongParams) -> float:
    return (2.0 * rng.random() - 1.0) * params.opponent_error


def scripted_opponent_action(state: PongState, params: PongParams) -> int:
    """The built-in opponent: chase the ball (with an aiming error) while it comes over, else centre."""
    target = state.ball_y + state.opponent_aim if state.ball_vx < 0 else 0.5
    if target < state.opponent_y - params.opponent_speed:
        return UP
    if target > state.opponent_y + params.opponent_speed:
        return DOWN
    return NOOP


def _move_paddle(y: float, action: int, speed: float, params: PongParams) -> float:
    if action == UP:
        y -= speed
    elif action == DOWN:
        y += speed
    half = params.paddle_h / 2
    return min(max(y, half), 1.0 - half)


def _bounce(y_cross: float, paddle_y: float, speed: float, params: PongParams) -> float:
    """Vertical speed after a hit: the further from the paddle's centre, the steeper."""
    offset = (y_cross - paddle_y) / (params.paddle_h / 2 + BALL_R)
    return min(max(offset, -1.0), 1.0) * params.max_slope * speed


def step_state(
    state: PongState,
    action: int,
    rng: np.random.Generator,
    params: PongParams,
    opponent_action: int | None = None,
) -> tuple[PongState, float, bool]:
    """Advance the match by one step.

    Args:
        state: the current state (not modified).
        action: the agent's (right paddle's) action: 0 stay, 1 up, 2 down.
        rng: source of the serve direction and of the flicker.
        params: rules.
        opponent_action: the left paddle's action, moving at ``paddle_speed``
            like the agent's; ``None`` lets the scripted opponent play at
            ``opponent_speed``.

    Returns:
        (next state, reward for the agent, whether the match is over).
    """
    if opponent_action is None:
        opponent_y = _move_paddle(
            state.opponent_y, scripted_opponent_action(state, params), params.opponent_speed, params
        )
    else:
        opponent_y = _move_paddle(state.opponent_y, opponent_action, params.paddle_speed, params)
    agent_y = _move_paddle(state.agent_y, action, params.paddle_speed, params)

    x0, y0, vx, vy = state.ball_x, state.ball_y, state.ball_vx, state.ball_vy
    x, y = x0 + vx, y0 + vy
    if y < BALL_R:
        y, vy = 2 * BALL_R - y, -vy
    elif y > 1.0 - BALL_R:
        y, vy = 2 * (1.0 - BALL_R) - y, -vy

    reward = 0.0
    aim = state.opponent_aim
    reach = params.paddle_h / 2 + BALL_R
    # Swept test against the paddle face the ball moves towards, so a fast ball cannot tunnel.
    if vx > 0 and x0 + BALL_R <= AGENT_FACE < x + BALL_R:
        y_cross = y0 + state.ball_vy * (AGENT_FACE - x0 - BALL_R) / vx
        if abs(y_cross - agent_y) <= reach:
            speed = min(vx * params.speedup, params.max_speed)
            x = 2 * (AGENT_FACE - BALL_R) - x
            vx, vy = -speed, _bounce(y_cross, agent_y, speed, params)
            reward += params.hit_reward
            aim = _aim(rng, params)
    elif vx < 0 and x - BALL_R <= OPPONENT_FACE < x0 - BALL_R:
        y_cross = y0 + state.ball_vy * (x0 - BALL_R - OPPONENT_FACE) / -vx
        if abs(y_cross - opponent_y) <= reach:
            speed = min(-vx * params.speedup, params.max_speed)
            x = 2 * (OPPONENT_FACE + BALL_R) - x
            vx, vy = speed, _bounce(y_cross, opponent_y, speed, params)
    y = min(max(y, BALL_R), 1.0 - BALL_R)

    agent_score, opponent_score = state.agent_score, state.opponent_score
    if x - BALL_R > 1.0:
        opponent_score += 1
        reward -= 1.0
        x, y, vx, vy = _serve(rng, params)
        aim = _aim(rng, params)
    elif x + BALL_R < 0.0:
        agent_score += 1
        reward += 1.0
        x, y, vx, vy = _serve(rng, params)
        aim = _aim(rng, params)

    terminated = max(agent_score, opponent_score) >= params.points_to_win
    visible = bool(rng.random() >= params.flicker_p)
    return (
        PongState(x, y, vx, vy, agent_y, opponent_y, agent_score, opponent_score, aim, visible),
        reward,
        terminated,
    )


def mirror(state: PongState) -> PongState:
    """The same match seen from the left paddle, so a policy trained on the right can play left."""
    return dataclasses.replace(
        state,
        ball_x=1.0 - state.ball_x,
        ball_vx=-state.ball_vx,
        agent_y=state.opponent_y,
        opponent_y=state.agent_y,
        agent_score=state.opponent_score,
        opponent_score=state.agent_score,
    )


# --------------------------------------------------------------- observation

VECTOR_SIZE = 5
_COLORS: dict[str, raster.Color] = {
    "court": (40, 44, 72),
    "agent": (92, 200, 92),
    "opponent": (230, 140, 70),
    "ball": (240, 240, 240),
    "blank": (0, 0, 0),
}
_PIXELS = {gray: raster.palette(_COLORS, gray) for gray in (False, True)}


def observe_vector(state: PongState, params: PongParams) -> np.ndarray:
    """``[visible, ball_x, ball_y, agent_y, opponent_y]`` in [-1, 1]; all zeros on a blank frame."""
    if not state.visible:
        return np.zeros(VECTOR_SIZE, dtype=np.float32)
    obs = np.array([1.0, state.ball_x, state.ball_y, state.agent_y, state.opponent_y], dtype=np.float32)
    return np.clip(obs * 2.0 - 1.0, -1.0, 1.0, out=obs)


def rasterize(state: PongState, params: PongParams, size: int, grayscale: bool = False) -> np.ndarray:
    """The agent's pixel view: ``(size, size, 1 or 3)`` uint8, all black on a blank frame."""
    colors = _PIXELS[grayscale]
    if not state.visible:
        return np.zeros((size, size, colors["blank"].shape[0]), dtype=np.uint8)
    img = raster.canvas(size, colors["court"])
    half = params.paddle_h / 2
    raster.fill_rect(
        img, AGENT_FACE, state.agent_y - half, AGENT_FACE + PADDLE_W, state.agent_y + half, colors["agent"]
    )
    raster.fill_rect(
        img,
        OPPONENT_FACE - PADDLE_W,
        state.opponent_y - half,
        OPPONENT_FACE,
        state.opponent_y + half,
        colors["opponent"],
    )
    raster.fill_rect(
        img,
        state.ball_x - BALL_R,
        state.ball_y - BALL_R,
        state.ball_x + BALL_R,
        state.ball_y + BALL_R,
        colors["ball"],
    )
    return img


# ------------------------------------------------------------------- drawing

RENDER_SIZE = (400, 400)


def draw(surface: Any, state: PongState, params: PongParams, reveal: bool = True) -> None:
    """Draw the match on a pygame ``surface`` (any size; the court fills it).

    Args:
        reveal: draw the full match even on frames the agent gets blank (the
            ball is then a hollow outline and an "agent blind" tag shows);
            ``False`` draws exactly what the agent sees.
    """
    from envs.games.text import blit_text
    from envs.games.window import import_pygame

    pygame = import_pygame()
    w, h = surface.get_size()
    if not state.visible and not reveal:
        surface.fill((8, 8, 12))
        blit_text(surface, "(blank frame)", (w // 2, h // 2), 28, (60, 60, 70))
        return
    surface.fill(_COLORS["court"])
    for y in range(0, h, 24):  # the net
        pygame.draw.rect(surface, (70, 76, 110), (w // 2 - 2, y + 6, 4, 12))
    blit_text(surface, str(state.opponent_score), (w // 4, 40), 64, (110, 116, 160))
    blit_text(surface, str(state.agent_score), (3 * w // 4, 40), 64, (110, 116, 160))

    half = params.paddle_h / 2
    for face, y, color in (
        (AGENT_FACE, state.agent_y, _COLORS["agent"]),
        (OPPONENT_FACE - PADDLE_W, state.opponent_y, _COLORS["opponent"]),
    ):
        rect = pygame.Rect(round(face * w), round((y - half) * h), math.ceil(PADDLE_W * w), round(params.paddle_h * h))
        pygame.draw.rect(surface, color, rect, border_radius=4)

    center = (round(state.ball_x * w), round(state.ball_y * h))
    radius = max(round(BALL_R * w * 1.2), 3)
    if state.visible:
        pygame.draw.circle(surface, (90, 90, 110), center, radius + 3)
        pygame.draw.circle(surface, _COLORS["ball"], center, radius)
    else:
        pygame.draw.circle(surface, (150, 150, 170), center, radius, width=2)
        blit_text(surface, "agent blind", (w // 2, h - 20), 24, (200, 90, 90))


# ----------------------------------------------------------------------- env


class FlickerPongEnv(RenderedGame, gym.Env[np.ndarray, np.int64]):
    """Pong against a scripted paddle, seen through a flickering screen.

    ## Description

    The agent plays the right paddle against a scripted left paddle. Each
    frame the agent receives is blanked with probability ``flicker_p`` (0.5 as
    in DRQN's flickering Pong), and no single frame shows the ball's velocity,
    so a good policy has to remember where the ball was and integrate its
    motion. The ball leaves a paddle at a steeper angle the further from the
    paddle's centre it hits. The scripted opponent chases the ball with an
    aiming error drawn anew for every incoming ball and is slower than the
    ball's steepest vertical speed, so it misses now and then and angled
    returns beat it more often; the agent's paddle is fast enough to reach
    every ball. The opponent can
    instead be driven from outside (``opponent="external"`` and
    ``set_opponent_action``), e.g. by a person playing against the agent.

    ## Observation Space

    ``obs_mode="vector"``: ``Box(-1, 1, (5,), float32)``, all zeros on a blank frame:

    | Num | Observation                  | Min | Max |
    |-----|------------------------------|-----|-----|
    | 0   | visible (1 on a shown frame) | 0   | 1   |
    | 1   | ball x (-1 left, 1 right)    | -1  | 1   |
    | 2   | ball y (-1 top, 1 bottom)    | -1  | 1   |
    | 3   | agent paddle centre y        | -1  | 1   |
    | 4   | opponent paddle centre y     | -1  | 1   |

    ``obs_mode="pixels"``: ``Box(0, 255, (obs_size, obs_size, 3), uint8)``
    (``(obs_size, obs_size, 1)`` with ``grayscale=True``): the court drawn
    with numpy, all black on a blank frame.

    ## Action Space

    ``Discrete(3)``: 0 stay, 1 move up, 2 move down.

    ## Rewards

    +1 for each point won, -1 for each point lost, ``hit_reward`` (0.1) for
    each return by the agent's paddle. A match won 3-0 returns 3 plus the hit
    rewards (about 3.7 for a paddle that tracks the ball without flicker);
    random play returns about -1.5 and loses in about 120 steps.

    ## Starting State

    Score 0-0, both paddles centred, the ball served from the centre line at
    a random height towards a random side. Every point is served the same way.

    ## Episode End

    Terminated when either side reaches ``points_to_win`` (3). The registered
    ids truncate after 1500 steps (a tracking paddle wins 3-0 in about 350).

    ## Arguments

    ```python
    gym.make("mnemo/FlickerPong-v0", render_mode=None, obs_mode="vector", obs_size=48,
             grayscale=False, flicker_p=0.5, points_to_win=3, hit_reward=0.1,
             opponent="scripted", render_reveal=True)
    ```

    * ``obs_mode``: ``"vector"`` or ``"pixels"``; ``obs_size``/``grayscale`` shape the pixels.
    * ``flicker_p``: probability in [0, 1] that a frame is blank (0 gives plain Pong).
    * ``opponent``: ``"scripted"`` or ``"external"`` (the left paddle then obeys
      ``set_opponent_action`` and moves as fast as the agent's).
    * ``render_reveal``: rendering shows the ball even on frames blank to the agent.
    """

    draw_state = staticmethod(draw)
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 30, "action_names": ("stay", "up", "down")}
    KEYS_TO_ACTION: dict[tuple[str, ...], int] = {("up",): UP, ("w",): UP, ("down",): DOWN, ("s",): DOWN}
    """pygame key names -> action, for keyboard play (``python -m envs.play``)"""
    NOOP_ACTION = NOOP
    TURN_BASED = False
    """keyboard play steps at ``render_fps`` with the no-op when no key is held"""

    def __init__(
        self,
        render_mode: str | None = None,
        obs_mode: str = "vector",
        obs_size: int = 48,
        grayscale: bool = False,
        flicker_p: float = 0.5,
        points_to_win: int = 3,
        hit_reward: float = 0.1,
        opponent: str = "scripted",
        render_reveal: bool = True,
    ) -> None:
        check_render_mode(render_mode)
        raster.check_obs_args(obs_mode, obs_size, grayscale)
        if not 0.0 <= flicker_p <= 1.0:
            raise ValueError(f"flicker_p must be a probability in [0, 1], got {flicker_p!r}")
        if isinstance(points_to_win, bool) or not isinstance(points_to_win, int) or points_to_win < 1:
            raise ValueError(f"points_to_win must be an integer >= 1, got {points_to_win!r}")
        if not math.isfinite(hit_reward):
            raise ValueError(f"hit_reward must be a finite number, got {hit_reward!r}")
        if opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {OPPONENTS}, got {opponent!r}")

        self.params = PongParams(flicker_p=float(flicker_p), points_to_win=points_to_win, hit_reward=float(hit_reward))
        self.obs_mode = obs_mode
        self.obs_size = obs_size
        self.grayscale = grayscale
        self.opponent = opponent
        self.render_reveal = render_reveal
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(3)
        if obs_mode == "vector":
            self.observation_space = spaces.Box(-1.0, 1.0, shape=(VECTOR_SIZE,), dtype=np.float32)
        else:
            self.observation_space = raster.pixel_space(obs_size, grayscale)
        self.state: PongState | None = None
        self._opponent_action = NOOP
        self._window = GameWindow(render_mode, RENDER_SIZE, self.metadata["render_fps"], "FlickerPong")

    def set_opponent_action(self, action: int) -> None:
        """Set the left paddle's action for the following steps (``opponent="external"`` only)."""
        if self.opponent != "external":
            raise ValueError('set_opponent_action needs FlickerPongEnv(opponent="external")')
        if action not in (NOOP, UP, DOWN):
            raise ValueError(f"opponent action must be 0, 1 or 2, got {action!r}")
        self._opponent_action = int(action)

    def _observe(self) -> np.ndarray:
        assert self.state is not None
        if self.obs_mode == "vector":
            return observe_vector(self.state, self.params)
        return rasterize(self.state, self.params, self.obs_size, self.grayscale)

    def _info(self) -> dict[str, Any]:
        assert self.state is not None
        return {"score": (self.state.agent_score, self.state.opponent_score), "visible": self.state.visible}

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
        opponent_action = self._opponent_action if self.opponent == "external" else None
        self.state, reward, terminated = step_state(
            self.state, int(action), self.np_random, self.params, opponent_action
        )
        if self.render_mode == "human":
            self.render()
        return self._observe(), reward, terminated, False, self._info()
