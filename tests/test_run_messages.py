"""What a run tells its user: the header's step budget and ret=, whether the return was still rising (with the
command to go on), the schedule note's grammar, the derived settings' reasons, and watch's no-display message."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.config import TrainConfig
from agents.run.run_log import derived_settings, return_trend
from agents.train import cli as train
from agents.train.schedule import continue_schedule

SMALL = ["--env-id", "mnemo/TMaze-v0", "--num-envs", "4", "--num-steps", "32", "--num-minibatches", "2",
         "--update-epochs", "1", "--eval-episodes", "0", "--no-progress", "--seed", "3"]


def test_the_header_says_why_the_bar_runs_past_total_steps_and_what_ret_is(tmp_path, capsys):
    assert train.main([*SMALL, "--total-steps", "200", "--run-dir", str(tmp_path / "run")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"Training mnemo/TMaze-v0 (lstm, 0/256 steps, --total-steps 200 rounded up to whole rollouts of "
                     f"4 envs x 32 steps) -> {tmp_path / 'run'}; the bar's ret= is the mean return of the last 20 "
                     f"training episodes")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    keys = list(summary)
    assert keys[keys.index("train_return_recent") + 1] == "train_return_trend"  # None here: 2 iterations


def write_returns(run_dir, per_iteration):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir))
    for iteration, returns in enumerate(per_iteration, start=1):
        for value in returns:
            writer.add_scalar("charts/episodic_return", value, iteration * 100)
    writer.close()


def test_return_trend_tells_a_rising_return_from_a_flat_noisy_one(tmp_path):
    rng = np.random.default_rng(0)
    write_returns(tmp_path / "rising", [[i + rng.normal(), i + rng.normal()] for i in range(50)])
    write_returns(tmp_path / "flat", [[rng.normal(), rng.normal()] for _ in range(50)])
    write_returns(tmp_path / "short", [[i] for i in range(4)])
    rising, flat = return_trend(tmp_path / "rising"), return_trend(tmp_path / "flat")
    assert rising["still_rising"] and rising["change"] == pytest.approx(10.0, abs=1.0)
    assert not flat["still_rising"] and abs(flat["change"]) < flat["noise"]
    assert return_trend(tmp_path / "short") is None  # under 3 iterations per window
    assert return_trend(tmp_path / "nothing") is None


def test_a_still_rising_return_ends_with_the_command_to_go_on(tmp_path, monkeypatch):
    summary = {"train_return_trend": {"change": 12.5, "noise": 3.0, "still_rising": True}, "total_steps": 100_352}
    monkeypatch.setattr("sys.argv", ["mnemo train"])
    line = train.still_rising_line(summary, tmp_path / "run", 100_000)
    assert line == (f"The training return was still rising at the end (+12.5 over the last fifth of the steps, noise "
                    f"3); to train on: mnemo train --resume {tmp_path / 'run'} --total-steps 300000")
    monkeypatch.setattr("sys.argv", ["train.py"])
    assert "python train.py --resume" in train.still_rising_line(summary, tmp_path / "run", 100_000)
    flat = {**summary, "train_return_trend": {"change": 1.0, "noise": 3.0, "still_rising": False}}
    assert train.still_rising_line(flat, tmp_path / "run", 100_000) is None


def test_the_schedule_note_matches_its_verb_to_one_thing():
    saved = TrainConfig().with_overrides({"total_steps": 1024, "num_envs": 4, "num_steps": 32,
                                          "anneal_lr": True, "anneal_clip": False}).validate()
    longer = saved.with_overrides({"total_steps": 2048}).validate()
    _, note = continue_schedule(None, saved, longer, iteration=4)
    assert "the learning rate (" in note and ") decays linearly from its current value to 0" in note, note


def fake_policy(observation_space):
    return SimpleNamespace(observation_space=observation_space, normalize_obs=False)


def test_obs_encoder_reason_is_the_branch_that_applied():
    cfg = TrainConfig()
    grid = spaces.Box(0, 10, (7, 7, 3), np.uint8)
    derived = derived_settings(cfg, fake_policy(grid), torch.device("cpu"), None)
    assert derived["obs_encoder"] == {"value": "grid", "why": "uint8 7x7x3 with a side below 16: grid of codes"}
    frame = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    derived = derived_settings(cfg, fake_policy(spaces.Dict({"frame": frame, "grid": grid})), torch.device("cpu"),
                               None)
    assert derived["obs_encoder"]["why"] == ("uint8 64x64x3 with both sides >= 16 and bound 255: image; "
                                             "uint8 7x7x3 with a side below 16: grid of codes")


def test_a_ray_run_records_the_worker_layout_it_used():
    cfg = TrainConfig().with_overrides({"backend": "ray", "num_envs": 8}).validate()
    derived = derived_settings(cfg, fake_policy(spaces.Box(-1, 1, (3,))), torch.device("cpu"), None)
    assert derived["num_workers"]["value"] == 2 and derived["envs_per_worker"]["value"] == 4
    local = derived_settings(TrainConfig(), fake_policy(spaces.Box(-1, 1, (3,))), torch.device("cpu"), None)
    assert "envs_per_worker" not in local


def test_watch_without_a_display_says_so_before_sdl_looks_for_one(monkeypatch):
    from agents.watch import viewer

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(viewer.sys, "platform", "linux")

    def sdl_started():
        raise AssertionError("SDL was initialised: it prints its own errors (XDG_RUNTIME_DIR ...) first")

    monkeypatch.setattr(viewer, "import_pygame", sdl_started)
    with pytest.raises(viewer.WatchError, match=r"^No display: neither DISPLAY nor WAYLAND_DISPLAY is set.*--record"):
        viewer.WindowSink(30, "mnemo", require_display=True)
