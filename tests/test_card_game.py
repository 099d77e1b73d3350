"""Pairs (envs/multiagent/pairs.py), the turn-based card game: its rules by hand, the turn protocol, masks that
never allow an illegal card, observations that show each turned card once and never a face-down value, seeding,
drawing, and its players (random legal, the memoryless heuristic, perfect memory)."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from envs.multiagent import MULTIAGENT_ENVS
from envs.multiagent import pairs as game
from envs.multiagent.pairs import (
    NONE,
    PLAYERS,
    PairsParams,
    action_mask,
    make_env,
    observe,
    perfect_memory_policy,
    play_game,
    random_policy,
    reset_state,
    scripted_player,
    step_state,
)

P0, P1 = PLAYERS


def table(values: list[int]):
    """A state with the face values ``values`` laid out in card order (player_0 to move)."""
    params = PairsParams(pairs=len(values) // 2)
    state = reset_state(np.random.default_rng(0), params)
    state.values = np.array(values, dtype=np.int64)
    return state, params


def view_of(obs: np.ndarray, params: PairsParams) -> dict[int, int]:
    """card -> face value for each card an observation's rows show a value of (checking the layout on the way)."""
    cards, pairs = params.cards, params.pairs
    rows = obs[:cards * (game.CARD_FEATURES + pairs)].reshape(cards, game.CARD_FEATURES + pairs)
    faces = rows[:, game.CARD_FEATURES:]
    assert set(faces.sum(axis=1).tolist()) <= {0.0, 1.0}
    return {int(c): int(faces[c].argmax()) for c in np.flatnonzero(faces.any(axis=1))}


def turn_of(obs: np.ndarray, params: PairsParams) -> tuple[float, int | None, int | None, list[int]]:
    """(the second-flip flag, the face-up card's row, the face-up value, the rows marked as its partner)."""
    cards, pairs = params.cards, params.pairs
    rows = obs[:cards * (game.CARD_FEATURES + pairs)].reshape(cards, game.CARD_FEATURES + pairs)
    second, value = obs[cards * (game.CARD_FEATURES + pairs)], obs[-pairs:]
    face_up = np.flatnonzero(rows[:, 1]).tolist()
    assert len(face_up) <= 1 and value.sum() == len(face_up) == second
    return (float(second), face_up[0] if face_up else None, int(value.argmax()) if value.any() else None,
            np.flatnonzero(rows[:, 2]).tolist())


# --------------------------------------------------------------------------- rules


def test_a_turn_by_hand_pair_and_miss():
    state, _ = table([0, 1, 2, 0, 1, 2])
    s1, rewards, over = step_state(state, 0)  # player_0 turns card 0 (value 0): face up, still its turn
    assert (s1.turn, s1.face_up, rewards, over) == (0, 0, (0.0, 0.0), False)
    assert action_mask(s1).tolist() == [0, 1, 1, 1, 1, 1]  # not the face-up card again
    s2, rewards, over = step_state(s1, 3)  # card 3 is the other 0: a pair for player_0
    assert rewards == (1.0, -1.0) and not over and s2.score == (1, 0)
    assert s2.on_table.tolist() == [False, True, True, False, True, True]
    assert (s2.turn, s2.face_up, s2.last_turn) == (1, NONE, (0, 0, 3))  # no extra turn for a pair
    s3, _, _ = step_state(s2, 1)
    s4, rewards, over = step_state(s3, 2)  # 1 and 2: a miss, both stay, player_0's turn
    assert rewards == (0.0, 0.0) and s4.on_table.sum() == 4 and s4.turn == 0 and s4.score == (1, 0)
    s5, _, _ = step_state(s4, 1)
    s6, rewards, over = step_state(s5, 4)
    s7, _, _ = step_state(s6, 2)
    s8, rewards, over = step_state(s7, 5)  # player_1 takes the last pair
    assert over and rewards == (-1.0, 1.0) and s8.score == (2, 1) and not s8.on_table.any()
    assert state.on_table.all() and state.face_up == NONE  # step_state never changes its input


@pytest.mark.parametrize("card", [-1, 6, 0])
def test_an_illegal_card_raises(card):
    state, _ = table([0, 1, 2, 0, 1, 2])
    if card == 0:
        state, _, _ = step_state(state, 0)  # card 0 is face up now
    with pytest.raises(ValueError, match="cannot be turned"):
        step_state(state, card)


def test_masks_allow_exactly_the_cards_on_the_table_but_the_face_up_one():
    env = make_env(pairs=5)
    rng = np.random.default_rng(0)
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        while env.agents:
            (agent,) = obs  # one mover
            mask = obs[agent]["action_mask"]
            expected = env.game.on_table.copy()
            if env.game.face_up != NONE:
                expected[env.game.face_up] = False
            assert mask.dtype == np.int8 and np.array_equal(mask.astype(bool), expected)
            for illegal in np.flatnonzero(mask == 0):  # every card the mask forbids is refused
                with pytest.raises(ValueError):
                    copy.deepcopy(env).step({agent: int(illegal)})
            obs, *_ = env.step({agent: random_policy(env, agent, obs[agent], rng)})


# --------------------------------------------------------------------------- turns


def test_only_the_mover_observes_and_acts_and_both_end_together():
    env = make_env(pairs=3)
    obs, infos = env.reset(seed=1)
    assert list(obs) == [P0] and env.agents == [P0, P1] and set(infos) == {P0, P1}
    with pytest.raises(ValueError, match="waiting"):
        env.step({P0: 0, P1: 1})
    with pytest.raises(ValueError, match="player_0's turn"):
        env.step({P1: 1})
    movers, rng = [], np.random.default_rng(0)
    while env.agents:
        (agent,) = obs
        movers.append(agent)
        obs, rewards, terms, truncs, infos = env.step({agent: random_policy(env, agent, obs[agent], rng)})
        assert set(rewards) == set(terms) == set(truncs) == {P0, P1}  # the waiting player too
        assert sum(rewards.values()) == 0.0  # zero-sum
        assert infos[P0]["score"] == {P0: env.game.score[0], P1: env.game.score[1]}
    assert movers[:4] == [P0, P0, P1, P1] and all(movers[i] == movers[i + 1] for i in range(0, len(movers), 2))
    assert set(obs) == {P0, P1} and all(terms.values()) and not any(truncs.values())  # final obs of both
    with pytest.raises(RuntimeError):
        env.step({P0: 0})


def test_time_limit_truncates_both():
    env = make_env(pairs=6, max_steps=5)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    while env.agents:
        (agent,) = obs
        obs, _, terms, truncs, _ = env.step({agent: random_policy(env, agent, obs[agent], rng)})
    assert env.game.t == 5 and all(truncs.values()) and not any(terms.values()) and set(obs) == {P0, P1}


# --------------------------------------------------------------------------- observations


def test_each_turned_card_is_shown_to_each_player_during_one_turn_only():
    """Every flip's (card, value) is shown to each player during one of its turns (the one after it; the final
    observations count as one more), never in more views than it was turned; nothing else is ever shown."""
    env = make_env(pairs=6)
    rng = np.random.default_rng(2)
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        flips: list[tuple[int, int]] = []  # (card, value), both players' flips
        views: dict[int, dict[int, set]] = {0: {}, 1: {}}  # player -> turn -> (card, value) shown in it
        turns = [0, 0]
        while True:
            for agent, o in obs.items():
                player = PLAYERS.index(agent)
                if not env.agents or env.game.face_up == NONE:  # a turn begins (or the final observation)
                    turns[player] += 1
                views[player].setdefault(turns[player], set()).update(view_of(o["observation"], env.params).items())
            if not env.agents:
                break
            (agent,) = obs
            card = random_policy(env, agent, obs[agent], rng)
            flips.append((card, int(env.game.values[card])))
            obs, *_ = env.step({agent: card})
        flipped = Counter(flips)
        for player in (0, 1):
            shown = Counter(item for view in views[player].values() for item in view)
            # each flip shows in one view; a card turned twice within one turn's view shows once there
            assert set(shown) == set(flipped) and all(shown[item] <= flipped[item] for item in shown)


def test_face_down_values_never_reach_an_observation():
    """Two deals that differ only in cards nobody has turned give the same observations, step for step."""
    params = PairsParams(pairs=5)
    state, _ = table([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    other = copy.deepcopy(state)
    other.values = np.array([0, 1, 3, 4, 2, 0, 1, 4, 2, 3])  # cards 2, 3, 4, 7, 8, 9 changed
    for card in (0, 5, 1, 6):  # two pairs taken by turning only unchanged cards
        for player in (0, 1):
            assert np.array_equal(observe(state, player, params), observe(other, player, params))
        state, _, _ = step_state(state, card)
        other, _, _ = step_state(other, card)
    for player in (0, 1):
        assert np.array_equal(observe(state, player, params), observe(other, player, params))
    turned, _, _ = step_state(state, 2)  # now a changed card is turned: its value shows
    turned_other, _, _ = step_state(other, 2)
    assert not np.array_equal(observe(turned, 0, params), observe(turned_other, 0, params))


def test_a_turns_view_is_what_was_turned_since_the_players_last_turn():
    env = make_env(pairs=4)
    obs, _ = env.reset(seed=0)
    value = env.game.values
    env.step({P0: 0})
    obs, *_ = env.step({P0: 1})  # player_1's first observation: both of player_0's cards, not before
    assert view_of(obs[P1]["observation"], env.params) == {0: value[0], 1: value[1]}
    assert turn_of(obs[P1]["observation"], env.params) == (0.0, None, None, [])  # a first flip
    obs, *_ = env.step({P1: 2})  # its second flip: its face-up card, and the turn's view still
    assert view_of(obs[P1]["observation"], env.params) == {2: value[2], 0: value[0], 1: value[1]}
    partners = [c for c in (0, 1) if value[c] == value[2]]
    assert turn_of(obs[P1]["observation"], env.params) == (1.0, 2, value[2], partners)
    if value[2] == value[3] or value[0] == value[1]:
        pytest.skip("this deal pairs cards the test turns")
    obs, *_ = env.step({P1: 3})
    assert view_of(obs[P0]["observation"], env.params) == {1: value[1], 2: value[2], 3: value[3]}
    env.step({P0: 4})
    obs, *_ = env.step({P0: 5})  # player_1's next turn: its own last card, then player_0's; 0, 1, 2 are gone
    assert view_of(obs[P1]["observation"], env.params) == {3: value[3], 4: value[4], 5: value[5]}


def test_the_partner_in_view_is_marked_only_at_a_second_flip():
    state, params = table([0, 1, 2, 0, 1, 2])
    state, _, _ = step_state(state, 0)  # player_0: 0 then 1, a miss
    state, _, _ = step_state(state, 1)
    obs = observe(state, 1, params)  # player_1 sees both at its first flip, no partner marked yet
    assert view_of(obs, params) == {0: 0, 1: 1} and turn_of(obs, params) == (0.0, None, None, [])
    assert observe(state, 0, params)[-params.pairs - 1:].sum() == 0  # the waiting player has no face-up card
    state, _, _ = step_state(state, 4)  # player_1 turns card 4 (value 1): card 1 is its partner in view
    obs = observe(state, 1, params)
    assert turn_of(obs, params) == (1.0, 4, 1, [1])
    assert pairs_in_view(obs, params) == [1, 4]  # a pair the view shows: the partner and the face-up card
    assert turn_of(observe(state, 0, params), params)[1:] == (None, None, [])  # only the mover has a face-up card
    state, _, _ = step_state(state, 2)  # player_1 misses (value 2): player_0 sees 1 and 4 (value 1) and 2
    obs = observe(state, 0, params)
    assert view_of(obs, params) == {1: 1, 4: 1, 2: 2} and turn_of(obs, params) == (0.0, None, None, [])
    assert pairs_in_view(obs, params) == [1, 4]  # at a first flip too: a pair it can take
    state, _, _ = step_state(state, 1)
    state, _, _ = step_state(state, 4)  # player_0 takes it: the view shows the pair, gone from the table
    assert pairs_in_view(observe(state, 1, params), params) == []


def pairs_in_view(obs: np.ndarray, params: PairsParams) -> list[int]:
    """The rows an observation marks as one of a pair in view."""
    rows = obs[:params.cards * (game.CARD_FEATURES + params.pairs)].reshape(params.cards, -1)
    return np.flatnonzero(rows[:, 3]).tolist()


def test_spaces_hold_observations_and_state():
    env = make_env()
    space, rng = env.observation_space(P0), np.random.default_rng(0)
    assert env.observation_space(P1) is space and env.action_space(P1) is env.action_space(P0)
    assert space["observation"].dtype == np.float32 and space["action_mask"].dtype == np.int8
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        while True:
            assert all(space.contains(o) for o in obs.values())
            assert env.state_space.contains(env.state())
            if not env.agents:
                break
            (agent,) = obs
            obs, *_ = env.step({agent: random_policy(env, agent, obs[agent], rng)})


# --------------------------------------------------------------------------- seeding


def trajectory(seed: int, policy_seed: int = 0) -> list:
    env = make_env()
    rng = np.random.default_rng(policy_seed)
    obs, _ = env.reset(seed=seed)
    out = [{a: {k: v.copy() for k, v in o.items()} for a, o in obs.items()}]
    while env.agents:
        (agent,) = obs
        obs, rewards, terms, truncs, _ = env.step({agent: random_policy(env, agent, obs[agent], rng)})
        out.append(({a: {k: v.copy() for k, v in o.items()} for a, o in obs.items()}, rewards, terms, truncs))
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.array_equal(a, b))


def test_same_seed_same_game_and_other_seeds_other_deals():
    first, again = trajectory(3), trajectory(3)
    assert len(first) == len(again) and all(_same(a, b) for a, b in zip(first, again, strict=True))
    deals = {tuple(reset_state(np.random.default_rng(s), PairsParams()).values) for s in range(20)}
    assert len(deals) == 20
    env = make_env()
    env.reset(seed=3)
    twin = make_env()
    twin.reset(seed=4)
    assert not np.array_equal(env.game.values, twin.game.values)


def test_snapshot_resumes_exactly():
    env = make_env()
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(7):
        (agent,) = obs
        obs, *_ = env.step({agent: random_policy(env, agent, obs[agent], rng)})
    twin, twin_obs = copy.deepcopy(env), copy.deepcopy(obs)
    while env.agents:
        (agent,) = obs
        card = random_policy(env, agent, obs[agent], rng)
        a, b = env.step({agent: card}), twin.step({agent: card})
        assert _same(a[0], b[0]) and a[1:4] == b[1:4]
        obs = a[0]
    assert twin_obs is not None and not twin.agents


# --------------------------------------------------------------------------- drawing


def test_rgb_array_frame_headless():
    pytest.importorskip("pygame")
    env = make_env(render_mode="rgb_array", pairs=4)
    assert env._window is None
    env.reset(seed=0)
    blank = env.render()
    env.step({P0: 0})
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (*game.render_size(env.params)[::-1], 3)
    assert not np.array_equal(frame, blank)  # the turned card is drawn face up
    hidden = make_env(render_mode="rgb_array", pairs=4, render_reveal=False)
    hidden.reset(seed=0)
    assert not np.array_equal(hidden.render(), blank)  # reveal prints face-down values for a spectator
    env.close()
    assert env._window is None


def test_stepping_imports_no_pygame_and_the_env_is_registered():
    assert MULTIAGENT_ENVS["mnemo/Pairs-v0"] == "envs.multiagent.pairs:make_env"
    code = ("import sys\n"
            "from envs.multiagent.pairs import make_env\n"
            "env = make_env(); obs, _ = env.reset(seed=0); env.step({'player_0': 0}); env.state()\n"
            "assert 'pygame' not in sys.modules, 'pygame was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("kwargs", "message"), [({"pairs": 1}, "pairs"), ({"pairs": 13}, "at most 12"),
                                                 ({"max_steps": 0}, "max_steps"), ({"render_mode": "ansi"}, "render")])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env(**kwargs)


# --------------------------------------------------------------------------- players


def score_rate(policy_a, policy_b, games: int, pairs: int = 7) -> float:
    """policy_a's score rate (win 1, draw 1/2) over ``games``, sides alternating."""
    env, total = make_env(pairs=pairs), 0.0
    for g in range(games):
        if g % 2 == 0:
            mine, theirs = play_game(env, (policy_a, policy_b), g)
        else:
            theirs, mine = play_game(env, (policy_b, policy_a), g)
        total += 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
    return total / games


def test_memory_beats_the_memoryless_heuristic_which_beats_random():
    """The design claim on 200 games (1000-game figures in docs/multiagent_games.md: 0.993, 0.929, 0.959)."""
    assert score_rate(perfect_memory_policy, random_policy, 200) >= 0.95
    assert score_rate(perfect_memory_policy, game.heuristic_policy, 200) >= 0.85
    assert score_rate(game.heuristic_policy, random_policy, 200) >= 0.85


def test_the_heuristic_uses_this_turns_view_only_and_memory_uses_everything():
    state, params = table([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    env = make_env(pairs=5)
    env.reset(seed=0)

    def picks(policy, state, player, draws=30):
        env.game = state
        obs = {"observation": observe(state, player, params), "action_mask": action_mask(state)}
        return {policy(env, PLAYERS[player], obs, np.random.default_rng(s)) for s in range(draws)}

    for card in (0, 1, 2, 8):  # player_0 turns 0, 1 (miss); player_1 turns 2, 8 (miss)
        state, _, _ = step_state(state, card)
    # This turn shows player_0 cards 1 (its own) and 2, 8 (no pair); card 0, its own first card of last turn,
    # is not in the view any more: the heuristic turns cards it was not shown, 0 among them.
    assert picks(game.heuristic_policy, state, 0) <= {0, 3, 4, 5, 6, 7, 9}
    # perfect memory knows 0, 1, 2, 8 (no pair) and turns a card never shown
    assert picks(perfect_memory_policy, state, 0) <= {3, 4, 5, 6, 7, 9}
    state, _, _ = step_state(state, 5)  # player_0 turns 5, the partner of 0
    assert picks(perfect_memory_policy, state, 0) == {0}  # memory takes the pair
    heuristic = picks(game.heuristic_policy, state, 0)  # the heuristic does not know where 0 is: it guesses
    assert heuristic <= {0, 3, 4, 6, 7, 9} and len(heuristic) > 1
    state, _, _ = step_state(state, 7)  # a miss (values 0 and 2)
    # player_1's view: 8 (its own), 5 and 7 (player_0's), no pair; 7's partner 2 was in its previous view only
    assert picks(game.heuristic_policy, state, 1) <= {0, 1, 2, 3, 4, 6, 9}
    state, _, _ = step_state(state, 3)  # player_1 turns 3 (value 3): its partner 8 is in this turn's view
    assert picks(game.heuristic_policy, state, 1) == {8} and picks(perfect_memory_policy, state, 1) == {8}
    obs = {"observation": observe(state, 1, params), "action_mask": action_mask(state)}
    assert scripted_player(P1, obs, np.random.default_rng(0)) == 8  # mnemo match's scripted player is it


# --------------------------------------------------------------------------- training and matches


def test_a_self_play_run_trains_with_legal_cards_only_and_plays_matches(tmp_path):
    """A tiny --self-play run on Pairs (the turn-based core: only the mover's row acts): every action it took
    was legal, and its policy plays `mnemo match` against the random and the scripted players."""
    import json

    from agents.deploy import match
    from agents.train import cli as train

    run = tmp_path / "pairs"
    assert train.main(["--env-id", "mnemo/Pairs-v0", "--env-kwargs", json.dumps({"pairs": 4}), "--self-play",
                       "--total-steps", "512", "--num-envs", "2", "--num-steps", "64", "--hidden-size", "16",
                       "--bptt-len", "8", "--update-epochs", "1", "--eval-episodes", "2", "--progress", "false",
                       "--torch-threads", "1", "--run-dir", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    masks = summary["action_masks"]
    assert masks["training"]["checked"] > 0 and masks["training"]["illegal"] == 0
    assert masks["evaluation"]["illegal"] == 0
    for opponent in ("random", "scripted"):
        stats, about = match.play_match(match.load_player(str(run)), match.load_player(opponent), 4, seed=1)
        assert stats.games == 4 and stats.points_for is not None and about["env_id"] == "mnemo/Pairs-v0"


def test_the_default_network_learns_to_take_a_partner_the_view_shows():
    """The observation keeps matching learnable: the default memoryless network, fitted by cross-entropy to the
    heuristic's cards (500 games), takes what the turn's view shows at held-out flips, a pair at a first flip and
    the face-up card's partner at a second (a random legal card: about 14%; the earlier four-slot layout: 23% of
    the partners after 30 epochs on 1,500 games)."""
    from benchmarks.pairs_players import imitation_accuracy

    assert imitation_accuracy(epochs=10, games=500)[-1] >= 0.95


def test_recall_probe_counts_only_partners_a_memory_could_know():
    """``--recall`` scores the LSTM at the perfect-memory player's second flips that take a known partner: kind 1
    where the observation's row of that card shows the face-up card's value (in view), kind 2 where it shows no
    value but an earlier turn's did (only a memory finds it); a partner turned up by luck is neither, and padding
    past a game is -1."""
    from benchmarks.pairs_players import _perfect_memory_games

    env = make_env()
    leaves, cards, kinds = _perfect_memory_games(env, range(40))
    rows = leaves["observation"][..., :env.params.cards * (game.CARD_FEATURES + env.params.pairs)]
    rows = rows.reshape(*cards.shape, env.params.cards, game.CARD_FEATURES + env.params.pairs)
    counted = Counter(kinds.ravel().tolist())
    assert counted[1] > 20 and counted[2] > 20
    for t, b in np.argwhere(kinds > 0):
        face_up = int(rows[t, b, :, 1].argmax())
        values = rows[t, b, :, game.CARD_FEATURES:]
        assert rows[t, b, face_up, 1] == 1 and values[face_up].any()
        shows_value = values[cards[t, b]].any()
        assert shows_value == (kinds[t, b] == 1)
        earlier = rows[:t, b, cards[t, b], game.CARD_FEATURES:]  # what the player's earlier turns showed of it
        shown_value = values[cards[t, b]] if shows_value else earlier[earlier.any(axis=1)][-1]
        assert shown_value.argmax() == values[face_up].argmax()
    assert ((cards < 0) == (kinds < 0)).all()
    assert (leaves["action_mask"][cards < 0] == 1).all()


def test_recall_readout_names_the_hidden_legal_card_the_head_rates_highest_for_the_value():
    """``--run``'s readout of a recall head: of the legal cards the view does not show, the one whose predicted
    face-value feature for the face-up value is highest (read from the top layer's h in the runner's state)."""
    import torch
    from torch import nn

    from benchmarks.pairs_players import _recalled_partner

    pairs, cards = 7, 14
    width = cards * (game.CARD_FEATURES + pairs) + 1 + pairs
    head = nn.Linear(3, width)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        rows = head.bias[:cards * (game.CARD_FEATURES + pairs)].view(cards, game.CARD_FEATURES + pairs)
        rows[2, game.CARD_FEATURES + 5] = 0.9  # shown in view: not a candidate
        rows[4, game.CARD_FEATURES + 5] = 0.7  # not legal: not a candidate
        rows[9, game.CARD_FEATURES + 5] = 0.6  # the best candidate for value 5
        rows[11, game.CARD_FEATURES + 5] = 0.4
        rows[12, game.CARD_FEATURES + 3] = 1.0  # another value

    class Runner:
        policy = type("P", (), {"recall_head": head})()

        @staticmethod
        def get_state(agent):
            assert agent == "player_1"
            return torch.zeros(2, 1, 3)  # (S, L, W): h and c of one layer

    mask = np.ones(cards, bool)
    mask[4] = False
    assert _recalled_partner(Runner, "player_1", mask, {2: 5, 6: 1}, 5) == 9
    assert _recalled_partner(Runner, "player_1", mask, {2: 5, 6: 1}, 3) == 12
