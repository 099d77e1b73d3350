"""Damaged checkpoints: one short line that says what is damaged, what was used instead, what was lost, and the
command that keeps the most (best.pt when latest.pt and previous.pt are both gone). Files are really damaged:
truncated, or a byte flipped (which only the digest notices)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.config import TrainConfig
from agents.run.checkpoint import BEST, LATEST, PREVIOUS, CheckpointError, load_payload, load_policy
from agents.train import cli as train
from agents.train.trainer import Trainer

SMALL = ["--env-id", "mnemo/CartPoleNoVel-v1", "--num-envs", "4", "--num-steps", "64", "--bptt-len", "8",
         "--num-minibatches", "2", "--update-epochs", "1", "--eval-episodes", "0", "--no-progress",
         "--checkpoint-every", "512", "--seed", "3", "--preset", "none"]


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of 1024 steps: latest.pt at 1024, previous.pt at 512, and a best.pt."""
    run = tmp_path_factory.mktemp("damaged") / "run"
    config = TrainConfig().with_overrides({"env_id": "mnemo/CartPoleNoVel-v1", "num_envs": 4, "num_steps": 64,
                                           "bptt_len": 8, "num_minibatches": 2, "update_epochs": 1,
                                           "eval_episodes": 0, "progress": False, "checkpoint_every": 512,
                                           "seed": 3, "total_steps": 1024, "run_dir": str(run)}).validate()
    Trainer(config).train()
    assert (run / "checkpoints" / BEST).exists()
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def best_step(run: Path) -> int:
    return load_payload(run / "checkpoints" / BEST)[1]["counters"]["global_step"]


def test_a_damaged_file_is_named_in_one_short_line(run):
    damage(run / "checkpoints" / LATEST, "truncate")
    with pytest.raises(CheckpointError) as exc:
        load_payload(run / "checkpoints" / LATEST)
    message = str(exc.value)
    assert "damaged (truncated or corrupted)" in message and len(message) < 200, message
    assert "miniz" not in message and "PytorchStreamReader" not in message


@pytest.mark.parametrize(("latest_damage", "previous_damage"), [("truncate", "flip"), ("flip", "truncate")])
def test_resume_with_latest_and_previous_damaged_names_best_and_how_to_continue_from_it(
        run, capsys, latest_damage, previous_damage):
    damage(run / "checkpoints" / LATEST, latest_damage)
    damage(run / "checkpoints" / PREVIOUS, previous_damage)
    before = snapshot(run)
    assert train.main([*SMALL, "--resume", str(run), "--total-steps", "1536"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0].replace(str(run), "RUN")) < 250, err
    line = err[0]
    assert "latest.pt and previous.pt are both damaged" in line
    assert f"best.pt (step {best_step(run):,}) is intact" in line
    cp = f"cp {run / 'checkpoints' / BEST} {run / 'checkpoints' / LATEST}"
    assert cp in line and "--overwrite would delete it" in line
    assert snapshot(run) == before  # nothing written, renamed or deleted

    # The advice works: continuing from best.pt.
    shutil.copyfile(run / "checkpoints" / BEST, run / "checkpoints" / LATEST)
    assert train.main([*SMALL, "--resume", str(run), "--total-steps", "1536"]) == 0
    assert load_payload(run / "checkpoints" / LATEST)[1]["counters"]["global_step"] == 1536


def test_resume_with_latest_damaged_says_what_was_used_and_what_was_lost(run, capsys):
    damage(run / "checkpoints" / LATEST, "truncate")
    assert train.main([*SMALL, "--resume", str(run), "--total-steps", "1536"]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warning == ["warning: latest.pt is damaged (truncated or corrupted) (kept as latest.pt.corrupt): resuming "
                       "from previous.pt at step 512 of 1,536; the training after it (at most 512 steps, "
                       "--checkpoint-every) is lost and runs again."]


def test_watch_and_export_with_latest_and_previous_damaged_point_to_best(run, capsys):
    damage(run / "checkpoints" / LATEST, "truncate")
    damage(run / "checkpoints" / PREVIOUS, "flip")
    with pytest.raises(CheckpointError) as exc:
        load_policy(run)
    message = str(exc.value)
    assert "latest.pt and previous.pt are both damaged" in message and "--which best.pt" in message, message
    assert len(message) < 300
    load_policy(run, which=BEST)  # and that is what works

    from agents.deploy.export_cli import main as export_main

    assert export_main([str(run), "--out", str(run / "policy.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--which best.pt" in err[0], err


def test_watch_with_latest_damaged_says_what_it_loaded_instead(run):
    damage(run / "checkpoints" / LATEST, "flip")
    with pytest.warns(UserWarning) as record:
        load_policy(run)
    messages = [str(w.message) for w in record]
    assert messages == ["latest.pt is damaged (truncated or corrupted): loaded previous.pt (step 512) instead; "
                        "--which best.pt loads the best checkpoint."]
