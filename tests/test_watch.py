"""Watching and recording: frame counts of GIF / MP4 recordings, the inspector panel, clear errors.

Checkpoints are written directly from an untrained policy (no training: fast); the
suite's conftest makes SDL headless.
"""

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.registration import registry
from PIL import Image

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.run.checkpoint import CheckpointError, atomic_torch_save, build_payload
from agents.watch.viewer import FrameSink, WatchError, main, watch


class _NoRGBEnv(gym.Env):
    """A tiny env that can only render text."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}

    def render(self):
        return "text"


def _ignores_render_mode(render_mode=None):
    """A factory entry point (render modes unknown before making) that drops render_mode."""
    return _NoRGBEnv()


for _id, _entry in (("mnemo_test/NoRGB-v0", _NoRGBEnv), ("mnemo_test/NoRGBFactory-v0", _ignores_render_mode)):
    if _id not in registry:
        gym.register(_id, entry_point=_entry)


def _make_run(root, env_id, core="lstm", layers=1, env_kwargs=None, env_import=()):
    """A run directory holding an untrained policy's checkpoint for ``env_id``."""
    import envs  # noqa: F401

    config = TrainConfig()
    config.env.env_id, config.env.env_kwargs, config.env.env_import = env_id, dict(env_kwargs or {}), env_import
    config.policy.core, config.policy.num_layers, config.policy.hidden_size = core, layers, 8
    env = gym.make(env_id, **config.env.env_kwargs)
    policy = RecurrentActorCritic(env.observation_space, env.action_space, config.policy)
    env.close()
    atomic_torch_save(build_payload(config, policy, None, {}), root / "checkpoints" / "latest.pt")
    return root


@pytest.fixture(scope="module")
def tmaze_run(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("tmaze"), "mnemo/TMaze-v0", env_kwargs={"corridor_length": 2})


class ListSink(FrameSink):
    def __init__(self):
        self.frames = []

    def add(self, frame, title=""):
        self.frames.append(frame)
        return True


def _gif(path):
    """(frame count, (width, height), total duration in ms) of a GIF."""
    with Image.open(path) as im:
        total = 0
        for i in range(im.n_frames):
            im.seek(i)
            total += im.info["duration"]
        return im.n_frames, im.size, total


def test_record_gif_with_inspector_has_one_frame_per_step_plus_reset(tmaze_run, tmp_path):
    out = tmp_path / "tm.gif"
    result = watch(tmaze_run, episodes=2, record=out, inspect=True, max_steps=4, seed=1, log=lambda s: None)
    assert len(result.returns) == 2 and all(1 <= n <= 4 for n in result.lengths)
    assert result.frames == sum(result.lengths) + 2
    n_frames, (width, _), _ = _gif(out)
    assert n_frames == result.frames  # every inspector frame differs from the last, so none are merged

    plain = tmp_path / "plain.gif"
    result_plain = watch(tmaze_run, episodes=1, record=plain, max_steps=4, seed=1, fps=10, log=lambda s: None)
    n_plain, (plain_width, _), duration = _gif(plain)
    assert width > plain_width  # the panel sits beside the game
    # Pillow merges identical consecutive frames and adds up their durations: the total is exact.
    assert duration == pytest.approx(100 * result_plain.frames, abs=10 * result_plain.frames)
    assert n_plain <= result_plain.frames


def test_record_mp4(tmaze_run, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio

    out = tmp_path / "tm.mp4"
    result = watch(tmaze_run, episodes=1, record=out, inspect=True, max_steps=3, fps=8, log=lambda s: None)
    reader = imageio.get_reader(out, format="FFMPEG")
    try:
        assert reader.count_frames() == result.frames
        frame = reader.get_data(0)
    finally:
        reader.close()
    assert frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0


def test_any_gymnasium_env_with_rgb_array(tmp_path):
    run = _make_run(tmp_path / "run", "CartPole-v1", core="gru")
    sink = ListSink()
    result = watch(run, episodes=1, max_steps=3, sink=sink, log=lambda s: None)
    assert result.lengths == [3] and len(sink.frames) == 4
    assert sink.frames[0].shape == (400, 600, 3)  # CartPole's own frame size: no upscale needed


@pytest.mark.parametrize("core,layers", [("gru", 2), ("none", 1)])
def test_inspect_other_cores(tmp_path, core, layers):
    run = _make_run(tmp_path / "run", "mnemo/TMaze-v0", core=core, layers=layers, env_kwargs={"corridor_length": 1})
    plain, inspected = ListSink(), ListSink()
    watch(run, episodes=1, max_steps=3, sink=plain, log=lambda s: None)
    watch(run, episodes=1, max_steps=3, sink=inspected, inspect=True, history=8, log=lambda s: None)
    assert len(plain.frames) == len(inspected.frames)
    assert inspected.frames[0].shape[1] > plain.frames[0].shape[1]
    assert len({f.shape for f in inspected.frames}) == 1


def test_window_mode_runs_headless(tmaze_run, capsys):
    result = watch(tmaze_run, episodes=2, max_steps=2, fps=1000, inspect=True, history=4)
    assert len(result.returns) == 2
    out = capsys.readouterr().out
    assert "episode 1: return" in out and "mean return" in out


def test_cli_records_and_prints_returns(tmaze_run, tmp_path, capsys):
    out = tmp_path / "cli.gif"
    assert main([str(tmaze_run), "--episodes", "1", "--max-steps", "2", "--stochastic", "--record", str(out)]) == 0
    assert out.is_file()
    assert "episode 1: return" in capsys.readouterr().out


@pytest.mark.parametrize("env_id", ["mnemo_test/NoRGB-v0", "mnemo_test/NoRGBFactory-v0"])
def test_env_that_cannot_render_rgb_array_is_a_clear_error(tmp_path, env_id, capsys):
    run = _make_run(tmp_path / "run", env_id)
    with pytest.raises(WatchError, match="does not support render_mode 'rgb_array'"):
        watch(run, episodes=1, sink=ListSink(), log=lambda s: None)
    assert main([str(run), "--record", str(tmp_path / "x.gif")]) == 2
    assert "rgb_array" in capsys.readouterr().err


def test_bad_paths_and_formats_are_clear_errors(tmaze_run, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "No checkpoint at" in err and "no such file" in err and "--run-dir" in err
    assert main([str(tmp_path)]) == 2  # a directory that is not a run
    assert "is it a training run?" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        watch(junk, sink=ListSink())
    with pytest.raises(WatchError, match="unknown format"):
        watch(tmaze_run, record=tmp_path / "play.avi", log=lambda s: None)


def test_mp4_without_imageio_ffmpeg_says_what_to_install(tmaze_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes the import fail
    with pytest.raises(WatchError, match="pip install imageio-ffmpeg"):
        watch(tmaze_run, record=tmp_path / "play.mp4", log=lambda s: None)


def test_without_pygame_the_panel_says_what_to_install(tmaze_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pygame", None)  # as if neither pygame nor pygame-ce were installed
    # The T-maze draws its frames with numpy: a plain recording needs no pygame.
    assert main([str(tmaze_run), "--record", str(tmp_path / "plain.gif"), "--max-steps", "2"]) == 0
    assert (tmp_path / "plain.gif").is_file()
    # The memory panel is drawn with pygame.
    assert main([str(tmaze_run), "--record", str(tmp_path / "panel.gif"), "--max-steps", "2", "--inspect"]) == 2
    err = capsys.readouterr().err
    assert "pip install pygame" in err and "pygame-ce" in err and "Traceback" not in err
    assert not (tmp_path / "panel.gif").exists()


def test_gymnasium_env_without_its_render_dependency_is_a_clear_error(tmp_path, monkeypatch, capsys):
    run = _make_run(tmp_path / "run", "CartPole-v1")
    monkeypatch.setitem(sys.modules, "pygame", None)  # Gymnasium's classic-control envs draw with pygame
    with pytest.raises(WatchError, match=r"'CartPole-v1' cannot draw its frames.*pygame"):
        watch(run, episodes=1, sink=ListSink(), log=lambda s: None)
    assert main([str(run), "--record", str(tmp_path / "x.gif")]) == 2
    assert "pygame-ce" in capsys.readouterr().err


def test_run_whose_env_import_is_missing_is_a_one_line_error(tmp_path, capsys):
    run = _make_run(tmp_path / "run", "mnemo/TMaze-v0", env_import=("no_such_game_module_xyz",))
    assert main([str(run), "--record", str(tmp_path / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--env-import no_such_game_module_xyz: no module" in err and "working directory" in err


def test_command_without_a_display_says_so_and_suggests_record(tmaze_run, capsys):
    # The suite runs SDL's dummy video driver: a window would open, but nobody would see it.
    assert main([str(tmaze_run), "--episodes", "1", "--max-steps", "1", "--fps", "1000"]) == 2
    err = capsys.readouterr().err
    assert "No display: SDL's video driver is 'dummy'" in err and "--record FILE.gif" in err
    assert "Traceback" not in err and "episode 1" not in capsys.readouterr().out
