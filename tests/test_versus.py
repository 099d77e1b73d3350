"""Human vs agent (apps/versus.py): matches end to end with an injected left paddle, the agent's view, errors.

Checkpoints are written directly from an untrained policy (no training: fast), and
matches are one point long; the suite's conftest makes SDL headless.
"""

import importlib.util
import subprocess
import sys
from collections import defaultdict

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.run.checkpoint import CheckpointError, atomic_torch_save, build_payload
from agents.watch.viewer import FrameSink
from apps.versus import (
    AGENT_FLICKER,
    KeyboardHuman,
    VersusError,
    idle_human,
    main,
    scripted_human,
    versus,
)
from apps.versus_screen import HUD_H
from envs.games.flicker_pong import DOWN, NOOP, UP

PONG = "mnemo/FlickerPong-v0"
PONG_PIXELS = "mnemo/FlickerPongPixels-v0"


def _make_run(root, env_id, env_kwargs=None, policy_env_kwargs=None, carry=False):
    """A run directory with an untrained policy for ``env_id`` (its spaces from ``policy_env_kwargs`` if given)."""
    import envs  # noqa: F401

    config = TrainConfig()
    config.env.env_id, config.env.env_kwargs = env_id, dict(env_kwargs or {})
    config.policy.hidden_size, config.policy.carry_across_episodes = 8, carry
    env = gym.make(env_id, **(config.env.env_kwargs if policy_env_kwargs is None else policy_env_kwargs))
    policy = RecurrentActorCritic(env.observation_space, env.action_space, config.policy)
    env.close()
    atomic_torch_save(build_payload(config, policy, None, {}), root / "checkpoints" / "latest.pt")
    return root


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("pong"), PONG, {"points_to_win": 1, "flicker_p": 0.3})


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    kwargs = {"points_to_win": 1, "obs_size": 16, "grayscale": True}
    return _make_run(tmp_path_factory.mktemp("pong_pixels"), PONG_PIXELS, kwargs)


class ListSink(FrameSink):
    """Keeps the frames; ``stop_after`` frames in, it answers as if the person pressed Esc."""

    def __init__(self, stop_after=None):
        self.frames, self.stop_after, self.closed = [], stop_after, False

    def add(self, frame, title=""):
        self.frames.append(frame)
        return self.stop_after is None or len(self.frames) < self.stop_after

    def close(self):
        self.closed = True


class Trace:
    """on_step hook: what the agent saw and both actions."""

    def __init__(self):
        self.obs, self.agent, self.human = [], [], []

    def __call__(self, obs, agent_action, human_action):
        self.obs.append(np.array(obs))
        self.agent.append(agent_action)
        self.human.append(human_action)


def _fake_keys(*names):
    import pygame

    pressed = defaultdict(bool)
    for name in names:
        pressed[getattr(pygame, f"K_{name}")] = True
    return lambda: pressed


def _quiet(_line):
    pass


def test_keyboard_maps_held_keys_to_the_left_paddle():
    assert KeyboardHuman(get_pressed=_fake_keys())(None, None) == NOOP
    assert KeyboardHuman(get_pressed=_fake_keys("UP"))(None, None) == UP
    assert KeyboardHuman(get_pressed=_fake_keys("w"))(None, None) == UP
    assert KeyboardHuman(get_pressed=_fake_keys("DOWN"))(None, None) == DOWN
    assert KeyboardHuman(get_pressed=_fake_keys("s"))(None, None) == DOWN
    assert KeyboardHuman(get_pressed=_fake_keys("w", "s"))(None, None) == NOOP  # both held cancel out


def test_matches_end_to_end_with_keyboard_input(pong_run):
    sink, trace, lines = ListSink(), Trace(), []
    human = KeyboardHuman(get_pressed=_fake_keys("w"))
    result = versus(pong_run, matches=2, human=human, sink=sink, on_step=trace, fps=10, pause=0.2, log=lines.append)
    assert len(result.matches) == 2 and not result.quit and sink.closed
    for match in result.matches:
        assert max(match.human_points, match.agent_points) == 1 and not match.truncated
        assert match.winner in ("human", "agent")
    steps = sum(m.steps for m in result.matches)
    hold = 2  # 0.2 s at 10 fps, before and after each match
    assert result.frames == len(sink.frames) == steps + 2 + 2 * 2 * hold  # one frame after reset and each step
    assert sink.frames[0].shape == (HUD_H + 480, 480, 3) and sink.frames[0].dtype == np.uint8
    assert trace.human == [UP] * steps
    assert set(trace.agent) <= {NOOP, UP, DOWN}
    assert any(line.startswith("match 2: you ") for line in lines)
    assert "of 2 matches" in lines[-1]


def _replay_in_training_env(env_id, env_kwargs, seed, trace):
    """The agent's observations when the same actions are played in the env as training makes it."""
    env = gym.make(env_id, opponent="external", **env_kwargs)
    obs, _ = env.reset(seed=seed)
    seen = [obs]
    for agent_action, human_action in zip(trace.agent[:-1], trace.human[:-1], strict=True):
        env.unwrapped.set_opponent_action(human_action)
        obs, _, terminated, truncated, _ = env.step(agent_action)
        assert not (terminated or truncated)
        seen.append(obs)
    env.close()
    return seen


@pytest.mark.parametrize("which", ["vector", "pixels"])
def test_agent_sees_exactly_the_training_observations(which, pong_run, pixel_run):
    from agents.deploy.runner import PolicyRunner

    run, env_id = (pong_run, PONG) if which == "vector" else (pixel_run, PONG_PIXELS)
    runner = PolicyRunner.load(run)
    kwargs = runner.config.env.env_kwargs
    trace = Trace()
    versus(run, human=scripted_human, sink=ListSink(), on_step=trace, seed=5, pause=0, log=_quiet)
    expected = _replay_in_training_env(env_id, kwargs, 5, trace)
    assert len(expected) == len(trace.obs) > 10
    for got, want in zip(trace.obs, expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    blank = [not obs.any() for obs in trace.obs]
    assert any(blank) and not all(blank)  # the run's flicker reaches the agent
    if which == "pixels":
        assert trace.obs[0].shape == (16, 16, 1)  # obs_size and grayscale from the run's env_kwargs
    # ... and its actions are the policy's greedy actions on those observations.
    assert [int(runner.act(obs)) for obs in expected] == trace.agent


def _court_is_blank(frame):
    return tuple(frame[HUD_H + 4, 4]) == (8, 8, 12)  # FlickerPong's blank-frame fill, where the court is never


def test_what_the_person_sees_never_changes_what_the_agent_sees(pong_run):
    runs = {}
    for flicker in (0.0, AGENT_FLICKER, 1.0):
        sink, trace = ListSink(), Trace()
        versus(pong_run, human=scripted_human, flicker=flicker, sink=sink, on_step=trace, seed=2, pause=0, log=_quiet)
        runs[flicker] = sink, trace
    for flicker in (AGENT_FLICKER, 1.0):
        assert len(runs[flicker][1].obs) == len(runs[0.0][1].obs)
        np.testing.assert_array_equal(np.stack(runs[flicker][1].obs), np.stack(runs[0.0][1].obs))
    n = len(runs[0.0][1].obs)
    assert not any(_court_is_blank(f) for f in runs[0.0][0].frames)
    assert all(_court_is_blank(f) for f in runs[1.0][0].frames[:n])
    sink, trace = runs[AGENT_FLICKER]
    assert [_court_is_blank(f) for f in sink.frames[:n]] == [not obs.any() for obs in trace.obs]


def test_stochastic_agent_is_seeded(pong_run):
    traces = []
    for _ in range(2):
        trace = Trace()
        versus(pong_run, deterministic=False, seed=7, human=idle_human, sink=ListSink(), on_step=trace, pause=0,
               log=_quiet)
        traces.append(trace.agent)
    assert traces[0] == traces[1] and len(set(traces[0])) > 1


def test_quitting_stops_the_match(pong_run):
    lines = []
    result = versus(pong_run, matches=3, human=idle_human, sink=ListSink(stop_after=5), pause=0, log=lines.append)
    assert result.quit and result.matches == [] and result.frames == 5
    assert lines[-1].startswith("match 1: left at you 0 - 0 agent")


def test_carry_mode_keeps_memory_across_matches(tmp_path):
    run = _make_run(tmp_path, PONG, {"points_to_win": 1}, carry=True)
    result = versus(run, matches=2, human=idle_human, sink=ListSink(), pause=0, log=_quiet)
    assert len(result.matches) == 2


def test_command_records_a_gif(pong_run, tmp_path, capsys):
    out = tmp_path / "match.gif"
    assert main([str(pong_run), "--record", str(out), "--pause", "0", "--fps", "20", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "Left paddle (orange): scripted" in text and "match 1: you " in text
    frames = int(text.split("wrote ")[1].split()[0])
    with Image.open(out) as im:
        assert im.size == (480, HUD_H + 480) and 1 < im.n_frames <= frames


# --------------------------------------------------------------------------- errors
def test_run_on_another_env_names_the_supported_ones(tmp_path, capsys):
    run = _make_run(tmp_path, "mnemo/TMaze-v0", {"corridor_length": 2})
    supported = r"trained on 'mnemo/TMaze-v0'.*mnemo/FlickerPong-v0, mnemo/FlickerPongPixels-v0"
    with pytest.raises(VersusError, match=supported):
        versus(run, sink=ListSink(), log=_quiet)
    assert main([str(run), "--record", str(tmp_path / "x.gif")]) == 2
    assert "mnemo/FlickerPongPixels-v0" in capsys.readouterr().err


def test_bad_path(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="No checkpoint"):
        versus(tmp_path / "nowhere", sink=ListSink(), log=_quiet)
    (tmp_path / "empty_run").mkdir()
    assert main([str(tmp_path / "empty_run")]) == 2
    assert "has no checkpoints/latest.pt" in capsys.readouterr().err


def test_no_display_says_how_to_record(pong_run, monkeypatch):
    import pygame

    def no_video():
        raise pygame.error("No available video device")

    monkeypatch.setattr(pygame.display, "init", no_video)
    with pytest.raises(VersusError, match=r"No available video device.*--record match.gif --human scripted"):
        versus(pong_run, log=_quiet)


def test_env_changed_since_training(tmp_path):
    run = _make_run(tmp_path, PONG_PIXELS, {"obs_size": 24}, policy_env_kwargs={"obs_size": 16})
    with pytest.raises(VersusError, match="was the env changed since training"):
        versus(run, sink=ListSink(), log=_quiet)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"matches": 0}, "--matches must be at least 1"),
    ({"flicker": 1.5}, "--flicker must be"),
    ({"flicker": "sometimes"}, "--flicker must be"),
    ({"fps": 0}, "--fps must be positive"),
    ({"human": "keyboard", "record": "x.gif"}, "nobody can play with the keyboard"),
    ({"human": "robot", "sink": ListSink()}, "--human must be one of"),
])
def test_bad_options(pong_run, kwargs, message):
    with pytest.raises(VersusError, match=message):
        versus(pong_run, log=_quiet, **kwargs)


def test_import_does_not_load_pygame():
    code = "import sys, apps.versus; assert 'pygame' not in sys.modules, 'pygame imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_keyboard_play_without_a_visible_window_is_refused(pong_run, capsys):
    # The suite runs SDL's dummy video driver: a window could open, but nobody would see it.
    with pytest.raises(VersusError, match=r"No display: SDL's video driver is 'dummy'.*--record match.gif"):
        versus(pong_run, log=_quiet)
    assert main([str(pong_run)]) == 2
    assert "No display" in capsys.readouterr().err


# --------------------------------------------------------------------------- two-player FlickerPong
DUEL = "mnemo/FlickerPongDuel-v0"
# The duel is a PettingZoo env (the multiagent extra); these tests also run where only pygame-ce is added.
needs_pettingzoo = pytest.mark.skipif(importlib.util.find_spec("pettingzoo") is None,
                                      reason="the duel needs pettingzoo (pip install -e '.[multiagent]')")


@pytest.fixture(scope="module")
def duel_run(tmp_path_factory):
    """An untrained policy with the duel's spaces (the same for both sides) in a run of mnemo/FlickerPongDuel-v0."""
    from envs.multiagent.pong_duel import make_env

    root = tmp_path_factory.mktemp("duel")
    config = TrainConfig()
    config.env.env_id, config.env.env_kwargs = DUEL, {"points_to_win": 1, "flicker_p": 0.3}
    config.policy.hidden_size = 8
    env = make_env(**config.env.env_kwargs)
    policy = RecurrentActorCritic(env.observation_space("right"), env.action_space("right"), config.policy)
    atomic_torch_save(build_payload(config, policy, None, {}), root / "checkpoints" / "latest.pt")
    return root


@needs_pettingzoo
def test_duel_agent_plays_right_and_sees_the_duels_right_observations(duel_run):
    from agents.deploy.runner import PolicyRunner
    from envs.multiagent.pong_duel import make_env

    trace = Trace()
    result = versus(duel_run, matches=1, human=scripted_human, sink=ListSink(), on_step=trace, seed=4, pause=0,
                    log=_quiet)
    assert len(result.matches) == 1 and max(result.matches[0].human_points, result.matches[0].agent_points) == 1
    # Replayed in the duel as training makes it, the right agent sees what the versus agent saw.
    env = make_env(points_to_win=1, flicker_p=0.3)
    obs, _ = env.reset(seed=4)
    seen = [obs["right"]]
    for agent_action, human_action in zip(trace.agent[:-1], trace.human[:-1], strict=True):
        obs, *_ = env.step({"right": agent_action, "left": human_action})
        seen.append(obs["right"])
    assert len(seen) == len(trace.obs) > 10
    np.testing.assert_array_equal(np.stack(seen), np.stack(trace.obs))
    blank = [not o.any() for o in trace.obs]
    assert any(blank) and not all(blank)
    runner = PolicyRunner.load(duel_run)
    assert [int(runner.act(o)) for o in seen] == trace.agent


@needs_pettingzoo
def test_duel_command_records_a_gif(duel_run, tmp_path, capsys):
    out = tmp_path / "duel.gif"
    assert main([str(duel_run), "--record", str(out), "--pause", "0", "--fps", "20"]) == 0
    text = capsys.readouterr().out
    assert f"the agent, {DUEL}" in text and "match 1: you " in text
    with Image.open(out) as im:
        assert im.size == (480, HUD_H + 480) and im.n_frames > 1


@needs_pettingzoo
def test_a_multiagent_run_of_another_game_is_refused(tmp_path):
    from envs.multiagent.fog_team import make_env

    config = TrainConfig()
    config.env.env_id = "mnemo/FogTeam-v0"
    config.policy.hidden_size = 8
    env = make_env()
    policy = RecurrentActorCritic(env.observation_space("agent_0"), env.action_space("agent_0"), config.policy)
    atomic_torch_save(build_payload(config, policy, None, {}), tmp_path / "checkpoints" / "latest.pt")
    with pytest.raises(VersusError, match=r"multi-agent env 'mnemo/FogTeam-v0'.*mnemo/FlickerPongDuel-v0"):
        versus(tmp_path, sink=ListSink(), log=_quiet)


@needs_pettingzoo
def test_duel_agent_with_an_agent_index_input_acts_as_right(tmp_path):
    from envs.multiagent.pong_duel import make_env

    config = TrainConfig()
    config.env.env_id, config.env.env_kwargs = DUEL, {"points_to_win": 1}
    config.policy.hidden_size, config.policy.agent_index_input = 8, True
    env = make_env(**config.env.env_kwargs)
    policy = RecurrentActorCritic(env.observation_space("right"), env.action_space("right"), config.policy,
                                  agents=env.possible_agents)
    atomic_torch_save(build_payload(config, policy, None, {}), tmp_path / "checkpoints" / "latest.pt")
    result = versus(tmp_path, human=idle_human, sink=ListSink(), pause=0, log=_quiet)
    assert len(result.matches) == 1
