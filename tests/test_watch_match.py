"""``mnemo watch RUN --opponent B`` (agents/watch/match_viewer.py) and self-play snapshots as players
(``RUN@snapshot:STEP``, agents/run/checkpoint.py ``load_snapshot``): recorded matches played as ``mnemo match``
plays them, the inspector on either player's agent, a snapshot acting as the pool's frozen network, refusals."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pettingzoo")

from agents.deploy import match
from agents.deploy.match import load_player, play_match
from agents.rollout.self_play import OpponentPool
from agents.run.checkpoint import load_payload, load_policy, resolve_checkpoint
from agents.train import cli as train
from agents.trees import obs_to_tensor, tree_map
from agents.watch import match_viewer, viewer
from agents.watch.memory_panel import MemoryPanel
from agents.watch.viewer import FrameSink, watch
from envs.multiagent.pong_duel import make_env

DUEL = "mnemo/FlickerPongDuel-v0"
SHORT = {"points_to_win": 2, "max_steps": 120}
FAST = ["--num-envs", "2", "--num-steps", "64", "--hidden-size", "16", "--bptt-len", "8", "--update-epochs", "1",
        "--eval-episodes", "0", "--progress", "false", "--torch-threads", "1", "--env-kwargs", json.dumps(SHORT)]
QUIET = {"log": lambda line: None}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A self-play run (snapshots every 128 env steps, a pool of 2: 4 taken, 3 saved: the pool's two and the
    first, still played) and a plain run, both tiny, on a short duel."""
    root = tmp_path_factory.mktemp("watchmatch")
    self_play, plain = root / "self_play", root / "plain"
    assert train.main(["--env-id", DUEL, "--run-dir", str(self_play), "--seed", "1", "--total-steps", "512",
                       "--self-play", "--snapshot-every", "128", "--pool-size", "2", *FAST]) == 0
    assert train.main(["--env-id", DUEL, "--run-dir", str(plain), "--seed", "2", "--total-steps", "256", *FAST]) == 0
    return self_play, plain


class ListSink(FrameSink):
    def __init__(self):
        self.frames, self.titles = [], []

    def add(self, frame, title=""):
        self.frames.append(frame)
        self.titles.append(title)
        return True


def test_a_recorded_match_between_two_runs_is_the_game_match_plays(runs, tmp_path):
    a, b = runs
    gif = tmp_path / "match.gif"
    result = watch(a, episodes=2, seed=3, record=gif, opponent=str(b), **QUIET)
    with Image.open(gif) as image:
        assert image.n_frames == result.frames == sum(result.lengths) + 2  # a frame after reset and each step
    # mnemo match's game 0 (A on the first side, seeded 3) is watch's game 1, step for step.
    games = []
    play_match(load_player(str(a)), load_player(str(b)), 1, seed=3, on_game=lambda g, r: games.append(r))
    assert result.lengths[0] == games[0]["steps"] and result.returns[0] == pytest.approx(games[0]["returns"][0])


def test_run_against_the_scripted_bot_on_either_side_shows_labels_and_points(runs):
    a, _ = runs
    for side, other in (("left", "right"), ("right", "left")):
        sink, lines = ListSink(), []
        result = watch(a, episodes=1, seed=0, sink=sink, opponent="scripted", side=side, log=lines.append)
        assert len(sink.frames) == result.lengths[0] + 1
        score = sink.titles[-1]
        assert f"{a} ({side})" in score and f"scripted ({other})" in score and "(over)" in score
        # The last caption shows the final points (the first side's first): one side reached points_to_win.
        points = [int(x) for x in re.search(r" (\d+) : (\d+) ", score).groups()]
        assert max(points) == SHORT["points_to_win"] or result.lengths[0] == SHORT["max_steps"], score
        assert score.index(f"({side})") < score.index(f"({other})") if side == "left" else \
            score.index(f"({other})") < score.index(f"({side})")
        assert lines[0].startswith("game 1: ")


def _right_observations(monkeypatch):
    """Record the observation of agent ``right`` at each turn of each game the watcher plays (a spy on
    ``game_turns``): one list per game."""
    seen = []
    turns = match_viewer.game_turns

    def spy(*args, **kwargs):
        game, mine = turns(*args, **kwargs), []
        seen.append(mine)
        try:
            while True:
                turn = next(game)
                mine.append(turn.obs.get("right"))
                yield turn
        except StopIteration as end:
            return end.value

    monkeypatch.setattr(match_viewer, "game_turns", spy)
    return seen


@pytest.mark.parametrize("whose", ["a", "b"])
@torch.no_grad()
def test_the_inspector_follows_an_agent_of_either_player(runs, monkeypatch, whose):
    """The panel shows ``right``'s memory as its own player's policy computes it, from the zero state at each
    game's start, whether that player is the watched run (A on the right) or the opponent (A on the left)."""
    a, b = runs
    pushed = []
    push = MemoryPanel.push
    monkeypatch.setattr(MemoryPanel, "push", lambda self, readout: (pushed.append((self.agent, readout)),
                                                                   push(self, readout))[1])
    seen = _right_observations(monkeypatch)
    steps = 15
    watch(a, episodes=2, seed=4, sink=ListSink(), opponent=str(b), side="right" if whose == "a" else "left",
          inspect=True, agent="right", max_steps=steps, **QUIET)
    # Each game draws 15 steps; its 16th turn was decided, then the game stopped at --max-steps.
    assert {agent for agent, _ in pushed} == {"right"} and len(pushed) == 2 * steps
    assert [len(game) for game in seen] == [steps + 1, steps + 1]
    owner, other = (load_policy(a)[0], load_policy(b)[0]) if whose == "a" else (load_policy(b)[0], load_policy(a)[0])
    h = owner.actor_core.state_names.index("h")
    hidden = []
    for g, game in enumerate(seen):
        state, other_state = owner.initial_state(1), other.initial_state(1)
        for t, obs in enumerate(game[:steps]):
            obs_t = tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(obs, torch.device("cpu")))
            start = torch.tensor([1.0 if t == 0 else 0.0])
            state = owner.step(obs_t, state, start, deterministic=True).state
            other_state = other.step(obs_t, other_state, start, deterministic=True).state
            readout = pushed[g * steps + t][1]
            assert readout.episode_start == (t == 0)
            assert np.allclose(readout.layers[0]["h"], state[h, 0, 0].numpy(), atol=1e-5)
            assert not np.allclose(readout.layers[0]["h"], other_state[h, 0, 0].numpy(), atol=1e-3)
            hidden.append(readout.layers[0]["h"])
    assert not np.allclose(hidden[0], hidden[steps - 1])  # its memory moves


def test_a_snapshot_player_acts_as_the_pools_frozen_network(runs):
    a, _ = runs
    payload, _ = load_payload(resolve_checkpoint(a))
    template, _ = load_policy(a)
    pool = OpponentPool(2)
    pool.load_state_dict(payload["collector"]["self_play"]["pool"], template)
    steps = {pool.records[i].step: i for i in pool.networks}
    assert sorted(steps) == [0, 256, 384]  # the pool's two, and the first, which a copy still played
    env = make_env(**SHORT)
    rng = np.random.default_rng(0)
    for spelling, step in [("first", 0), ("256", 256), ("last", 384)]:
        player = load_player(f"{a}@snapshot:{spelling}")
        assert player.label == f"{a} snapshot of step {step}"
        frozen = pool.networks[steps[step]]
        state = frozen.initial_state(1)
        obs, _ = env.reset(seed=step)
        for t in range(40):
            action, info = player.runner.act([obs["left"]], agent_ids=["left"], return_info=True)
            obs_t = tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(obs["left"], torch.device("cpu")))
            out = frozen.step(obs_t, state, torch.tensor([1.0 if t == 0 else 0.0]), deterministic=True)
            state = out.state
            assert int(action[0]) == int(out.action[0])
            assert info.value[0] == pytest.approx(float(out.value[0]), abs=1e-5)
            assert torch.allclose(player.runner.get_state("left"), state[:, :, 0], atol=1e-5)
            obs, _, _, _, _ = env.step({"left": int(action[0]), "right": int(rng.integers(3))})
            if not env.agents:
                obs, _ = env.reset(seed=step + t)
                player.runner.remove()
                state = frozen.initial_state(1)
    # The first snapshot (the initial policy) is not the trained one.
    assert any(not torch.equal(x, y) for x, y in zip(pool.networks[steps[0]].state_dict().values(),
                                                     template.state_dict().values(), strict=True))


def test_a_snapshot_is_watched_alone_or_in_a_match(runs):
    a, b = runs
    alone = ListSink()
    result = watch(f"{a}@snapshot:first", episodes=1, sink=alone, max_steps=5, **QUIET)
    assert len(alone.frames) == result.lengths[0] + 1 == 6
    in_match, lines = ListSink(), []
    watch(f"{a}@snapshot:last", episodes=1, sink=in_match, opponent=str(b), max_steps=5, log=lines.append)
    assert f"{a} snapshot of step 384 (left)" in in_match.titles[0] and f"{b} (right)" in in_match.titles[0]


def test_a_match_between_snapshots_on_the_command_line(runs, capsys):
    a, _ = runs
    assert match.main([f"{a}@snapshot:last", f"{a}@snapshot:first", "--games", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == f"{a} snapshot of step 384" and out["b"] == f"{a} snapshot of step 0" and out["games"] == 4


def _single_agent_run(tmp_path):
    from test_match import _untrained_run

    return _untrained_run(tmp_path / "single", "mnemo/FlickerPong-v0")


@pytest.mark.parametrize(("command", "expected"), [
    (lambda a, b, single: ["match", f"{a}@snapshot:7", "random"],
     "holds no snapshot taken at step 7: it holds the snapshots of steps 0, 256, 384 (the pool keeps the last "
     "--pool-size 2 of the 4 taken"),
    (lambda a, b, single: ["match", f"{a}@snapshot:middle", "random"], "holds no snapshot 'middle'"),
    (lambda a, b, single: ["match", f"{b}@snapshot:last", "random"], "was not trained with --self-play"),
    (lambda a, b, single: ["watch", str(a), "--opponent", f"{b}@snapshot:first"], "was not trained with --self-play"),
    (lambda a, b, single: ["watch", str(single), "--opponent", "random"],
     "single-agent env mnemo/FlickerPong-v0; mnemo watch --opponent plays multi-agent envs"),
    (lambda a, b, single: ["watch", str(a), "--opponent", "random", "--inspect", "--agent", "right"],
     "right is played by the random bot, which has no memory to show"),
    (lambda a, b, single: ["watch", str(a), "--opponent", "scripted", "--side", "middle"],
     "--side 'middle' is not a side of mnemo/FlickerPongDuel-v0; its sides are left, right"),
    (lambda a, b, single: ["watch", str(a), "--side", "left"], "add --opponent"),
    (lambda a, b, single: ["watch", "random", "--opponent", str(a)], "not the random bot"),
])
def test_refusals_are_one_line_exit_2(runs, tmp_path, capsys, command, expected):
    a, b = runs
    argv = command(a, b, _single_agent_run(tmp_path))
    main = match.main if argv[0] == "match" else viewer.main
    assert main([*argv[1:], "--record", str(tmp_path / "x.gif")] if argv[0] == "watch" else argv[1:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and expected in err, err


# --------------------------------------------------------------------------- a turn-based game (mnemo/Pairs-v0)


def _untrained_pairs_run(root):
    """A run directory holding an untrained policy of mnemo/Pairs-v0 (4 pairs)."""
    from agents.config import TrainConfig
    from agents.model.policy import RecurrentActorCritic
    from agents.run.checkpoint import atomic_torch_save, build_payload
    from envs.multiagent.pairs import make_env as make_pairs

    config = TrainConfig()
    config.env.env_id, config.env.env_kwargs = "mnemo/Pairs-v0", {"pairs": 4}
    config.policy.hidden_size = 8
    env = make_pairs(pairs=4)
    torch.manual_seed(0)
    policy = RecurrentActorCritic(env.observation_space("player_0"), env.action_space("player_0"), config.policy)
    atomic_torch_save(build_payload(config, policy, None, {}), root / "checkpoints" / "latest.pt")
    return root


@torch.no_grad()
def test_a_turn_based_match_shows_the_waiting_players_memory_held(tmp_path, monkeypatch):
    """Watching player_1 of Pairs: a frame per step, a panel column per step it acts (none while it waits,
    which the caption says), each column's reward summing what its action earned until its next one, and
    its memory that of its policy stepped over its own observations only."""
    run = _untrained_pairs_run(tmp_path)
    pushed = []
    push = MemoryPanel.push
    monkeypatch.setattr(MemoryPanel, "push", lambda self, readout: (pushed.append(readout), push(self, readout))[1])
    captions = []
    compose = MemoryPanel.compose
    monkeypatch.setattr(MemoryPanel, "compose",
                        lambda self, frame, caption: (captions.append(caption[-1]), compose(self, frame, caption))[1])
    turns_seen, outcome = [], {}
    turns = match_viewer.game_turns

    def spy(*args, **kwargs):
        game = turns(*args, **kwargs)
        try:
            while True:
                turn = next(game)
                turns_seen.append(turn)
                yield turn
        except StopIteration as end:
            outcome.update(end.value)
            return end.value

    monkeypatch.setattr(match_viewer, "game_turns", spy)
    sink = ListSink()
    result = watch(run, episodes=1, seed=2, sink=sink, opponent="random", side="player_1", inspect=True,
                   agent="player_1", **QUIET)
    steps = result.lengths[0]
    assert len(sink.frames) == steps + 1 and len(turns_seen) == steps
    acting = [k for k, turn in enumerate(turns_seen) if "player_1" in turn.actions]
    assert len(pushed) == len(acting) and 0 < len(acting) < steps
    assert all(list(turn.actions) == ["player_1"] for turn in turns_seen if "player_1" in turn.actions)
    assert captions[:-1] == ["memory: player_1" if k in acting else "memory: player_1 (waiting)"
                             for k in range(steps)]
    # Each column's reward: the rewards of its step and of every step until player_1 acts again.
    step_rewards = [turns_seen[k + 1].rewards.get("player_1", 0.0) for k in range(steps - 1)]
    step_rewards.append(outcome["rewards"].get("player_1", 0.0))
    bounds = [*acting, steps]
    expected = [sum(step_rewards[bounds[i]:bounds[i + 1]]) for i in range(len(acting))]
    assert [readout.reward for readout in pushed] == pytest.approx(expected)
    assert sum(step_rewards[acting[0]:]) == pytest.approx(sum(expected))
    assert any(step_rewards[k] != 0 for k in range(steps) if k not in acting)  # a reward paid while it waited
    # Its memory: the policy over player_1's own observations, from the zero state at its first act.
    policy = load_policy(run)[0]
    h = policy.actor_core.state_names.index("h")
    state = policy.initial_state(1)
    for i, k in enumerate(acting):
        obs_t = tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(turns_seen[k].obs["player_1"], torch.device("cpu")))
        state = policy.step(obs_t, state, torch.tensor([float(i == 0)]), deterministic=True).state
        assert np.allclose(pushed[i].layers[0]["h"], state[h, 0, 0].numpy(), atol=1e-5)
