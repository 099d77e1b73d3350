"""mnemo watch on multi-agent runs: recorded frames, the inspected agent's panel (absent, then respawned from
zero state), the rules of training, and one-line errors. Tiny runs trained here (a few seconds each)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

pytest.importorskip("pettingzoo")

from agents.run.checkpoint import load_policy
from agents.train import cli as train
from agents.train.evaluation import evaluate_multiagent
from agents.watch import viewer
from agents.watch.inspector import MemoryProbe
from agents.watch.memory_panel import MemoryPanel
from agents.watch.viewer import FrameSink, watch

TINY = ["--total-steps", "128", "--num-envs", "2", "--num-steps", "32", "--hidden-size", "16",
        "--eval-episodes", "0", "--progress", "false"]
QUIET = {"log": lambda line: None}


def _train(root, env_id, *flags):
    run = root / env_id.replace("/", "_").replace(":", "_")
    assert train.main(["--env-id", env_id, "--run-dir", str(run), *TINY, *flags]) == 0
    return run


@pytest.fixture(scope="module")
def fog_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("fog"), "mnemo/FogTeam-v0", "--env-kwargs", '{"max_steps": 6}')


@pytest.fixture(scope="module")
def storm_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("storm"), "mnemo/StormHarvest-v0", "--env-kwargs", '{"max_steps": 30}')


class ListSink(FrameSink):
    def __init__(self):
        self.frames, self.titles = [], []

    def add(self, frame, title=""):
        self.frames.append(frame)
        self.titles.append(title)
        return True


def test_record_gif_one_frame_per_step_plus_reset_with_the_panel_beside(fog_run, tmp_path):
    out = tmp_path / "fog.gif"
    result = watch(fog_run, episodes=2, record=out, inspect=True, seed=1, **QUIET)
    assert len(result.returns) == 2 and result.lengths == [6, 6]  # FogTeam truncates every agent at max_steps
    assert result.frames == sum(result.lengths) + 2
    with Image.open(out) as gif:
        frames, width = gif.n_frames, gif.size[0]
    assert frames == result.frames
    plain = tmp_path / "plain.gif"
    watch(fog_run, episodes=1, record=plain, seed=1, **QUIET)
    with Image.open(plain) as gif:
        assert width > gif.size[0]  # the panel sits beside the game
    # Every agent's episode ends with the env's: two agents, two episodes.
    assert len(result.agent_returns) == 4
    assert sum(result.agent_returns) == pytest.approx(sum(result.returns))


def test_caption_names_the_team_return_and_live_agents(fog_run):
    sink = ListSink()
    watch(fog_run, episodes=1, sink=sink, max_steps=3, **QUIET)
    assert len(sink.frames) == 4 and all(f.ndim == 3 and f.shape[2] == 3 for f in sink.frames)
    assert "team return" in sink.titles[0] and "step 0" in sink.titles[0]


def test_the_same_agent_episodes_as_training_evaluation(storm_run):
    """Watch plays by training's rules: its agent episodes are those of evaluate_multiagent on one env copy."""
    result = watch(storm_run, episodes=2, sink=ListSink(), **QUIET)
    policy, config = load_policy(storm_run)
    expected = evaluate_multiagent(policy, config.env.env_id, 2, seed=0,
                                   env_kwargs=config.env.env_kwargs, num_envs=1)
    assert result.agent_returns == pytest.approx(expected.tolist())
    assert len(result.agent_returns) > 2 * 4  # agents died and respawned within the episodes


def test_inspected_agent_absent_then_respawned_from_zero_state(storm_run, monkeypatch):
    pushed, states = [], []
    push, read = MemoryPanel.push, MemoryProbe.read

    def record_push(self, readout):
        pushed.append(readout)
        push(self, readout)

    def record_read(self, obs, state, episode_start, action, next_state=None, agent_inputs=None):
        states.append(state.clone())
        return read(self, obs, state, episode_start, action, next_state, agent_inputs)

    monkeypatch.setattr(MemoryPanel, "push", record_push)
    monkeypatch.setattr(MemoryProbe, "read", record_read)
    for agent in ("agent_0", "agent_1", "agent_2", "agent_3"):
        pushed.clear()
        states.clear()
        sink = ListSink()
        watch(storm_run, episodes=1, inspect=True, agent=agent, sink=sink, **QUIET)
        if any(r.absent for r in pushed):
            break
    else:
        pytest.fail("no agent died in the episode")
    present = [r for r in pushed if not r.absent]
    quantities = set(present[0].layers[0])
    assert {"c", "h"} <= quantities  # the LSTM's rows (gates and states)
    assert all(set(r.layers[0]) == quantities for r in present)
    # Each return after an absence is a spawn whose state starts at zero.
    back = [i for i in range(1, len(pushed)) if pushed[i - 1].absent and not pushed[i].absent]
    assert back
    reads = [i for i, r in enumerate(pushed) if not r.absent]
    for i in back:
        assert pushed[i].episode_start
        assert torch.count_nonzero(states[reads.index(i)]) == 0
    assert len(sink.frames) == len(pushed) + 1


def test_unknown_agent_is_a_one_line_error_naming_the_agents(fog_run, tmp_path, capsys):
    code = viewer.main([str(fog_run), "--record", str(tmp_path / "x.gif"), "--inspect", "--agent", "bob"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "'bob'" in err[0] and "agent_0, agent_1" in err[0]
    assert not (tmp_path / "x.gif").exists()


def test_agent_on_a_single_agent_run_is_a_one_line_error(tmp_path, capsys):
    run = _train(tmp_path, "mnemo/TMaze-v0")
    capsys.readouterr()
    code = viewer.main([str(run), "--record", str(tmp_path / "x.gif"), "--agent", "agent_0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "single-agent" in err[0]


def test_env_without_rgb_array_is_a_one_line_error(tmp_path, capsys):
    run = _train(tmp_path, "toy_multiagent_envs:make_respawn")
    capsys.readouterr()
    code = viewer.main([str(run), "--record", str(tmp_path / "x.gif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be watched" in err[0] and "rgb_array" in err[0]
