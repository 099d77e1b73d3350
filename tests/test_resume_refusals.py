"""A resume on another env than the run trained on is refused (exit 2, nothing changed on disk) unless
--allow-env-change says it is meant, and then config.json records the change; every space mismatch names the env
the run was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gymnasium import spaces

from agents.run.checkpoint import LATEST, CheckpointError, check_spaces_match, load_payload
from agents.train import cli as train

SMALL = ["--env-id", "mnemo/TMaze-v0", "--num-envs", "4", "--num-steps", "32", "--num-minibatches", "2",
         "--update-epochs", "1", "--eval-episodes", "0", "--no-progress", "--seed", "3"]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def run(tmp_path) -> Path:
    run = tmp_path / "run"
    assert train.main([*SMALL, "--total-steps", "128", "--run-dir", str(run)]) == 0
    return run


def test_resume_on_another_env_is_refused_without_a_trace(run, capsys):
    capsys.readouterr()
    before = snapshot(run)
    argv = ["--resume", str(run), "--env-id", "mnemo/TMazeLong-v0", "--total-steps", "256", "--no-progress"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --resume {run}: the run was trained on mnemo/TMaze-v0, and --env-id mnemo/TMazeLong-v0 "
                   f"asks for another env; drop it to resume, or add --allow-env-change to train on the new env "
                   f"from here on."]
    assert snapshot(run) == before


def test_allow_env_change_resumes_and_config_json_says_so(run, capsys):
    argv = ["--resume", str(run), "--env-id", "mnemo/TMazeLong-v0", "--total-steps", "256", "--no-progress",
            "--allow-env-change"]
    assert train.main(argv) == 0
    assert "the env settings changed (env_id)" in capsys.readouterr().err
    env = json.loads((run / "config.json").read_text())["env"]
    assert env["env_id"] == "mnemo/TMazeLong-v0"
    assert env["preset"] == "mnemo/TMaze-v0, then --allow-env-change from mnemo/TMaze-v0 to mnemo/TMazeLong-v0"
    # and a later plain resume of the changed run is not an env change
    assert train.main(["--resume", str(run), "--total-steps", "384", "--no-progress"]) == 0


def test_a_space_mismatch_names_the_env_the_run_was_trained_on(run):
    _, meta = load_payload(run / "checkpoints" / LATEST)
    with pytest.raises(CheckpointError) as exc:
        check_spaces_match(meta, spaces.Box(0.0, 1.0, (5,)), spaces.Discrete(4), "mnemo/Other-v0", "ckpt.pt")
    message = str(exc.value)
    assert "was trained on mnemo/TMaze-v0" in message and "--env-id mnemo/TMaze-v0" in message, message
