"""Storm harvest: a team forages in the dark among hunters that only lightning shows; the caught respawn.

A mixed-reward multi-agent game whose agents die and come back during an episode: the number of live agents
changes every few steps. The hunters are invisible between flashes of lightning, so an agent has to remember
where the last flash showed them and how many steps ago.

Simulation (``reset_state``/``step_state``) and observation (``observe``/``global_state``) are numpy only;
``draw`` uses pygame, imported when a frame is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.env_args import check_min_ints
from envs.multiagent import grid
from envs.multiagent.grid import MOVES, STAY
from envs.multiagent.grid_team_env import GridTeamEnv


@dataclass(frozen=True)
class HarvestParams:
    """Layout and rules."""

    n_agents: int = 4
    size: int = 9
    """side of the arena in cells, walls excluded"""
    view_radius: int = 2
    n_hunters: int = 2
    n_fruit: int = 4
    """fruit on the ground at any time (an eaten one regrows elsewhere at once)"""
    wall_density: float = 0.08
    flash_every: int = 4
    """lightning shows the hunters in the observations of steps t = 0, flash_every, 2 flash_every, ..."""
    hunter_speed: float = 0.75
    """probability that a hunter takes its step toward the nearest live agent"""
    respawn: bool = True
    respawn_delay: int = 4
    """a caught agent is back (at a random cell away from the hunters) after this many steps"""
    spawn_distance: int = 4
    """a respawned agent starts at least this Manhattan distance from every hunter (where such a cell exists)"""
    fruit_reward: float = 1.0
    death_penalty: float = 4.0
    """a catch costs as much as 4 fruit: at 2, learned teams forage and ignore the hunters (docs/multiagent_games.md)"""
    max_steps: int = 200


@dataclass(slots=True)
class HarvestState:
    """One episode at one step (agents in ``possible_agents`` order)."""

    walls: np.ndarray
    """(size + 2r, size + 2r) float32, 1 on a wall: the arena padded with ``view_radius`` of wall; never written"""
    pos: np.ndarray
    """(n_agents, 2) int64 arena coordinates (where a dead agent was caught)"""
    alive: np.ndarray
    """(n_agents,) bool"""
    respawn_in: np.ndarray
    """(n_agents,) int64: steps until a dead agent is back; 0 while alive, -1 for never"""
    hunters: np.ndarray
    """(n_hunters, 2) int64"""
    seen_hunters: np.ndarray
    """(n_hunters, 2) int64: where the last flash showed the hunters"""
    fruit: np.ndarray
    """(n_fruit, 2) int64"""
    t: int
    """steps taken"""
    score: float
    """team return so far (shown by ``draw``)"""


# ---------------------------------------------------------------- simulation


def flash(t: int, params: HarvestParams) -> bool:
    """Whether the observations after ``t`` steps show the hunters."""
    return t % params.flash_every == 0


def _free_cells(open_cells: np.ndarray, taken: list[np.ndarray]) -> np.ndarray:
    free = open_cells.copy()
    for cells in taken:
        if len(cells):
            free[cells[:, 0], cells[:, 1]] = False
    return np.argwhere(free)


def _spawn_cell(rng: np.random.Generator, open_cells: np.ndarray, hunters: np.ndarray, params: HarvestParams,
                ) -> np.ndarray:
    cells = np.argwhere(open_cells)
    far = np.abs(cells[:, None, :] - hunters[None, :, :]).sum(axis=2).min(axis=1) >= params.spawn_distance
    if far.any():
        cells = cells[far]
    return cells[rng.integers(len(cells))]


def reset_state(rng: np.random.Generator, params: HarvestParams) -> HarvestState:
    """A fresh arena: random walls (every open cell connected), hunters, fruit and agents on random cells,
    every agent at least ``spawn_distance`` from every hunter."""
    size, r = params.size, params.view_radius
    walls = np.zeros((size, size), dtype=bool)
    for _ in range(100):  # resample until the open cells are connected; nearly always at once
        walls = rng.random((size, size)) < params.wall_density
        walls[size // 2, size // 2] = False
        if ((grid.distances(~walls, (size // 2, size // 2)) >= 0) == ~walls).all():
            break
    else:
        walls[:] = False
    open_cells = ~walls
    cells = np.argwhere(open_cells)
    hunters = cells[rng.choice(len(cells), size=params.n_hunters, replace=False)]
    pos = np.stack([_spawn_cell(rng, open_cells, hunters, params) for _ in range(params.n_agents)])
    free = _free_cells(open_cells, [hunters, pos])
    fruit = free[rng.choice(len(free), size=params.n_fruit, replace=False)]
    wall_plane = grid.padded(walls.astype(np.float32), r, 1.0)
    wall_plane.flags.writeable = False
    n = params.n_agents
    return HarvestState(wall_plane, pos, np.ones(n, dtype=bool), np.zeros(n, dtype=np.int64), hunters,
                        hunters.copy(), fruit, 0, 0.0)


def _hunter_step(rng: np.random.Generator, hunter: np.ndarray, prey: np.ndarray, open_cells: np.ndarray,
                 ) -> np.ndarray:
    """One step of a hunter toward the nearest of ``prey`` (M, 2): along the longer axis of the gap first,
    the other where a wall is in the way; a random move when there is no prey."""
    if not len(prey):
        options = [hunter + MOVES[rng.integers(1, 5)]]
    else:
        gap = prey[np.abs(prey - hunter).sum(axis=1).argmin()] - hunter
        axes = [0, 1] if abs(gap[0]) > abs(gap[1]) or (abs(gap[0]) == abs(gap[1]) and rng.random() < 0.5) else [1, 0]
        options = []
        for axis in axes:
            if gap[axis]:
                step = np.zeros(2, dtype=np.int64)
                step[axis] = np.sign(gap[axis])
                options.append(hunter + step)
    size = open_cells.shape[0]
    for cell in options:
        if 0 <= cell[0] < size and 0 <= cell[1] < size and open_cells[cell[0], cell[1]]:
            return cell
    return hunter


def step_state(
    state: HarvestState, actions: np.ndarray, rng: np.random.Generator, params: HarvestParams
) -> tuple[HarvestState, np.ndarray, np.ndarray, np.ndarray]:
    """Agents move (walls block; agents may share a cell), eat, then the hunters move; catches, respawns.

    An agent is caught when it steps onto a hunter's cell or a hunter steps onto its cell. A caught agent is
    out for ``respawn_delay`` steps, then back on a random open cell at least ``spawn_distance`` from every
    hunter (never on the episode's last step). ``state`` is not modified.

    Args:
        actions: (n_agents,) ints in 0..4 (stay, up, right, down, left); ignored for dead agents.

    Returns:
        (next state, rewards (n_agents,) float64, caught (n_agents,) bool, respawned (n_agents,) bool):
        +fruit_reward per fruit eaten, -death_penalty when caught.
    """
    size, r, n = params.size, params.view_radius, params.n_agents
    open_cells = state.walls[r : r + size, r : r + size] == 0
    alive = state.alive.copy()
    rewards = np.zeros(n)
    proposed = state.pos + MOVES[np.where(alive, actions, STAY)]
    blocked = state.walls[proposed[:, 0] + r, proposed[:, 1] + r] > 0
    pos = np.where(blocked[:, None], state.pos, proposed)

    def catch() -> np.ndarray:
        hit = alive & (pos[:, None, :] == hunters[None, :, :]).all(axis=2).any(axis=1)
        alive[hit] = False
        return hit

    hunters = state.hunters
    caught = catch()
    fruit = state.fruit.copy()
    for i in np.flatnonzero(alive):
        eaten = (fruit == pos[i]).all(axis=1)
        for k in np.flatnonzero(eaten):
            rewards[i] += params.fruit_reward
            free = _free_cells(open_cells, [hunters, pos[alive], fruit])
            fruit[k] = free[rng.integers(len(free))] if len(free) else fruit[k]
    moving = rng.random(params.n_hunters) < params.hunter_speed
    hunters = np.stack([_hunter_step(rng, h, pos[alive], open_cells) if m else h
                        for h, m in zip(hunters, moving, strict=True)])
    caught |= catch()
    rewards[caught] -= params.death_penalty

    respawn_in = state.respawn_in.copy()
    waiting = ~state.alive & (respawn_in > 0)
    respawn_in[waiting] -= 1
    respawned = waiting & (respawn_in == 0)
    if state.t + 1 >= params.max_steps:  # no agent comes back only to be truncated at once
        respawned[:] = False
        respawn_in[waiting & (respawn_in == 0)] = 1
    for i in np.flatnonzero(respawned):
        pos[i] = _spawn_cell(rng, open_cells, hunters, params)
        alive[i] = True
    respawn_in[caught] = params.respawn_delay if params.respawn else -1
    t = state.t + 1
    seen = hunters.copy() if flash(t, params) else state.seen_hunters
    next_state = HarvestState(state.walls, pos, alive, respawn_in, hunters, seen, fruit, t,
                              state.score + float(rewards.sum()))
    return next_state, rewards, caught, respawned


# --------------------------------------------------------------- observation


def obs_size(params: HarvestParams) -> int:
    """Length of an observation: four window planes, the flash flag, an offset per hunter."""
    side = 2 * params.view_radius + 1
    return 4 * side * side + 1 + 2 * params.n_hunters


def observe(state: HarvestState, params: HarvestParams) -> np.ndarray:
    """Every agent's observation, ``(n_agents, obs_size)`` float32 in [-1, 1] (rows of dead agents show
    where they were caught):
    ``[walls, fruit, other live agents, hunters (side^2 each), flash, offsets (2 per hunter)]``.

    Planes are row-major over the window with the agent in its centre. On a flash step the hunter plane
    shows the hunters in the window and the offsets give every hunter's (drow, dcol) / (size - 1), nearest
    first; between flashes both are zeros.
    """
    size, r, n = params.size, params.view_radius, params.n_agents
    side2 = (2 * r + 1) ** 2
    fruit = grid.plane(state.fruit, size, r)
    agents = grid.plane(state.pos[state.alive], size, r, counts=True)
    lit = flash(state.t, params)
    hunters = grid.plane(state.hunters, size, r) if lit else None
    obs = np.zeros((n, obs_size(params)), dtype=np.float32)
    for i, (row, col) in enumerate(state.pos):
        obs[i, :side2] = grid.window(state.walls, row, col, r).ravel()
        obs[i, side2 : 2 * side2] = grid.window(fruit, row, col, r).ravel()
        others = grid.window(agents, row, col, r).ravel().copy()
        others[side2 // 2] -= state.alive[i]
        obs[i, 2 * side2 : 3 * side2] = np.minimum(others, 1.0)
        if lit:
            obs[i, 3 * side2 : 4 * side2] = grid.window(hunters, row, col, r).ravel()
            obs[i, 4 * side2] = 1.0
            offsets = (state.hunters - state.pos[i]) / (size - 1)
            order = np.abs(offsets).sum(axis=1).argsort(kind="stable")
            obs[i, 4 * side2 + 1 :] = offsets[order].ravel()
    return obs


def state_size(params: HarvestParams) -> int:
    return 4 * params.size**2 + 4 * params.n_agents + 2


def global_state(state: HarvestState, params: HarvestParams) -> np.ndarray:
    """The whole episode for a centralised critic, ``(state_size,)`` float32 in [0, 1]: arena planes of walls,
    fruit, hunters and live agents / n_agents (size^2 each, row-major), per agent ``[alive, respawn_in /
    respawn_delay, row / (size - 1), col / (size - 1)]``, then the lightning phase (t mod flash_every) /
    flash_every and t / max_steps."""
    size, r = params.size, params.view_radius
    planes = np.zeros((4, size, size), dtype=np.float32)
    planes[0] = state.walls[r : r + size, r : r + size]
    planes[1][tuple(state.fruit.T)] = 1.0
    planes[2][tuple(state.hunters.T)] = 1.0
    np.add.at(planes[3], tuple(state.pos[state.alive].T), 1.0 / params.n_agents)
    per_agent = np.zeros((params.n_agents, 4), dtype=np.float32)
    per_agent[:, 0] = state.alive
    per_agent[:, 1] = np.clip(state.respawn_in / max(params.respawn_delay, 1), 0.0, 1.0)
    per_agent[:, 2:] = state.pos / (size - 1)
    clock = [(state.t % params.flash_every) / params.flash_every, min(state.t / params.max_steps, 1.0)]
    return np.concatenate([planes.ravel(), per_agent.ravel(), clock]).astype(np.float32)


# ------------------------------------------------------------------- drawing

_CELL_PX = 40
_BAR_PX = 36
AGENT_COLORS = ((80, 160, 255), (255, 150, 70), (120, 220, 120), (230, 120, 230), (90, 220, 220), (240, 220, 90))


def render_size(params: HarvestParams) -> tuple[int, int]:
    side = (params.size + 2) * _CELL_PX
    return side, side + _BAR_PX


def draw(surface: Any, state: HarvestState, params: HarvestParams, reveal: bool = True) -> None:
    """Draw the arena on a pygame ``surface`` of ``render_size(params)``.

    Cells outside every live agent's window are under a dim fog (the team's view). On a flash step the
    frame is lit and the hunters are drawn in full; between flashes they are drawn faint (``reveal``) or
    not at all, with a ring where the last flash showed them.
    """
    from envs.games.text import blit_text
    from envs.games.window import import_pygame

    pygame = import_pygame()
    lit = flash(state.t, params)
    surface.fill((40, 40, 60) if lit else (6, 6, 10))
    r, size, px = params.view_radius, params.size, _CELL_PX
    seen = np.zeros((size + 2, size + 2), dtype=bool)
    for row, col in state.pos[state.alive]:
        seen[max(row + 1 - r, 0) : row + r + 2, max(col + 1 - r, 0) : col + r + 2] = True
    fog = pygame.Surface((px, px), pygame.SRCALPHA)
    fog.fill((6, 6, 10, 150))
    walls = state.walls[r - 1 : r + size + 1, r - 1 : r + size + 1]
    for gr in range(size + 2):
        for gc in range(size + 2):
            if not (seen[gr, gc] or reveal):
                continue
            rect = pygame.Rect(gc * px, gr * px, px, px)
            if walls[gr, gc]:
                pygame.draw.rect(surface, (112, 112, 132), rect)
                pygame.draw.rect(surface, (80, 80, 98), rect, width=2)
            else:
                pygame.draw.rect(surface, (70, 72, 96) if lit else (44, 48, 62), rect)
                pygame.draw.rect(surface, (62, 64, 84), rect, width=1)

    def center(row: int, col: int) -> tuple[int, int]:
        return (col + 1) * px + px // 2, (row + 1) * px + px // 2

    for row, col in state.fruit:
        if reveal or seen[row + 1, col + 1]:
            pygame.draw.circle(surface, (220, 60, 60), center(row, col), px // 5)
            pygame.draw.line(surface, (90, 180, 70), center(row, col), (center(row, col)[0] + 3, center(row, col)[1]
                             - px // 4), 3)
    for row, col in state.seen_hunters:
        pygame.draw.circle(surface, (170, 90, 200), center(row, col), px // 2 - 3, width=2)
    for row, col in state.hunters:
        if lit or reveal:
            x, y = center(row, col)
            k = px // 3
            color = (200, 80, 240) if lit else (90, 50, 110)
            pygame.draw.polygon(surface, color, [(x, y - k), (x + k, y + k), (x - k, y + k)])
    for gr in range(size + 2):
        for gc in range(size + 2):
            if not seen[gr, gc] and (reveal or walls[gr, gc]):
                surface.blit(fog, (gc * px, gr * px))
    for i, (row, col) in enumerate(state.pos):
        if state.alive[i]:
            pygame.draw.circle(surface, AGENT_COLORS[i % len(AGENT_COLORS)], center(row, col), px // 3)
            pygame.draw.circle(surface, (240, 240, 250), center(row, col), px // 3, width=1)
        elif reveal and state.respawn_in[i] != 0:
            pygame.draw.circle(surface, AGENT_COLORS[i % len(AGENT_COLORS)], center(row, col), px // 3, width=1)
    w, h = surface.get_size()
    blit_text(surface, f"step {state.t}   alive {int(state.alive.sum())}/{params.n_agents}   "
              f"team return {state.score:+.0f}" + ("   LIGHTNING" if lit else ""),
              (w // 2, h - _BAR_PX // 2), 24, (200, 200, 215))


# ----------------------------------------------------------------------- env


class StormHarvestEnv(GridTeamEnv):
    """A team forages in the dark among hunters that only lightning shows; a caught agent respawns later.

    ## Description

    ``n_agents`` (4) agents gather fruit in a ``size`` x ``size`` (9 x 9) arena with a few walls, where
    ``n_hunters`` (2) hunters chase the nearest live agent (one step with probability ``hunter_speed``, 0.75,
    per step: slower than an agent). Each agent sees the cells within ``view_radius`` (2) of itself: walls,
    fruit and the other live agents, but not the hunters, which are in the dark. Every ``flash_every`` (4)
    steps lightning shows them: on that step each agent sees the hunters in its window and the offset to
    every hunter in the arena. An agent that shares a cell with a hunter (its own step or the hunter's) is
    caught: it is terminated and leaves ``agents``; ``respawn_delay`` (4) steps later it is back in
    ``agents`` under the same name (a new episode for that agent) on a random cell at least
    ``spawn_distance`` (4) from every hunter, with a fresh observation. The number of live agents changes
    every few steps.

    **Memory.** Between flashes an agent must carry where the hunters were and how many steps ago (a hunter
    can have come one cell closer per step), and update that offset as it moves. A memoryless agent knows the
    hunters one step in ``flash_every`` and forages blind in the others.

    ## Observation Space

    ``Box(-1, 1, (4 * (2r+1)**2 + 1 + 2 * n_hunters,), float32)`` (105 with the defaults), the same for every
    agent, the agent in the window's centre, s = (2r+1)^2:

    | Index              | Observation                                                              | Min | Max |
    |--------------------|--------------------------------------------------------------------------|-----|-----|
    | 0 .. s - 1         | wall in that window cell (row-major)                                     | 0   | 1   |
    | s .. 2s - 1        | fruit in that window cell                                                | 0   | 1   |
    | 2s .. 3s - 1       | another live agent in that window cell                                   | 0   | 1   |
    | 3s .. 4s - 1       | a hunter in that window cell (flash steps only)                          | 0   | 1   |
    | 4s                 | this is a flash step                                                     | 0   | 1   |
    | 4s + 1 + 2k, +1    | (drow, dcol) / (size - 1) to the k-th nearest hunter (flash steps only)  | -1  | 1   |

    ``state()`` (for a centralised critic) is ``Box(0, 1, (4 size^2 + 4 n_agents + 2,), float32)``: arena
    planes of walls, fruit, hunters and live agents, each agent's alive flag, respawn countdown and position,
    and the lightning phase and time (``global_state``).

    ## Action Space

    ``Discrete(5)``: 0 stay, 1 up, 2 right, 3 down, 4 left. Walls block; agents may share a cell.

    ## Rewards

    Per agent: +``fruit_reward`` (1) for each fruit it eats (a new one grows on a random free cell at once),
    -``death_penalty`` (4) when it is caught. The team return is the sum over agents.

    ## Starting State

    A new arena every episode: each cell is a wall with probability ``wall_density`` (0.08), resampled until
    the open cells are connected; hunters, then agents (each at least ``spawn_distance`` from every hunter),
    then ``n_fruit`` (4) fruit on random open cells. The first observation is a flash.

    ## Episode End

    A caught agent is terminated (and comes back after ``respawn_delay`` steps unless ``respawn=False``);
    every agent in ``agents`` is truncated after ``max_steps`` (200) steps. When no agent is alive at once
    the episode is over (``agents`` is empty; those waiting do not come back).

    ## Arguments

    ```python
    make_env(render_mode=None, n_agents=4, size=9, view_radius=2, n_hunters=2, n_fruit=4, wall_density=0.08,
             flash_every=4, hunter_speed=0.75, respawn=True, respawn_delay=4, spawn_distance=4,
             fruit_reward=1.0, death_penalty=4.0, max_steps=200, render_reveal=True)
    ```

    * ``respawn=False``: caught agents stay out; PettingZoo's ``parallel_api_test`` requires this, since it
      forbids an agent to come back once terminated.
    * ``render_mode``: ``"rgb_array"`` returns an ``(H, W, 3)`` uint8 frame (440 x 476 with the defaults);
      ``"human"`` opens a window at ``metadata["render_fps"]``.
    * ``render_reveal``: the frame shows the arena under the fog and the hunters between flashes (faint).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 8, "name": "storm_harvest_v0",
                "action_names": grid.ACTION_NAMES}
    title = "StormHarvest"
    global_state_of = staticmethod(global_state)
    render_size_of = staticmethod(render_size)
    draw_game = staticmethod(draw)

    def __init__(
        self,
        render_mode: str | None = None,
        n_agents: int = 4,
        size: int = 9,
        view_radius: int = 2,
        n_hunters: int = 2,
        n_fruit: int = 4,
        wall_density: float = 0.08,
        flash_every: int = 4,
        hunter_speed: float = 0.75,
        respawn: bool = True,
        respawn_delay: int = 4,
        spawn_distance: int = 4,
        fruit_reward: float = 1.0,
        death_penalty: float = 4.0,
        max_steps: int = 200,
        render_reveal: bool = True,
    ) -> None:
        from envs.games.window import check_render_mode

        check_render_mode(render_mode)
        check_min_ints(("n_agents", n_agents, 1), ("size", size, 5), ("view_radius", view_radius, 1),
                       ("n_hunters", n_hunters, 1), ("n_fruit", n_fruit, 1), ("flash_every", flash_every, 1),
                       ("respawn_delay", respawn_delay, 1), ("spawn_distance", spawn_distance, 0),
                       ("max_steps", max_steps, 1))
        if n_agents > len(AGENT_COLORS):
            raise ValueError(f"n_agents must be at most {len(AGENT_COLORS)}, got {n_agents}")
        if n_hunters + n_agents + n_fruit > size * size // 2:
            raise ValueError(f"n_agents + n_hunters + n_fruit must be at most size^2 / 2 = {size * size // 2}, "
                             f"got {n_agents + n_hunters + n_fruit}")
        if not 0.0 <= wall_density <= 0.3:
            raise ValueError(f"wall_density must be in [0, 0.3], got {wall_density!r}")
        if not 0.0 <= hunter_speed <= 1.0:
            raise ValueError(f"hunter_speed must be a probability in [0, 1], got {hunter_speed!r}")
        for name, value in (("fruit_reward", fruit_reward), ("death_penalty", death_penalty)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.params = HarvestParams(n_agents=n_agents, size=size, view_radius=view_radius, n_hunters=n_hunters,
                                    n_fruit=n_fruit, wall_density=float(wall_density), flash_every=flash_every,
                                    hunter_speed=float(hunter_speed), respawn=bool(respawn),
                                    respawn_delay=respawn_delay, spawn_distance=spawn_distance,
                                    fruit_reward=float(fruit_reward), death_penalty=float(death_penalty),
                                    max_steps=max_steps)
        self.render_mode = render_mode
        self.render_reveal = render_reveal
        self.possible_agents = [f"agent_{i}" for i in range(n_agents)]
        self.agents: list[str] = []
        self._observation_space = spaces.Box(-1.0, 1.0, shape=(obs_size(self.params),), dtype=np.float32)
        self._action_space = spaces.Discrete(5)
        self.state_space = spaces.Box(0.0, 1.0, shape=(state_size(self.params),), dtype=np.float32)
        self.np_random: np.random.Generator | None = None
        self.game: HarvestState | None = None
        """the plain state of the episode (``state()`` is PettingZoo's global observation)"""
        self._window: Any = None

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None or self.np_random is None:
            self.np_random = grid.make_rng(seed)
        self.game = reset_state(self.np_random, self.params)
        self.agents = list(self.possible_agents)
        obs = observe(self.game, self.params)
        if self.render_mode == "human":
            self.render()
        return ({agent: obs[i] for i, agent in enumerate(self.possible_agents)},
                {agent: {"respawned": False} for agent in self.possible_agents})

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        """Step every live agent. Returned dicts hold the agents that were live (those caught now included,
        with ``terminations`` True) and those that are back (reward 0, ``infos[agent]["respawned"]`` True).
        Actions of agents not in ``agents`` are ignored."""
        if self.game is None or not self.agents:
            raise RuntimeError("call reset() before step() (the episode is over)")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"step() needs an action for every agent in env.agents; missing {missing}")
        acts = np.array([int(actions.get(agent, STAY)) if agent in self.agents else STAY
                         for agent in self.possible_agents], dtype=np.int64)
        if ((acts < 0) | (acts >= 5)).any():
            raise ValueError(f"actions must be in 0..4 (stay, up, right, down, left), got {actions}")
        was_alive = self.game.alive
        self.game, rewards, caught, respawned = step_state(self.game, acts, self.np_random, self.params)
        truncated = self.game.t >= self.params.max_steps
        obs = observe(self.game, self.params)
        listed = [i for i, _ in enumerate(self.possible_agents) if was_alive[i] or respawned[i]]
        names = self.possible_agents
        observations = {names[i]: obs[i] for i in listed}
        reward_dict = {names[i]: float(rewards[i]) for i in listed}
        terminations = {names[i]: bool(caught[i]) for i in listed}
        truncations = {names[i]: truncated and not caught[i] for i in listed}
        infos = {names[i]: {"respawned": bool(respawned[i])} for i in listed}
        self.agents = [] if truncated else [names[i] for i in range(len(names)) if self.game.alive[i]]
        if self.render_mode == "human":
            self.render()
        return observations, reward_dict, terminations, truncations, infos


def make_env(**kwargs: Any) -> StormHarvestEnv:
    """A ``StormHarvestEnv`` (the ``mnemo/StormHarvest-v0`` entry point); ``kwargs`` are its constructor's."""
    return StormHarvestEnv(**kwargs)


# ------------------------------------------------------------------ baselines


def _forage(env: StormHarvestEnv, agent: str, obs: np.ndarray, rng: np.random.Generator,
            hunters: np.ndarray, radius: int) -> int:
    """Step toward the nearest fruit in the window (a random step when none is), keeping every cell it enters
    farther than ``radius`` + 1 from each of ``hunters`` (M, 2) where it can, else as far as it can."""
    game, params = env.game, env.params
    assert game is not None
    i = env.possible_agents.index(agent)
    r = params.view_radius
    side = 2 * r + 1
    cells = game.pos[i] + MOVES
    open_move = game.walls[cells[:, 0] + r, cells[:, 1] + r] == 0
    fruit = np.argwhere(obs[side * side : 2 * side * side].reshape(side, side) > 0) - r + game.pos[i]
    if len(fruit):
        goal = fruit[np.abs(fruit - game.pos[i]).sum(axis=1).argmin()]
        score = -np.abs(cells - goal).sum(axis=1).astype(np.float64)
    else:
        score = rng.random(len(cells))
        score[STAY] = -1.0
    if len(hunters):
        margin = np.abs(cells[:, None, :] - hunters[None, :, :]).sum(axis=2).min(axis=1) - (radius + 1)
        safe = margin > 0
        score = np.where(safe, score, -np.inf) if (safe & open_move).any() else margin.astype(np.float64)
    score = np.where(open_move, score, -np.inf)
    return int(score.argmax())


def scripted_policy(env: StormHarvestEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """A perfect-memory player: avoids where the last flash showed the hunters, widened by the steps since.

    Sees what its observations showed, remembered: the fruit in its window (``obs``) and the hunters at the
    last flash (``env.game.seen_hunters``, also right after a respawn between flashes, which is more than the
    agent saw), and its own position (``env.game.pos``), from which the remembered offsets follow. A hunter
    seen k steps ago can be k cells closer, so it keeps out of that radius plus one, and forages (nearest fruit
    in its window, else a random step) where that leaves it a choice.
    """
    since = env.game.t % env.params.flash_every
    return _forage(env, agent, obs, rng, env.game.seen_hunters, since)


def memoryless_policy(env: StormHarvestEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """The same forager without memory: it avoids the hunters on flash steps only (when ``obs`` shows them)."""
    lit = flash(env.game.t, env.params)
    return _forage(env, agent, obs, rng, env.game.hunters if lit else np.zeros((0, 2), dtype=np.int64), 0)


def oracle_policy(env: StormHarvestEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """The same forager seeing the hunters at every step (``env.game.hunters``): more than any agent sees."""
    return _forage(env, agent, obs, rng, env.game.hunters, 0)


def random_policy(env: StormHarvestEnv, agent: str, obs: np.ndarray, rng: np.random.Generator) -> int:
    """Uniform random actions drawn from ``rng``."""
    return int(rng.integers(5))
