"""``mnemo match`` (agents/deploy/match.py): the statistics against hand values, games by training's
hidden-state rules, side alternation, the command line end to end with tiny runs, and its refusals."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from agents.config import TrainConfig
from agents.deploy import match
from agents.deploy.match import MatchStats, elo_from_score, format_elo, load_player, play_match, wilson_interval
from agents.model.policy import RecurrentActorCritic
from agents.rollout.multiagent_env import is_multiagent, make_parallel_env
from agents.run.checkpoint import atomic_torch_save, build_payload, load_policy
from agents.train import cli as train
from agents.train.evaluation import evaluate_multiagent
from agents.trees import obs_to_tensor, tree_map

DUEL = "mnemo/FlickerPongDuel-v0"
PAIRS = "mnemo/Pairs-v0"
SHORT = {"points_to_win": 1, "max_steps": 300}
FAST = ["--total-steps", "256", "--num-envs", "2", "--num-steps", "64", "--hidden-size", "16", "--bptt-len", "8",
        "--update-epochs", "1", "--eval-episodes", "2", "--progress", "false", "--torch-threads", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs on a one-point duel, trained for 256 env steps with different seeds."""
    root = tmp_path_factory.mktemp("match")
    out = []
    for seed in (1, 2):
        run = root / f"duel{seed}"
        code = train.main(["--env-id", DUEL, "--env-kwargs", json.dumps(SHORT), "--run-dir", str(run),
                           "--seed", str(seed), *FAST])
        assert code == 0
        out.append(run)
    return out


def test_wilson_interval_and_elo_against_hand_values():
    # 8 of 10: p = 0.8, z = 1.96: centre (0.8 + 0.19208) / 1.38416, half-width 1.96 sqrt(0.025604) / 1.38416.
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # never empty at 0 successes
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(50, 100) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert elo_from_score(0.5) == 0.0
    assert elo_from_score(0.75) == pytest.approx(400 * math.log10(3))  # 190.8: odds 3:1
    assert elo_from_score(1 / (1 + 10 ** -0.25)) == pytest.approx(100.0)  # Elo's expected score at +100
    assert elo_from_score(0.25) == pytest.approx(-elo_from_score(0.75))
    assert elo_from_score(1.0) == math.inf and elo_from_score(0.0) == -math.inf
    assert format_elo(190.8) == "+191" and format_elo("inf") == "+inf" and format_elo("-inf") == "-inf"


def test_summary_maps_the_interval_through_elo_and_names_infinities():
    all_won = MatchStats(games=10, wins=10, points_for=30, points_against=4, steps=[5] * 10).summary()
    assert all_won["score"] == 1.0 and all_won["elo"] == "inf" and all_won["elo_ci95"][1] == "inf"
    assert all_won["elo_ci95"][0] == pytest.approx(elo_from_score(wilson_interval(10, 10)[0]))
    assert all_won["points_fraction"] == pytest.approx(30 / 34)
    json.dumps(all_won, allow_nan=False)  # plain JSON, no Infinity
    drawn = MatchStats(games=4, wins=1, draws=2, losses=1, steps=[1]).summary()
    assert drawn["score"] == 0.5 and drawn["elo"] == 0.0 and "points_for" not in drawn


def test_a_game_is_played_by_training_rules(runs):
    """A run against itself plays one game exactly as training's evaluation (act_by_policy, by row) plays it."""
    a, b = load_player(str(runs[0])), load_player(str(runs[0]))
    results = []
    play_match(a, b, 1, seed=5, on_game=lambda g, r: results.append(r))
    policy, _ = load_policy(runs[0])
    returns = evaluate_multiagent(policy, DUEL, 1, seed=5, env_kwargs=SHORT, num_envs=1)
    assert sorted(results[0]["returns"]) == pytest.approx(sorted(returns.tolist()))


def test_no_memory_crosses_from_game_to_game_and_sides_alternate(runs):
    def games(seed, n):
        out = []
        a, b = load_player(str(runs[0])), load_player(str(runs[1]))
        play_match(a, b, n, seed=seed, on_game=lambda g, r: out.append(r))
        return out

    three, alone = games(0, 3), games(2, 1)
    assert [r["a_side"] for r in three] == [0, 1, 0]
    assert three[2] == alone[0]  # game 2 of the match is the match of one game seeded 2


def test_command_line_end_to_end(runs, capsys):
    assert match.main([str(runs[0]), str(runs[1]), "--games", "4", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["games"] == 4 and first["wins"] + first["draws"] + first["losses"] == 4
    assert first["points_for"] + first["points_against"] == 4 - first["draws"]  # one point a game, or time up
    assert match.main([str(runs[0]), str(runs[1]), "--games", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # seeded

    assert match.main([str(runs[0]), "scripted", "--games", "6"]) == 0
    text = capsys.readouterr().out
    assert "A: " in text and "Elo difference A - B:" in text and "points won by A:" in text
    assert match.main(["scripted", "random", "--env-id", DUEL, "--games", "40", "--json"]) == 0
    bots = json.loads(capsys.readouterr().out)
    assert bots["score"] > 0.6 and bots["points_fraction"] > 0.55, bots  # the scripted paddle beats random


def _untrained_run(root, env_id, env_kwargs=None, carry=False):
    config = TrainConfig()
    config.env.env_id, config.env.env_kwargs = env_id, dict(env_kwargs or {})
    config.policy.hidden_size, config.policy.carry_across_episodes = 8, carry
    if is_multiagent(env_id):
        env = make_parallel_env(env_id, config.env.env_kwargs)
        first = env.possible_agents[0]
        spaces = env.observation_space(first), env.action_space(first)
    else:
        import envs  # noqa: F401

        env = gym.make(env_id)
        spaces = env.observation_space, env.action_space
    policy = RecurrentActorCritic(*spaces, config.policy)
    atomic_torch_save(build_payload(config, policy, None, {}), root / "checkpoints" / "latest.pt")
    return root


@pytest.mark.parametrize(("players", "extra", "expected"), [
    (("single", "random"), [], "single-agent env"),
    (("duel", "other_kwargs"), [], "a match needs two runs of one env"),
    (("duel", "bogus_bot"), [], "neither a run directory nor a bot"),
    (("random", "random"), [], "--env-id"),
    (("scripted", "scripted"), ["--env-id", DUEL], "scripted bot"),
    (("random", "scripted"), ["--env-id", "mnemo/FogTeam-v0"], "has no scripted bot"),
    (("duel", "random"), ["--sides", "left=a"], "two"),
    (("duel", "random"), ["--sides", "left=a,*=a"], "exactly two sides"),
    (("duel", "random"), ["--sides", "left=a,x=b"], "no pattern matches agent 'right'"),
    (("duel", "random"), ["--games", "0"], "--games"),
])
def test_refusals_are_one_line_exit_2(tmp_path, capsys, players, extra, expected):
    made = {
        "single": lambda: _untrained_run(tmp_path / "single", "mnemo/FlickerPong-v0"),
        "duel": lambda: _untrained_run(tmp_path / "duel", DUEL),
        "other_kwargs": lambda: _untrained_run(tmp_path / "other", DUEL, {"flicker_p": 0.2}),
    }
    args = [str(made[p]()) if p in made else ("scriptd" if p == "bogus_bot" else p) for p in players]
    assert match.main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and expected in err, err


def test_random_bot_plays_legal_actions_from_its_seed():
    a, b = load_player("random"), load_player("random")
    first = []
    play_match(a, b, 2, seed=3, env_id=DUEL, on_game=lambda g, r: first.append(r))
    again = []
    play_match(a, b, 2, seed=3, env_id=DUEL, on_game=lambda g, r: again.append(r))
    assert first == again and all(np.isfinite(r["returns"]).all() for r in first)


def test_each_game_starts_from_zero_state_unless_the_run_carries_memory(tmp_path):
    """The state each agent's first step of a game starts from: none (the agent is fresh) for a run in reset
    mode; for a run trained with carry_across_episodes, the state that agent had at the end of the last game
    the run played it (sides alternate, so the run's "left" of game 0 carries into game 2)."""
    carry = load_player(str(_untrained_run(tmp_path / "carry", DUEL, SHORT, carry=True)))
    reset = load_player(str(_untrained_run(tmp_path / "reset", DUEL, SHORT)))
    seen = {}
    for player in (carry, reset):
        calls = seen[player.label] = []
        act = player.runner.act

        def spy(obs, agent_ids=None, _act=act, _runner=player.runner, _calls=calls, **kwargs):
            _calls.append({a: _runner.get_state(a).clone() if a in _runner.agent_ids else None for a in agent_ids})
            return _act(obs, agent_ids=agent_ids, **kwargs)

        player.runner.act = spy
    steps, ends = [], []

    def after_game(g, result):
        steps.append(result["steps"])
        ends.append({a: carry.runner.get_state(a).clone() for a in carry.runner.agent_ids})

    play_match(carry, reset, 3, seed=0, on_game=after_game)
    starts = np.cumsum([0, *steps[:-1]])  # the index of each game's first act
    assert len(seen[carry.label]) == len(seen[reset.label]) == sum(steps)
    for start in starts:
        assert all(v is None for v in seen[reset.label][start].values())
    assert seen[carry.label][0] == {"left": None}  # the first game starts fresh in both modes
    (agent, state), = seen[carry.label][starts[2]].items()
    assert agent == "left" and state.abs().sum() > 0 and torch.equal(state, ends[0]["left"])


# --------------------------------------------------------------------------- a turn-based game (mnemo/Pairs-v0)


def test_pairs_bots_play_legal_cards_and_the_heuristic_beats_random(capsys):
    """The random bot draws from the mask (the env raises on an illegal card), the scripted bot is the env's
    memoryless heuristic (``scripted_player``), played from each observation in the plain env; a scripted
    player on both sides is allowed there, since the env does not play it itself."""
    assert match.main(["scripted", "random", "--env-id", PAIRS, "--games", "40", "--json"]) == 0
    bots = json.loads(capsys.readouterr().out)
    assert bots["score"] > 0.75 and bots["points_for"] + bots["points_against"] > 40 * 5, bots
    again = []
    play_match(load_player("random"), load_player("random"), 3, seed=2, env_id=PAIRS,
               on_game=lambda g, r: again.append(r))
    first = []
    play_match(load_player("random"), load_player("random"), 3, seed=2, env_id=PAIRS,
               on_game=lambda g, r: first.append(r))
    assert first == again  # seeded
    stats, _ = play_match(load_player("scripted"), load_player("scripted"), 4, env_id=PAIRS)
    assert stats.games == 4


def test_random_bot_draws_uniformly_from_the_mask():
    env = make_parallel_env(PAIRS, {"pairs": 3})
    obs, _ = env.reset(seed=0)
    env.step({"player_0": 0})
    obs, *_ = env.step({"player_0": 1})
    rng = np.random.default_rng(0)
    mask = obs["player_1"]["action_mask"]
    draws = [match._act(load_player("random"), env, ["player_1"], obs, rng)["player_1"] for _ in range(600)]
    counts = np.bincount(draws, minlength=6)
    assert np.array_equal(counts > 0, mask.astype(bool)) and counts[mask > 0].min() > 60


def test_a_run_acts_only_on_its_turns_and_holds_its_state_while_it_waits(tmp_path):
    """A run against itself: one runner holds both players. Each step it acts for the mover alone; the waiting
    player's state stays bit for bit what its own last act left, and each player's states are those of the
    policy stepped over that player's observations only, as if the other's steps had not happened."""
    run = load_player(str(_untrained_run(tmp_path / "pairs", PAIRS)))
    runner = run.runner
    calls, after = [], {}
    act = runner.act

    def spy(obs, agent_ids=None, **kwargs):
        held = {a: runner.get_state(a).clone() for a in runner.agent_ids}
        for a, state in held.items():
            assert torch.equal(state, after[a]), a  # nobody touched it since its own last act
        out = act(obs, agent_ids=agent_ids, **kwargs)
        calls.append((list(agent_ids), obs[0]))
        after[agent_ids[0]] = runner.get_state(agent_ids[0]).clone()
        return out

    runner.act = spy
    results = []
    play_match(run, run, 1, seed=4, on_game=lambda g, r: results.append(r))
    assert len(calls) == results[0]["steps"] and all(len(ids) == 1 for ids, _ in calls)
    movers = [ids[0] for ids, _ in calls]
    assert movers[:4] == ["player_0", "player_0", "player_1", "player_1"]
    policy = runner.policy
    for agent in ("player_0", "player_1"):
        state, first = policy.initial_state(1), 1.0
        for (ids, obs) in calls:
            if ids[0] == agent:
                obs_t = tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(obs, torch.device("cpu")))
                with torch.inference_mode():
                    state = policy.step(obs_t, state, torch.tensor([first]), deterministic=True).state
                first = 0.0
        torch.testing.assert_close(after[agent], state[:, :, 0], atol=1e-5, rtol=0)
