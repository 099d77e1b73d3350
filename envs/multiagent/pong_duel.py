"""Two-player Flicker Pong: both paddles are agents, and each one's screen flickers on its own.

The court, the ball and the paddles are single-agent FlickerPong's (envs/games/flicker_pong.py): every step is
one ``flicker_pong.step_state``, so the physics exists once. What this module adds is who plays: ``left`` and
``right`` both move at the agent paddle speed, each sees the court from its own side (``left``'s view is the
court mirrored, so one shared policy plays either side), each frame reaches each agent with its own coin flip,
and a point is +1 for the scorer and -1 for the other.

Either side can instead be the single-agent env's scripted paddle (``scripted="left"`` or ``"right"``): the
env moves it exactly as ``FlickerPongEnv`` moves its opponent (``opponent_speed``, ``opponent_error``), and
the other agent plays alone; with ``scripted="left"`` the remaining ``right`` agent's episode is step for step
the single-agent env's at the same seed and actions.

Simulation (``reset_state``/``step_state``) and observation (``observe``/``global_state``) are numpy only;
``draw`` uses pygame, imported when a frame is drawn.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.env_args import check_min_ints
from envs.games import flicker_pong
from envs.games.flicker_pong import PongParams, PongState
from envs.multiagent import grid
from envs.multiagent.grid_team_env import GridTeamEnv

SIDES = ("left", "right")
LEFT, RIGHT = 0, 1


@dataclass(slots=True)
class DuelState:
    """One match at one step."""

    court: PongState
    """the court in single-agent FlickerPong's frame: its "agent" is the right paddle, its "opponent" the left;
    ``court.visible`` is not read (each side's view is in ``visible``)"""
    visible: tuple[bool, bool]
    """whether this frame reaches (left, right); False: that side's observation is blank"""
    hits: tuple[bool, bool]
    """whether (left, right) returned the ball on the step that led here"""
    t: int
    """steps taken"""


# ---------------------------------------------------------------- simulation


def _flip(rng: np.random.Generator, params: PongParams) -> bool:
    return bool(rng.random() >= params.flicker_p)


def reset_state(rng: np.random.Generator, params: PongParams, scripted: str | None = None) -> DuelState:
    """A new match: ``flicker_pong.reset_state``, then a second flicker draw for the left side when both sides
    are agents (a scripted side sees nothing, so the random stream stays the single-agent env's). With
    ``scripted="right"`` the court is mirrored: that match is the mirror image of ``scripted="left"``'s."""
    court = flicker_pong.reset_state(rng, params)
    if scripted == "right":
        court = flicker_pong.mirror(court)
    # With a scripted side only the agent side's view is read, and no second coin is drawn.
    visible = (_flip(rng, params), court.visible) if scripted is None else (court.visible, court.visible)
    return DuelState(court, visible, (False, False), 0)


def step_state(
    state: DuelState, actions: tuple[int, int], rng: np.random.Generator, params: PongParams,
    scripted: str | None = None,
) -> tuple[DuelState, tuple[float, float], bool]:
    """Advance the match by one step of ``flicker_pong.step_state``.

    Args:
        state: the current state (not modified).
        actions: (left, right), each 0 stay, 1 up, 2 down; a scripted side's entry is ignored.
        rng: source of serves, aims and flicker.
        scripted: None (both sides are agents, both at ``paddle_speed``), or the side the env plays with the
            single-agent env's scripted paddle. A scripted right paddle is played by stepping the mirrored
            court, in which it is the scripted "opponent".

    Returns:
        (next state, (left reward, right reward), whether the match is over). A point is +1 to the scorer and
        -1 to the other; a return adds ``hit_reward`` to the side that made it.
    """
    court = state.court
    if scripted == "right":
        after, _, terminated = flicker_pong.step_state(flicker_pong.mirror(court), actions[LEFT], rng, params)
        after = flicker_pong.mirror(after)
        visible = (after.visible, after.visible)
    elif scripted == "left":
        after, _, terminated = flicker_pong.step_state(court, actions[RIGHT], rng, params)
        visible = (after.visible, after.visible)
    else:
        after, _, terminated = flicker_pong.step_state(court, actions[RIGHT], rng, params, actions[LEFT])
        visible = (_flip(rng, params), after.visible)
    left_points = after.opponent_score - court.opponent_score
    right_points = after.agent_score - court.agent_score
    # A return is the only thing that turns the ball around without a point (a serve follows a point).
    rally = left_points == 0 and right_points == 0
    hits = (rally and court.ball_vx < 0 < after.ball_vx, rally and court.ball_vx > 0 > after.ball_vx)
    rewards = (
        params.hit_reward * hits[LEFT] + float(left_points - right_points),
        params.hit_reward * hits[RIGHT] + float(right_points - left_points),
    )
    return DuelState(after, visible, hits, state.t + 1), rewards, terminated


def side_view(state: DuelState, side: int) -> PongState:
    """The court as ``side`` sees it, in single-agent FlickerPong's frame (its own paddle on the right)."""
    court = state.court if side == RIGHT else flicker_pong.mirror(state.court)
    return dataclasses.replace(court, visible=state.visible[side])


# --------------------------------------------------------------- observation


def observe(state: DuelState, params: PongParams) -> np.ndarray:
    """Both sides' observations, ``(2, 5)`` float32 in [-1, 1], rows (left, right): single-agent FlickerPong's
    ``[visible, ball_x, ball_y, own paddle y, other paddle y]`` of ``side_view`` (all zeros on a blank frame).
    ``ball_x`` runs from the side's own goal line (1) to the other's (-1)."""
    return np.stack([flicker_pong.observe_vector(side_view(state, side), params) for side in (LEFT, RIGHT)])


STATE_SIZE = 8


def global_state(state: DuelState, params: PongParams, max_steps: int) -> np.ndarray:
    """The whole match for a centralised critic, ``(8,)`` float32 in [-1, 1], never blank and in the court's
    frame (not mirrored): ``[ball_x, ball_y, ball_vx / max_speed, ball_vy / (max_slope * max_speed), left_y,
    right_y]`` (positions mapped from [0, 1] to [-1, 1]), then the left and right scores / points_to_win
    mapped the same way."""
    c = state.court
    top_vy = params.max_slope * params.max_speed
    unit = np.array([c.ball_x, c.ball_y, c.opponent_y, c.agent_y,
                     c.opponent_score / params.points_to_win, c.agent_score / params.points_to_win]) * 2.0 - 1.0
    out = np.array([unit[0], unit[1], c.ball_vx / params.max_speed, c.ball_vy / top_vy, *unit[2:]])
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------- drawing

RENDER_SIZE = flicker_pong.RENDER_SIZE


def draw(surface: Any, state: DuelState, params: PongParams, reveal: bool = True) -> None:
    """Draw the match on a pygame ``surface``: single-agent FlickerPong's court (left paddle orange, right
    green, the score over each half), with a "blind" tag under each side whose frame is blank.

    ``reveal`` is accepted for the common signature; the court is always drawn whole (neither side's view is
    the spectator's).
    """
    from envs.games.text import blit_text

    flicker_pong.draw(surface, dataclasses.replace(state.court, visible=True), params, reveal=True)
    w, h = surface.get_size()
    for side, x in ((LEFT, w // 4), (RIGHT, 3 * w // 4)):
        if not state.visible[side]:
            blit_text(surface, f"{SIDES[side]} blind", (x, h - 20), 24, (200, 90, 90))


# ----------------------------------------------------------------------- env


class PongDuelEnv(GridTeamEnv):
    """Two-player Flicker Pong: ``left`` against ``right``, each seeing the court through its own flicker.

    ## Description

    Single-agent FlickerPong (envs/games/flicker_pong.py) with both paddles played by agents, both moving at
    the agent paddle speed (fast enough to reach every ball). Each agent sees the court from its own side, so
    one policy can play both: for ``left`` the court is mirrored, its own paddle on the right as in the
    single-agent game. Each frame reaches each agent with probability ``1 - flicker_p``, drawn independently
    for the two: no frame shows the ball's velocity and half of them show nothing, so each side has to
    integrate the ball's motion in memory.

    ## Observation Space

    ``Box(-1, 1, (5,), float32)``, the same for both, all zeros on a blank frame (single-agent FlickerPong's):

    | Num | Observation                                      | Min | Max |
    |-----|--------------------------------------------------|-----|-----|
    | 0   | visible (1 on a shown frame)                     | 0   | 1   |
    | 1   | ball x (-1 the other's goal line, 1 its own)     | -1  | 1   |
    | 2   | ball y (-1 top, 1 bottom)                        | -1  | 1   |
    | 3   | its own paddle's centre y                        | -1  | 1   |
    | 4   | the other paddle's centre y                      | -1  | 1   |

    ``state()`` (for a centralised critic) is ``Box(-1, 1, (8,), float32)``: the court unmirrored and never
    blank, with the ball's velocity and the score (``global_state``).

    ## Action Space

    ``Discrete(3)``: 0 stay, 1 move up, 2 move down.

    ## Rewards

    Zero-sum per point: +1 to the side that scores, -1 to the other; plus ``hit_reward`` (0.1, as in
    single-agent FlickerPong; 0 makes the game zero-sum) to a side for each return it makes.
    ``infos[agent]["score"]`` is ``{"left": points, "right": points}`` so far, and ``infos[agent]["hit"]``
    whether that agent returned the ball this step.

    ## Starting State

    Score 0-0, both paddles centred, the ball served from the centre line at a random height towards a random
    side. Every point is served the same way.

    ## Episode End

    Terminated for both when either reaches ``points_to_win`` (3); truncated for both after ``max_steps``
    (1500) steps.

    ## Arguments

    ```python
    make_env(render_mode=None, flicker_p=0.5, points_to_win=3, hit_reward=0.1, max_steps=1500,
             scripted=None, render_reveal=True)
    ```

    * ``scripted``: ``"left"`` or ``"right"`` makes that side single-agent FlickerPong's scripted paddle
      (``opponent_speed`` 0.02, aiming error 0.2), played by the env; it leaves ``possible_agents``, and with
      ``"left"`` the ``right`` agent's episode is the single-agent env's at the same seed and actions.
    * ``render_mode``: ``"rgb_array"`` returns a ``(400, 400, 3)`` uint8 frame of the whole court;
      ``"human"`` opens a window at ``metadata["render_fps"]``.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 30, "name": "flicker_pong_duel_v0",
                "action_names": ("stay", "up", "down")}
    title = "FlickerPongDuel"
    draw_game = staticmethod(draw)

    def __init__(
        self,
        render_mode: str | None = None,
        flicker_p: float = 0.5,
        points_to_win: int = 3,
        hit_reward: float = 0.1,
        max_steps: int = 1500,
        scripted: str | None = None,
        render_reveal: bool = True,
    ) -> None:
        from envs.games.window import check_render_mode

        check_render_mode(render_mode)
        if not 0.0 <= flicker_p <= 1.0:
            raise ValueError(f"flicker_p must be a probability in [0, 1], got {flicker_p!r}")
        check_min_ints(("points_to_win", points_to_win, 1), ("max_steps", max_steps, 1))
        if not math.isfinite(hit_reward):
            raise ValueError(f"hit_reward must be a finite number, got {hit_reward!r}")
        if scripted is not None and scripted not in SIDES:
            raise ValueError(f"scripted must be None, 'left' or 'right', got {scripted!r}")
        self.params = PongParams(flicker_p=float(flicker_p), points_to_win=points_to_win, hit_reward=float(hit_reward))
        self.max_steps = max_steps
        self.scripted = scripted
        self.render_mode = render_mode
        self.render_reveal = render_reveal
        self.possible_agents = [side for side in SIDES if side != scripted]
        self.agents: list[str] = []
        self._observation_space = spaces.Box(-1.0, 1.0, shape=(flicker_pong.VECTOR_SIZE,), dtype=np.float32)
        self._action_space = spaces.Discrete(3)
        self.state_space = spaces.Box(-1.0, 1.0, shape=(STATE_SIZE,), dtype=np.float32)
        self.np_random: np.random.Generator | None = None
        self.game: DuelState | None = None
        """the plain state of the match (``state()`` is PettingZoo's global observation)"""
        self._window: Any = None

    @staticmethod
    def render_size_of(params: PongParams) -> tuple[int, int]:
        return RENDER_SIZE

    def global_state_of(self, game: DuelState, params: PongParams) -> np.ndarray:
        return global_state(game, params, self.max_steps)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def _observations(self) -> dict[str, np.ndarray]:
        assert self.game is not None
        obs = observe(self.game, self.params)
        return {agent: obs[SIDES.index(agent)] for agent in self.agents}

    def _infos(self) -> dict[str, dict[str, Any]]:
        game = self.game
        assert game is not None
        score = {"left": game.court.opponent_score, "right": game.court.agent_score}
        return {agent: {"score": dict(score), "hit": game.hits[SIDES.index(agent)],
                        "visible": game.visible[SIDES.index(agent)]} for agent in self.possible_agents}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None or self.np_random is None:
            self.np_random = grid.make_rng(seed)
        self.game = reset_state(self.np_random, self.params, self.scripted)
        self.agents = list(self.possible_agents)
        if self.render_mode == "human":
            self.render()
        return self._observations(), self._infos()

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        if self.game is None or not self.agents:
            raise RuntimeError("call reset() before step() (the episode is over)")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"step() needs an action for every agent in env.agents; missing {missing}")
        acts = tuple(int(actions.get(side, flicker_pong.NOOP)) for side in SIDES)
        if any(a not in (0, 1, 2) for a in acts):
            raise ValueError(f"actions must be 0 (stay), 1 (up) or 2 (down), got {actions}")
        self.game, (left_reward, right_reward), terminated = step_state(
            self.game, acts, self.np_random, self.params, self.scripted)  # type: ignore[arg-type]
        truncated = not terminated and self.game.t >= self.max_steps
        obs, infos = self._observations(), self._infos()
        by_side = {"left": left_reward, "right": right_reward}
        rewards = {agent: by_side[agent] for agent in self.agents}
        terminations = dict.fromkeys(self.agents, terminated)
        truncations = dict.fromkeys(self.agents, truncated)
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminations, truncations, infos


def make_env(**kwargs: Any) -> PongDuelEnv:
    """A ``PongDuelEnv`` (the ``mnemo/FlickerPongDuel-v0`` entry point); ``kwargs`` are its constructor's
    arguments."""
    return PongDuelEnv(**kwargs)


def scripted_env_kwargs(agents: list[str]) -> dict[str, Any]:
    """Env arguments under which the env itself plays ``agents`` with its scripted paddle (the opponent of
    single-agent FlickerPong); used by ``mnemo match`` for a ``scripted`` player.

    Raises:
        ValueError: ``agents`` is not one side.
    """
    if len(agents) != 1 or agents[0] not in SIDES:
        raise ValueError(f"the scripted paddle plays one side, 'left' or 'right'; got {agents}")
    return {"scripted": agents[0]}


# ------------------------------------------------------------------ baselines


def random_policy(env: PongDuelEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """Uniform random actions drawn from ``rng``."""
    return int(rng.integers(3))
