"""Fog team: every agent is told once which corner pad is its own; the team scores when all stand on theirs.

A cooperative memory task for 2-4 agents in a foggy room: the FogMaze cue (envs/games/fog_maze.py) given to
each agent privately, with a team reward that needs every agent to remember its own cue and a single wrong
step by any of them ending the episode for all.

Simulation (``reset_state``/``step_state``) and observation (``observe``/``global_state``) are numpy only;
``draw`` uses pygame, imported when a frame is drawn.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.env_args import check_min_ints
from envs.multiagent import grid
from envs.multiagent.grid import MOVES, STAY
from envs.multiagent.grid_team_env import GridTeamEnv

N_PADS = 4
CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")


@dataclass(frozen=True)
class TeamParams:
    """Layout and rules."""

    n_agents: int = 2
    size: int = 7
    """side of the room in cells, walls excluded"""
    view_radius: int = 2
    """each agent sees the (2r+1) x (2r+1) cells around itself"""
    wall_density: float = 0.1
    """probability that an inner cell is a wall (every pad stays reachable from every start)"""
    cue_steps: int = 1
    """each agent's cue is in its first ``cue_steps`` observations"""
    step_penalty: float = 0.01
    pad_reward: float = 0.5
    """team reward when an agent steps onto its own pad"""
    team_reward: float = 1.0
    """team reward when the last agent steps onto its own pad (the episode ends)"""
    wrong_penalty: float = 1.0
    """team reward -wrong_penalty when any agent steps onto a pad that is not its own (the episode ends)"""
    max_steps: int = 50
    """the episode is truncated after this many steps"""

    def corners(self) -> np.ndarray:
        """(N_PADS, 2) room coordinates of the pads, in ``CORNER_NAMES`` order."""
        last = self.size - 1
        return np.array([(0, 0), (0, last), (last, last), (last, 0)], dtype=np.int64)


@dataclass(slots=True)
class TeamState:
    """One episode at one step (agents in ``possible_agents`` order)."""

    walls: np.ndarray
    """(size + 2r, size + 2r) float32, 1 on a wall: the room padded with ``view_radius`` of wall; never written"""
    pos: np.ndarray
    """(n_agents, 2) int64 room coordinates"""
    target: np.ndarray
    """(n_agents,) int64: the corner of each agent's own pad (all different)"""
    on_pad: np.ndarray
    """(n_agents,) bool: the agent has reached its pad and waits there (its actions are ignored)"""
    t: int
    """steps taken"""
    score: float
    """team return so far (shown by ``draw``)"""


# ---------------------------------------------------------------- simulation


@functools.lru_cache(maxsize=16)
def _pad_index(params: TeamParams) -> np.ndarray:
    """(size, size) int64: the corner index of each pad cell, -1 elsewhere (cached, read-only)."""
    index = np.full((params.size, params.size), -1, dtype=np.int64)
    for k, (row, col) in enumerate(params.corners()):
        index[row, col] = k
    index.flags.writeable = False
    return index


def reset_state(rng: np.random.Generator, params: TeamParams) -> TeamState:
    """A fresh room: random walls, agents on distinct cells at and around the centre, distinct random pads."""
    size, r, n = params.size, params.view_radius, params.n_agents
    c = size // 2
    starts = np.array([(c, c), (c - 1, c), (c, c + 1), (c + 1, c), (c, c - 1)], dtype=np.int64)
    pos = starts[rng.choice(len(starts), size=n, replace=False)]
    corners = params.corners()
    walls = np.zeros((size, size), dtype=bool)
    for _ in range(100):  # resample until every pad is reachable from every start; nearly always at once
        walls = rng.random((size, size)) < params.wall_density
        walls[tuple(starts.T)] = False
        walls[tuple(corners.T)] = False
        passable = ~walls
        passable[tuple(corners.T)] = False  # stepping onto a pad ends an agent's walk: no path leads through one
        reach = grid.distances(passable, (c, c)) >= 0
        if reach[tuple(starts.T)].all() and all(grid.next_to(reach, tuple(corner)) for corner in corners):
            break
    else:
        walls[:] = False
    target = rng.permutation(N_PADS)[:n].astype(np.int64)
    wall_plane = grid.padded(walls.astype(np.float32), r, 1.0)
    wall_plane.flags.writeable = False
    return TeamState(wall_plane, pos, target, np.zeros(n, dtype=bool), 0, 0.0)


def step_state(
    state: TeamState, actions: np.ndarray, rng: np.random.Generator, params: TeamParams
) -> tuple[TeamState, float, bool]:
    """Move every agent at once (walls and agents block), then score the pads.

    Moves are simultaneous: a move into a wall, into a cell that an agent holds now, or into a cell that
    another agent also moves to is replaced by a stay. ``state`` is not modified; ``rng`` is not used (the
    rules are deterministic given the actions) but kept for the common signature.

    Args:
        actions: (n_agents,) ints in 0..4 (stay, up, right, down, left); ignored for agents on their pad.

    Returns:
        (next state, team reward, terminated): reward -step_penalty, +pad_reward per agent that reaches its
        pad, +team_reward when the last one does, -wrong_penalty when any agent steps onto another pad;
        terminated on the last two.
    """
    r = params.view_radius
    pos = state.pos
    proposed = pos + MOVES[np.where(state.on_pad, STAY, actions)]
    proposed = np.where((state.walls[proposed[:, 0] + r, proposed[:, 1] + r] > 0)[:, None], pos, proposed)
    moving = (proposed != pos).any(axis=1)
    same = (proposed[:, None, :] == proposed[None, :, :]).all(axis=2)
    held = (proposed[:, None, :] == pos[None, :, :]).all(axis=2)
    np.fill_diagonal(same, False)
    np.fill_diagonal(held, False)
    blocked = moving & (same.any(axis=1) | held.any(axis=1))
    new_pos = np.where(blocked[:, None], pos, proposed)

    pad = _pad_index(params)[new_pos[:, 0], new_pos[:, 1]]
    arrived = ~state.on_pad & (pad >= 0)
    right = arrived & (pad == state.target)
    wrong = arrived & (pad != state.target)
    on_pad = state.on_pad | right
    reward = -params.step_penalty + params.pad_reward * int(right.sum())
    terminated = False
    if wrong.any():
        reward -= params.wrong_penalty
        terminated = True
    elif on_pad.all():
        reward += params.team_reward
        terminated = True
    next_state = TeamState(state.walls, new_pos, state.target, on_pad, state.t + 1, state.score + reward)
    return next_state, reward, terminated


# --------------------------------------------------------------- observation


def obs_size(params: TeamParams) -> int:
    """Length of an observation: wall, pad and other-agent planes of the window, the cue, the on-pad flag."""
    side = 2 * params.view_radius + 1
    return 3 * side * side + N_PADS + 1


@functools.lru_cache(maxsize=16)
def _pad_plane(params: TeamParams) -> np.ndarray:
    pads = grid.plane(params.corners(), params.size, params.view_radius)
    pads.flags.writeable = False
    return pads


def observe(state: TeamState, params: TeamParams) -> np.ndarray:
    """Every agent's observation, ``(n_agents, obs_size)`` float32 in {0, 1}:
    ``[walls (side^2), pads (side^2), other agents (side^2), cue one-hot (4), on_pad]``.

    Planes are row-major over the window with the agent in its centre; the cue (the agent's own pad) is all
    zeros after the first ``cue_steps`` observations.
    """
    r, n = params.view_radius, params.n_agents
    side2 = (2 * r + 1) ** 2
    pads = _pad_plane(params)
    agents = grid.plane(state.pos, params.size, r, counts=True)
    obs = np.zeros((n, obs_size(params)), dtype=np.float32)
    cue = state.t < params.cue_steps
    for i, (row, col) in enumerate(state.pos):
        obs[i, :side2] = grid.window(state.walls, row, col, r).ravel()
        obs[i, side2 : 2 * side2] = grid.window(pads, row, col, r).ravel()
        others = grid.window(agents, row, col, r).ravel()
        obs[i, 2 * side2 : 3 * side2] = others
        obs[i, 2 * side2 + side2 // 2] -= 1.0  # the agent itself, in the centre
        if cue:
            obs[i, 3 * side2 + state.target[i]] = 1.0
        obs[i, -1] = state.on_pad[i]
    return obs


def state_size(params: TeamParams) -> int:
    return params.size**2 + params.n_agents * (2 + N_PADS + 1) + 1


def global_state(state: TeamState, params: TeamParams) -> np.ndarray:
    """The whole episode for a centralised critic, ``(state_size,)`` float32 in [0, 1]: the room's walls
    (size^2, row-major), then per agent ``[row, col]`` / (size - 1), its pad one-hot (4) and on_pad, then
    t / max_steps."""
    r, size = params.view_radius, params.size
    per_agent = np.zeros((params.n_agents, 2 + N_PADS + 1), dtype=np.float32)
    per_agent[:, :2] = state.pos / (size - 1)
    per_agent[np.arange(params.n_agents), 2 + state.target] = 1.0
    per_agent[:, -1] = state.on_pad
    room = state.walls[r : r + size, r : r + size]
    return np.concatenate([room.ravel(), per_agent.ravel(), [min(state.t / params.max_steps, 1.0)]]).astype(
        np.float32
    )


# ------------------------------------------------------------------- drawing

_CELL_PX = 48
_BAR_PX = 36
AGENT_COLORS = ((80, 160, 255), (255, 120, 90), (120, 220, 120), (230, 120, 230))


def render_size(params: TeamParams) -> tuple[int, int]:
    side = (params.size + 2) * _CELL_PX
    return side, side + _BAR_PX


def draw(surface: Any, state: TeamState, params: TeamParams, reveal: bool = True) -> None:
    """Draw the room on a pygame ``surface`` of ``render_size(params)``.

    Cells outside every agent's window are under a dim fog (the team's view). Agents are discs in their own
    color, with a ring while they wait on their pad.

    Args:
        reveal: show the room under the fog and mark each agent's pad with its color; ``False`` draws only
            what the team sees (and a pad's color only while its agent's cue is shown).
    """
    from envs.games.text import blit_text
    from envs.games.window import import_pygame

    pygame = import_pygame()
    surface.fill((6, 6, 10))
    r, size, px = params.view_radius, params.size, _CELL_PX
    seen = np.zeros((size + 2, size + 2), dtype=bool)
    for row, col in state.pos:
        seen[max(row + 1 - r, 0) : row + r + 2, max(col + 1 - r, 0) : col + r + 2] = True
    fog = pygame.Surface((px, px), pygame.SRCALPHA)
    fog.fill((6, 6, 10, 160))
    walls = state.walls[r - 1 : r + size + 1, r - 1 : r + size + 1]
    pads = np.full((size + 2, size + 2), -1, dtype=np.int64)  # with the outer wall
    pads[1:-1, 1:-1] = _pad_index(params)
    owner = {int(state.target[i]): i for i in range(params.n_agents)}
    cue = state.t < params.cue_steps
    for gr in range(size + 2):
        for gc in range(size + 2):
            if not (seen[gr, gc] or reveal):
                continue
            rect = pygame.Rect(gc * px, gr * px, px, px)
            if walls[gr, gc]:
                pygame.draw.rect(surface, (112, 112, 132), rect)
                pygame.draw.rect(surface, (80, 80, 98), rect, width=2)
            else:
                pygame.draw.rect(surface, (50, 52, 70), rect)
                pygame.draw.rect(surface, (62, 64, 84), rect, width=1)
            k = pads[gr, gc]
            if k >= 0:
                body = rect.inflate(-px // 4, -px // 4)
                pygame.draw.rect(surface, (230, 188, 60), body, border_radius=5)
                if k in owner and (reveal or cue):
                    pygame.draw.rect(surface, AGENT_COLORS[owner[k]], body.inflate(-px // 3, -px // 3),
                                     border_radius=4)
            if not seen[gr, gc]:
                surface.blit(fog, rect)
    for i, (row, col) in enumerate(state.pos):
        center = ((col + 1) * px + px // 2, (row + 1) * px + px // 2)
        pygame.draw.circle(surface, AGENT_COLORS[i], center, px // 3)
        pygame.draw.circle(surface, (240, 240, 250), center, px // 3, width=4 if state.on_pad[i] else 1)
    w, h = surface.get_size()
    waiting = int(state.on_pad.sum())
    blit_text(surface, f"step {state.t}   on pads {waiting}/{params.n_agents}   team return {state.score:+.2f}",
              (w // 2, h - _BAR_PX // 2), 24, (200, 200, 215))


# ----------------------------------------------------------------------- env


class FogTeamEnv(GridTeamEnv):
    """Each agent is told once which corner pad is its own; the team scores when every agent stands on its pad.

    ## Description

    ``n_agents`` (2) agents start at and around the centre of a ``size`` x ``size`` (7 x 7) room with random
    inner walls. Each of the four corners holds a pad; the pads look alike. In its first ``cue_steps`` (1)
    observations each agent is shown, privately, which corner is its own pad (every agent gets a different
    one); after that it sees only the cells within ``view_radius`` (2) of itself, the other agents in that
    window, and no coordinates. An agent that steps onto its own pad waits there for the rest of the episode;
    one that steps onto any other pad ends the episode for the team. Agents block each other.

    **Memory.** An agent must carry its cue from the first step until it reaches its pad (6-12 steps), and
    with walls and fog keep track of where it is heading. Without memory, an agent's observation after the
    first step says nothing about its pad (its first move can leave a trace in where it stands, which the fog
    mostly hides): a memoryless team can only guess or keep away from the pads.

    ## Observation Space

    ``Box(0, 1, (3 * (2r+1)**2 + 5,), float32)`` (80 with the defaults), the same for every agent, the agent
    always in the window's centre:

    | Index                         | Observation                                       | Min | Max |
    |-------------------------------|---------------------------------------------------|-----|-----|
    | 0 .. s - 1                    | wall in that window cell (row-major), s = (2r+1)^2 | 0   | 1   |
    | s .. 2s - 1                   | pad in that window cell                           | 0   | 1   |
    | 2s .. 3s - 1                  | another agent in that window cell                 | 0   | 1   |
    | 3s + i                        | cue: the agent's pad is corner i (first steps)    | 0   | 1   |
    | 3s + 4                        | the agent waits on its pad                        | 0   | 1   |

    Corners are numbered top-left, top-right, bottom-right, bottom-left. ``state()`` (for a centralised
    critic) is ``Box(0, 1, (size^2 + 7 n_agents + 1,), float32)``: the walls, each agent's position, pad and
    on-pad flag, and the time (``global_state``).

    ## Action Space

    ``Discrete(5)``: 0 stay, 1 up, 2 right, 3 down, 4 left. Moves are simultaneous; a move into a wall, into a
    cell another agent holds, or into a cell another agent also moves to, stays put.

    ## Rewards

    One team reward, the same for every agent at every step: -``step_penalty`` (0.01) per step,
    +``pad_reward`` (0.5) when an agent steps onto its own pad, +``team_reward`` (1) when the last agent does,
    -``wrong_penalty`` (1) when any agent steps onto a pad that is not its own. Best team return with the
    defaults: 2 - 0.01 x (steps of the slower agent's walk), about 1.93; a team that never touches a pad
    gets -0.5 (the whole time limit).

    ## Starting State

    A new room every episode: each inner cell is a wall with probability ``wall_density`` (0.1), resampled
    until every pad is reachable from every start; agents on distinct random cells among the centre and its
    four neighbours; the pads drawn without replacement.

    ## Episode End

    Terminated for every agent when any agent steps onto another's pad or when every agent is on its own pad;
    truncated for every agent after ``max_steps`` (50) steps. Every agent stays in ``agents`` until then.

    ## Arguments

    ```python
    make_env(render_mode=None, n_agents=2, size=7, view_radius=2, wall_density=0.1, cue_steps=1,
             step_penalty=0.01, pad_reward=0.5, team_reward=1.0, wrong_penalty=1.0, max_steps=50,
             render_reveal=True)
    ```

    * ``render_mode``: ``"rgb_array"`` returns an ``(H, W, 3)`` uint8 frame (432 x 468 with the defaults);
      ``"human"`` opens a window at ``metadata["render_fps"]``.
    * ``render_reveal``: the frame shows the room under the fog and each agent's pad.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 6, "name": "fog_team_v0",
                "action_names": grid.ACTION_NAMES}
    title = "FogTeam"
    global_state_of = staticmethod(global_state)
    render_size_of = staticmethod(render_size)
    draw_game = staticmethod(draw)

    def __init__(
        self,
        render_mode: str | None = None,
        n_agents: int = 2,
        size: int = 7,
        view_radius: int = 2,
        wall_density: float = 0.1,
        cue_steps: int = 1,
        step_penalty: float = 0.01,
        pad_reward: float = 0.5,
        team_reward: float = 1.0,
        wrong_penalty: float = 1.0,
        max_steps: int = 50,
        render_reveal: bool = True,
    ) -> None:
        from envs.games.window import check_render_mode

        check_render_mode(render_mode)
        if n_agents not in (1, 2, 3, 4):
            raise ValueError(f"n_agents must be 1 to 4 (one pad per corner), got {n_agents!r}")
        check_min_ints(("size", size, 5), ("view_radius", view_radius, 1), ("cue_steps", cue_steps, 1),
                       ("max_steps", max_steps, 1))
        if not 0.0 <= wall_density <= 0.4:
            raise ValueError(f"wall_density must be in [0, 0.4], got {wall_density!r}")
        for name, value in (("step_penalty", step_penalty), ("pad_reward", pad_reward),
                            ("team_reward", team_reward), ("wrong_penalty", wrong_penalty)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.params = TeamParams(n_agents=n_agents, size=size, view_radius=view_radius,
                                 wall_density=float(wall_density), cue_steps=cue_steps,
                                 step_penalty=float(step_penalty), pad_reward=float(pad_reward),
                                 team_reward=float(team_reward), wrong_penalty=float(wrong_penalty),
                                 max_steps=max_steps)
        self.render_mode = render_mode
        self.render_reveal = render_reveal
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self._observation_space = spaces.Box(0.0, 1.0, shape=(obs_size(self.params),), dtype=np.float32)
        self._action_space = spaces.Discrete(5)
        self.state_space = spaces.Box(0.0, 1.0, shape=(state_size(self.params),), dtype=np.float32)
        self.np_random: np.random.Generator | None = None
        self.game: TeamState | None = None
        """the plain state of the episode (``state()`` is PettingZoo's global observation)"""
        self._window: Any = None

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def _observations(self) -> dict[str, np.ndarray]:
        assert self.game is not None
        obs = observe(self.game, self.params)
        return {agent: obs[i] for i, agent in enumerate(self.possible_agents) if agent in self.agents}

    def _infos(self) -> dict[str, dict[str, Any]]:
        assert self.game is not None
        return {agent: {"on_pad": bool(self.game.on_pad[i])} for i, agent in enumerate(self.possible_agents)}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None or self.np_random is None:
            self.np_random = grid.make_rng(seed)
        self.game = reset_state(self.np_random, self.params)
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
        acts = np.array([int(actions[agent]) for agent in self.possible_agents], dtype=np.int64)
        if ((acts < 0) | (acts >= 5)).any():
            raise ValueError(f"actions must be in 0..4 (stay, up, right, down, left), got {actions}")
        self.game, reward, terminated = step_state(self.game, acts, self.np_random, self.params)
        truncated = not terminated and self.game.t >= self.params.max_steps
        obs, infos = self._observations(), self._infos()
        rewards = dict.fromkeys(self.agents, float(reward))
        terminations = dict.fromkeys(self.agents, terminated)
        truncations = dict.fromkeys(self.agents, truncated)
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminations, truncations, infos


def make_env(**kwargs: Any) -> FogTeamEnv:
    """A ``FogTeamEnv`` (the ``mnemo/FogTeam-v0`` entry point); ``kwargs`` are its constructor's arguments."""
    return FogTeamEnv(**kwargs)


# ------------------------------------------------------------------ baselines


def scripted_policy(env: FogTeamEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """A perfect-memory player: walks a shortest path to its own pad.

    Reads the episode's plain state (``env.game``): the room, where it and the others stand, and its own pad,
    i.e. the cue it was shown, remembered; the others' pads are not used. When another agent holds or may step
    into its next cell, it makes a random move that enters no other pad with probability 1/2 (from ``rng``),
    since agents block each other and could otherwise wait for each other forever. ``obs`` is not used.
    """
    return _walk_to(env, agent, int(env.game.target[env.possible_agents.index(agent)]), rng)


def fixed_guess_policy(env: FogTeamEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """The best memoryless guess: agent i walks to corner i whatever its cue said (reads what
    ``scripted_policy`` reads, except the pad)."""
    return _walk_to(env, agent, env.possible_agents.index(agent) % N_PADS, rng)


def _walk_to(env: FogTeamEnv, agent: str, corner: int, rng: np.random.Generator) -> int:
    game, params = env.game, env.params
    assert game is not None
    i = env.possible_agents.index(agent)
    if game.on_pad[i]:
        return STAY
    r, size = params.view_radius, params.size
    open_cells = game.walls[r : r + size, r : r + size] == 0
    open_cells[tuple(params.corners().T)] = False
    target = tuple(params.corners()[corner])
    open_cells[target] = True
    row, col = (int(x) for x in game.pos[i])
    action = grid.step_toward(grid.distances(open_cells, target), row, col)
    # Agents block each other, and two that step into one cell both stay: near another agent, a coin toss
    # picks between the shortest path and a random move, or two agents could wait for each other forever.
    nxt = game.pos[i] + MOVES[action]
    near = np.abs(np.delete(game.pos, i, axis=0) - nxt).sum(axis=1) <= 1
    if near.any() and rng.random() < 0.5:
        cells = game.pos[i] + MOVES
        safe = _pad_index(params)[np.clip(cells[:, 0], 0, size - 1), np.clip(cells[:, 1], 0, size - 1)]
        return int(rng.choice(np.flatnonzero((safe < 0) | (safe == corner))))
    return action


def random_policy(env: FogTeamEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """Uniform random actions drawn from ``rng``."""
    return int(rng.integers(5))

