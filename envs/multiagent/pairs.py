"""Pairs: two players take turns turning up two face-down cards; a turned card is shown for one turn only, so
the player who remembers where each card lies collects the pairs.

A turn-based ParallelEnv (``metadata["turn_based"] = True``): only the player to move gets an observation and
acts; the other waits, its memory held, and its reward for a pair the mover takes (-1) is paid while it waits.
Every card that is turned up is shown to each player during one turn only, that player's next; after that,
only a memory knows where it lies. A memoryless player can pair only the cards one turn shows it together.

Simulation (``reset_state``/``step_state``) and observation (``observe``/``action_mask``/``global_state``) are
numpy only; ``draw`` uses pygame, imported when a frame is drawn. The baselines at the end (random legal play,
the memoryless heuristic that ``mnemo match``'s ``scripted`` player uses, and perfect memory) are
``policy(env, agent, obs, rng) -> action`` functions like the other games'.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.env_args import check_min_ints
from envs.multiagent import grid
from envs.multiagent.grid_team_env import GridTeamEnv

PLAYERS = ("player_0", "player_1")
SLOTS = 4
"""the cards of a turn's view (``PairsState.pending``): 0 own face-up card (second flip), 1 own previous second
card, 2 and 3 the other player's last turn"""
MAX_PAIRS = 12
"""the most pairs a table holds (one colour per face value when drawn)"""
NONE = -1


@dataclass(frozen=True, slots=True)
class PairsParams:
    """The table: ``pairs`` face values, two cards of each, laid out in two rows."""

    pairs: int = 7

    @property
    def cards(self) -> int:
        return 2 * self.pairs


@dataclass(slots=True)
class PairsState:
    """One game at one step."""

    values: np.ndarray
    """(cards,) int64: each card's face value in [0, pairs), two cards of each"""
    on_table: np.ndarray
    """(cards,) bool: the cards not yet taken"""
    seen: np.ndarray
    """(cards,) bool: the cards turned up at least once (what a perfect memory knows the values of)"""
    turn: int
    """the player to move, 0 or 1"""
    face_up: int
    """the card the player to move turned first this turn; NONE before its first flip"""
    last_turn: tuple[int, int, int]
    """(player, first card, second card) of the turn finished last; NONEs before the first one (drawing only)"""
    pending: np.ndarray
    """(2, SLOTS) int64: per player, the cards its observations show (NONE: empty slot): the cards turned since
    the end of its previous turn, kept through its turn and cleared when the turn ends, so that every turned card
    is shown to each player during one turn only"""
    score: tuple[int, int]
    """pairs taken by each player"""
    t: int
    """flips made (env steps)"""


# ---------------------------------------------------------------- simulation


def reset_state(rng: np.random.Generator, params: PairsParams) -> PairsState:
    """A shuffled table, every card face down; ``player_0`` moves first."""
    values = rng.permutation(np.repeat(np.arange(params.pairs, dtype=np.int64), 2))
    cards = params.cards
    return PairsState(values=values, on_table=np.ones(cards, dtype=bool), seen=np.zeros(cards, dtype=bool),
                      turn=0, face_up=NONE, last_turn=(NONE, NONE, NONE),
                      pending=np.full((2, SLOTS), NONE, dtype=np.int64), score=(0, 0), t=0)


def action_mask(state: PairsState) -> np.ndarray:
    """(cards,) int8: 1 for each card the player to move may turn (on the table, not already face up)."""
    mask = state.on_table.copy()
    if state.face_up != NONE:
        mask[state.face_up] = False
    return mask.astype(np.int8)


def step_state(state: PairsState, card: int) -> tuple[PairsState, tuple[float, float], bool]:
    """The player to move turns ``card``.

    The first flip of a turn leaves it face up; the second ends the turn: two equal values are a pair, taken
    by the mover (+1 to it, -1 to the other), and either way the other player moves next (a pair earns no
    extra turn, so a player's view of what was turned since its last turn has a fixed number of slots).

    Args:
        state: the current state (not modified).
        card: a card ``action_mask`` allows.

    Returns:
        (next state, (player_0's reward, player_1's reward), whether every pair is taken).

    Raises:
        ValueError: ``card`` is not a legal flip.
    """
    if not (0 <= card < len(state.values)) or not action_mask(state)[card]:
        raise ValueError(f"card {card} cannot be turned: the legal cards are "
                         f"{np.flatnonzero(action_mask(state)).tolist()} (action_mask)")
    me, other = state.turn, 1 - state.turn
    pending = state.pending.copy()
    seen = state.seen.copy()
    seen[card] = True
    rewards = [0.0, 0.0]
    if state.face_up == NONE:  # first flip: the card stays face up for the second
        pending[me, 0] = card  # the rest stays shown at the second flip: it is this turn's view
        pending[other, 2] = card
        after = PairsState(state.values, state.on_table, seen, me, card, state.last_turn, pending, state.score,
                           state.t + 1)
        return after, (0.0, 0.0), False
    pending[me] = NONE  # the turn is over: what it showed is gone, but for the card just turned
    pending[me, 1] = card
    pending[other, 3] = card
    on_table, score = state.on_table, list(state.score)
    if state.values[card] == state.values[state.face_up]:
        on_table = on_table.copy()
        on_table[[card, state.face_up]] = False
        score[me] += 1
        rewards[me], rewards[other] = 1.0, -1.0
    after = PairsState(state.values, on_table, seen, other, NONE, (me, state.face_up, card), pending,
                       (score[0], score[1]), state.t + 1)
    return after, (rewards[0], rewards[1]), not on_table.any()


# --------------------------------------------------------------- observation


CARD_FEATURES = 4
"""per card, beside its face value one-hot: on the table, face up this turn, the face-up card's partner in view,
a pair in view"""


def observation_size(params: PairsParams) -> int:
    """cards x (CARD_FEATURES + pairs) (one row per card) + 1 (second flip) + pairs (the face-up card's value)."""
    return params.cards * (CARD_FEATURES + params.pairs) + 1 + params.pairs


def observe(state: PairsState, player: int, params: PairsParams) -> np.ndarray:
    """What ``player`` sees, ``(observation_size,)`` float32 in {0, 1}: one row per card, then the turn.

    Row ``c`` (``CARD_FEATURES + pairs`` values): ``[on table, face up this turn, partner in view, pair in view,
    face value one-hot]``. The face value is given only while the card is in this turn's view
    (``PairsState.pending``: the player's own first card at its second flip, its own second card of its previous
    turn, the other player's cards since then); *partner in view* marks, at a second flip, a card in view with the
    face-up card's value; *pair in view* marks a card on the table whose value another card in view shows too.
    After the rows: ``[second flip (1), the face-up card's value one-hot (pairs)]``. A card leaves the view when
    the turn ends; its value is not shown again unless it is turned again, so only a memory can find it later.
    """
    cards, pairs = params.cards, params.pairs
    rows = np.zeros((cards, CARD_FEATURES + pairs), dtype=np.float32)
    rows[:, 0] = state.on_table
    turn_value = np.zeros(pairs, dtype=np.float32)
    face_up = state.face_up if state.turn == player else NONE
    if face_up != NONE:
        rows[face_up, 1] = 1.0
        turn_value[state.values[face_up]] = 1.0
    view = [card for card in dict.fromkeys(state.pending[player].tolist()) if card != NONE]  # distinct cards
    shown = Counter(int(state.values[card]) for card in view)  # how many cards in view show each value
    for card in view:
        rows[card, CARD_FEATURES + state.values[card]] = 1.0
        if face_up != NONE and card != face_up and state.values[card] == state.values[face_up]:
            rows[card, 2] = 1.0
        if state.on_table[card] and shown[int(state.values[card])] > 1:
            rows[card, 3] = 1.0
    return np.concatenate([rows.ravel(), [float(face_up != NONE)], turn_value]).astype(np.float32)


def global_state(state: PairsState, params: PairsParams) -> np.ndarray:
    """The whole table for a centralised critic, float32 in [0, 1]: ``[on_table (cards), seen (cards), face_up
    one-hot (cards), each card's face value one-hot while on the table (cards x pairs), player_0 to move (1),
    each player's pairs / pairs (2)]``."""
    cards, pairs = params.cards, params.pairs
    face_up = np.zeros(cards, dtype=np.float32)
    if state.face_up != NONE:
        face_up[state.face_up] = 1.0
    faces = np.zeros((cards, pairs), dtype=np.float32)
    faces[np.arange(cards), state.values] = state.on_table
    return np.concatenate([state.on_table, state.seen, face_up, faces.ravel(),
                           [float(state.turn == 0), state.score[0] / pairs, state.score[1] / pairs]]
                          ).astype(np.float32)


def state_size(params: PairsParams) -> int:
    return 3 * params.cards + params.cards * params.pairs + 3


# ------------------------------------------------------------------- drawing

_CARD_W, _CARD_H, _GAP, _HEADER, _FOOTER = 68, 96, 12, 56, 28
_FACE_COLOURS = ((220, 70, 70), (240, 160, 40), (230, 220, 60), (90, 190, 80), (60, 170, 200), (80, 110, 230),
                 (160, 90, 220), (230, 110, 190), (150, 110, 70), (120, 200, 170), (200, 200, 200), (255, 140, 120))
_PLAYER_COLOURS = ((240, 150, 60), (90, 200, 120))


def render_size(params: PairsParams) -> tuple[int, int]:
    cols = params.pairs
    return cols * (_CARD_W + _GAP) + _GAP, _HEADER + 2 * (_CARD_H + _GAP) + _GAP + _FOOTER


def _card_rect(card: int, params: PairsParams) -> tuple[int, int, int, int]:
    row, col = divmod(card, params.pairs)
    return _GAP + col * (_CARD_W + _GAP), _HEADER + _GAP + row * (_CARD_H + _GAP), _CARD_W, _CARD_H


def draw(surface: Any, state: PairsState, params: PairsParams, reveal: bool = True) -> None:
    """Draw the table on a pygame ``surface`` of ``render_size(params)``: each player's pairs over the table (the
    player to move underlined), the card face up this turn (framed in the mover's colour) and the two of the turn
    just finished shown with their face values (a pair just taken framed in the taker's colour), every other
    card face down.

    Args:
        reveal: also print each face-down card's value small in its corner (the spectator's view; the players
            never see it).
    """
    from envs.games.text import blit_text
    from envs.games.window import import_pygame

    pygame = import_pygame()
    surface.fill((22, 78, 50))
    w, _ = surface.get_size()
    for p, x in ((0, w // 4), (1, 3 * w // 4)):
        colour = _PLAYER_COLOURS[p]
        blit_text(surface, f"{PLAYERS[p]}: {state.score[p]}", (x, _HEADER // 2), 26, colour)
        if state.turn == p and state.on_table.any():
            pygame.draw.line(surface, colour, (x - 60, _HEADER - 10), (x + 60, _HEADER - 10), 3)
    mover, first, second = state.last_turn
    shown = {c for c in (first, second, state.face_up) if c != NONE}
    for card in range(params.cards):
        rect = pygame.Rect(*_card_rect(card, params))
        value = int(state.values[card])
        if card in shown:
            taken = not state.on_table[card]
            pygame.draw.rect(surface, (245, 240, 225), rect, border_radius=8)
            pygame.draw.rect(surface, _FACE_COLOURS[value % len(_FACE_COLOURS)], rect.inflate(-12, -12),
                             border_radius=6)
            blit_text(surface, str(value + 1), rect.center, 34, (20, 20, 20))
            if card == state.face_up:  # turned this turn: the mover's colour
                pygame.draw.rect(surface, _PLAYER_COLOURS[state.turn], rect, width=5, border_radius=8)
            elif taken:  # the pair just taken: the taker's colour
                pygame.draw.rect(surface, _PLAYER_COLOURS[mover], rect, width=3, border_radius=8)
        elif state.on_table[card]:
            pygame.draw.rect(surface, (40, 60, 150), rect, border_radius=8)
            pygame.draw.rect(surface, (190, 200, 240), rect.inflate(-10, -10), width=2, border_radius=6)
            if reveal:
                blit_text(surface, str(value + 1), (rect.right - 12, rect.bottom - 14), 16, (150, 160, 210))
        else:
            pygame.draw.rect(surface, (36, 96, 64), rect, width=2, border_radius=8)
    blit_text(surface, f"flip {state.t}", (w // 2, surface.get_size()[1] - _FOOTER // 2 - 2), 18, (200, 220, 200))


# ----------------------------------------------------------------------- env


class PairsEnv(GridTeamEnv):
    """Pairs (Concentration): ``player_0`` and ``player_1`` take turns turning up two face-down cards.

    ## Description

    ``pairs`` face values, two cards of each, lie shuffled face down in two rows. A turn is two env steps by
    the same player: it turns one card (which stays face up), then a second; two equal values are a pair, which
    the player takes. Either way the other player moves next. Each turned card is shown to each player during
    one turn: the mover's first card at its second flip, its second card during its next turn, and both to the
    other player during its next turn. The game is won by remembering where the shown cards lie: a player that
    knows both cards of a value takes that pair, and one that knows the partner of the card it just turned
    takes it on its second flip.

    Turn-based (``metadata["turn_based"]``): ``reset`` and ``step`` return an observation only for the player
    to move (both players at the end); ``env.agents`` lists both throughout. ``step`` takes the mover's action
    only.

    ## Observation Space

    ``Dict(observation=Box(0, 1, (cards (4 + pairs) + 1 + pairs,), float32), action_mask=Box(0, 1, (cards,),
    int8))``, PettingZoo's masked layout (``observe``):

    | Part          | Size                | Meaning                                                   |
    |---------------|---------------------|-----------------------------------------------------------|
    | card rows     | cards x (4 + pairs) | per card: on table, face up this turn, partner in view,   |
    |               |                     | pair in view, face value one-hot (while in view)          |
    | second flip   | 1                   | 1 when the player's first card of this turn is face up    |
    | face-up value | pairs               | the face-up card's value one-hot (second flip)            |

    *Partner in view* marks, at a second flip, a card in view with the face-up card's value; *pair in view* a card
    on the table whose value another card in view shows too.
    The view (the face values shown) is the same at both flips of a turn and empty after it: the player's own
    face-up card, its own second card of its previous turn, the two cards the other player turned since.

    ``action_mask`` is 1 for each card on the table except the one face up. ``state()`` is the whole table
    (``global_state``), ``Box(0, 1, (3 cards + cards x pairs + 3,), float32)``.

    ## Action Space

    ``Discrete(cards)``: the card to turn, numbered row by row. An illegal card raises ``ValueError``.

    ## Rewards

    Zero-sum per pair: +1 to the player that takes it, -1 to the other (paid while it waits).
    ``infos[agent]["score"]`` is ``{"player_0": pairs, "player_1": pairs}`` so far.

    ## Starting State

    A shuffled table; ``player_0`` moves first (``mnemo match`` alternates the sides).

    ## Episode End

    Terminated for both when every pair is taken; truncated for both after ``max_steps`` flips.

    ## Arguments

    ```python
    make_env(render_mode=None, pairs=7, max_steps=100, render_reveal=True)
    ```

    * ``pairs``: face values (2-12); an odd number cannot end level once every pair is taken.
    * ``render_mode``: ``"rgb_array"`` returns the table (``render_size``) as uint8; ``"human"`` opens a
      window at ``metadata["render_fps"]``. ``render_reveal`` prints face-down values small for a spectator.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 2, "name": "pairs_v0", "turn_based": True}
    title = "Pairs"
    draw_game = staticmethod(draw)

    def __init__(self, render_mode: str | None = None, pairs: int = 7, max_steps: int = 100,
                 render_reveal: bool = True) -> None:
        from envs.games.window import check_render_mode

        check_render_mode(render_mode)
        check_min_ints(("pairs", pairs, 2), ("max_steps", max_steps, 2))
        if pairs > MAX_PAIRS:
            raise ValueError(f"pairs must be at most {MAX_PAIRS} (one colour per face value), got {pairs}")
        self.params = PairsParams(pairs=pairs)
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.render_reveal = render_reveal
        self.possible_agents = list(PLAYERS)
        self.agents: list[str] = []
        cards = self.params.cards
        self._observation_space = spaces.Dict({
            "observation": spaces.Box(0.0, 1.0, shape=(observation_size(self.params),), dtype=np.float32),
            "action_mask": spaces.Box(0, 1, shape=(cards,), dtype=np.int8),
        })
        self._action_space = spaces.Discrete(cards)
        self.state_space = spaces.Box(0.0, 1.0, shape=(state_size(self.params),), dtype=np.float32)
        self.metadata = {**type(self).metadata, "action_names": tuple(f"card {c}" for c in range(cards))}
        self.np_random: np.random.Generator | None = None
        self.game: PairsState | None = None
        """the plain state of the game (``state()`` is PettingZoo's global observation)"""
        self._window: Any = None

    @staticmethod
    def render_size_of(params: PairsParams) -> tuple[int, int]:
        return render_size(params)

    @staticmethod
    def global_state_of(game: PairsState, params: PairsParams) -> np.ndarray:
        return global_state(game, params)

    def observation_space(self, agent: str) -> spaces.Dict:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def _observation(self, agent: str) -> dict[str, np.ndarray]:
        game = self.game
        assert game is not None
        player = PLAYERS.index(agent)
        # A player not to move sees it only at the end (its final observation): the cards it could turn next.
        mask = action_mask(game) if game.turn == player else game.on_table.astype(np.int8)
        return {"observation": observe(game, player, self.params), "action_mask": mask}

    def _infos(self) -> dict[str, dict[str, Any]]:
        game = self.game
        assert game is not None
        score = dict(zip(PLAYERS, game.score, strict=True))
        return {agent: {"score": dict(score)} for agent in self.possible_agents}

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        if seed is not None or self.np_random is None:
            self.np_random = grid.make_rng(seed)
        self.game = reset_state(self.np_random, self.params)
        self.agents = list(self.possible_agents)
        if self.render_mode == "human":
            self.render()
        mover = PLAYERS[self.game.turn]
        return {mover: self._observation(mover)}, self._infos()

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        game = self.game
        if game is None or not self.agents:
            raise RuntimeError("call reset() before step() (the episode is over)")
        mover = PLAYERS[game.turn]
        if mover not in actions:
            raise ValueError(f"it is {mover}'s turn: step() needs {{{mover!r}: card}}, got {sorted(actions)}")
        waiting = [agent for agent in actions if agent != mover]
        if waiting:
            raise ValueError(f"{waiting} cannot act while waiting: it is {mover}'s turn (only agents with an "
                             f"observation act)")
        self.game, by_player, terminated = step_state(game, int(actions[mover]))
        truncated = not terminated and self.game.t >= self.max_steps
        rewards = {agent: by_player[PLAYERS.index(agent)] for agent in self.agents}
        terminations = dict.fromkeys(self.agents, terminated)
        truncations = dict.fromkeys(self.agents, truncated)
        if terminated or truncated:  # the final observation of both
            obs = {agent: self._observation(agent) for agent in self.agents}
            self.agents = []
        else:
            obs = {PLAYERS[self.game.turn]: self._observation(PLAYERS[self.game.turn])}
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminations, truncations, self._infos()


def make_env(**kwargs: Any) -> PairsEnv:
    """A ``PairsEnv`` (the ``mnemo/Pairs-v0`` entry point); ``kwargs`` are its constructor's arguments."""
    return PairsEnv(**kwargs)


# ------------------------------------------------------------------ baselines


def _decode(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[int, int], int]:
    """From one observation: the legal cards' mask (bool), the cards on the table its view shows with their face
    values, and the card face up this turn (NONE at a first flip)."""
    mask = np.asarray(obs["action_mask"]).astype(bool)
    cards = mask.size
    pairs = cards // 2
    rows = np.asarray(obs["observation"])[:cards * (CARD_FEATURES + pairs)].reshape(cards, CARD_FEATURES + pairs)
    faces = rows[:, CARD_FEATURES:]
    shown = {int(c): int(faces[c].argmax()) for c in np.flatnonzero(faces.any(axis=1) & (rows[:, 0] > 0.5))}
    face_up = int(rows[:, 1].argmax()) if rows[:, 1].any() else NONE
    return mask, shown, face_up


def _choose(mask: np.ndarray, known: dict[int, int], face_up: int, face_value: int,
            rng: np.random.Generator) -> int:
    """The move of a player that knows the face values ``known`` (card -> value, cards on the table): a known
    pair (first flip) or the known partner of the face-up card (second flip), else a card it knows nothing of
    (a random legal card when it knows them all)."""
    if face_up == NONE:
        by_value: dict[int, list[int]] = {}
        for card, value in known.items():
            by_value.setdefault(value, []).append(card)
        for cards in by_value.values():
            if len(cards) == 2:
                return min(cards)
    else:
        for card, value in known.items():
            if value == face_value and card != face_up and mask[card]:
                return card
    unknown = [c for c in np.flatnonzero(mask) if int(c) not in known]
    return int(rng.choice(unknown if unknown else np.flatnonzero(mask)))


def scripted_player(agent: str, obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """The memoryless heuristic (``mnemo match``'s ``scripted`` player): it reads only the observation it is
    given, this turn's view. It takes a pair whose two cards the view shows, or on its second flip the partner
    of its face-up card if the view shows it; otherwise it turns a card the view does not show."""
    mask, shown, face_up = _decode(obs)
    face_value = shown.get(face_up, NONE)
    return _choose(mask, {c: v for c, v in shown.items() if c != face_up}, face_up, face_value, rng)


def heuristic_policy(env: PairsEnv, agent: str, obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """``scripted_player`` as a baseline policy (reads only ``obs``)."""
    return scripted_player(agent, obs, rng)


def random_policy(env: PairsEnv, agent: str, obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """A uniformly random legal card (``obs["action_mask"]``), drawn from ``rng``."""
    return int(rng.choice(np.flatnonzero(obs["action_mask"])))


def perfect_memory_policy(env: PairsEnv, agent: str, obs: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """A player that remembers every card shown so far: ``_choose`` over the cards on the table that have been
    turned up (read from the state, ``seen``), the face-up card's value included."""
    game = env.game
    assert game is not None
    mask = np.asarray(obs["action_mask"]).astype(bool)
    known = {int(c): int(game.values[c]) for c in np.flatnonzero(game.seen & game.on_table) if c != game.face_up}
    face_value = int(game.values[game.face_up]) if game.face_up != NONE else NONE
    return _choose(mask, known, game.face_up, face_value, rng)


def play_game(env: PairsEnv, policies: tuple[Any, Any], seed: int) -> tuple[int, int]:
    """One game of ``policies[0]`` (``player_0``) against ``policies[1]``, each a baseline policy drawing from a
    generator seeded ``seed``; the pairs each took."""
    rng = np.random.default_rng(seed)
    obs, infos = env.reset(seed=seed)
    while env.agents:
        actions = {agent: policies[PLAYERS.index(agent)](env, agent, obs[agent], rng) for agent in obs}
        obs, _, _, _, infos = env.step(actions)
    score = infos[PLAYERS[0]]["score"]
    return score[PLAYERS[0]], score[PLAYERS[1]]
