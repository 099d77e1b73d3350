"""Bad input fails early with a message that names the problem and the fix, and never damages a run directory.

Complements test_cli_and_config.py (unknown env id, missing --env-import module, hyperparameter ranges) and
test_spaces.py (unsupported spaces at the policy): here the same mistakes go through the whole command.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import faulty_envs  # noqa: F401  (registers the tests/ env ids)
import numpy as np
import pytest
import torch

from agents.config import ConfigError, TrainConfig
from agents.rollout.collector import EnvError, make_vector_env
from agents.run.checkpoint import LATEST, PREVIOUS, load_payload
from agents.train import cli as train
from agents.train.trainer import Trainer

FAST = ["--num-envs", "4", "--num-steps", "32", "--bptt-len", "8", "--num-minibatches", "2", "--update-epochs",
        "1", "--eval-episodes", "0", "--no-progress", "--checkpoint-every", "128"]
FAULTY = ["--env-id", "tests/Faulty-v0", "--env-import", "faulty_envs", *FAST]


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Every file of a run (but the lock) with a hash of its bytes."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tmaze"
    assert train.main(["--run-dir", str(run), "--total-steps", "256", *FAST]) == 0
    return run


# --------------------------------------------------------------------------- before any work
@pytest.mark.parametrize(("env_id", "named"), [("tests/TextObs-v0", "Text"), ("tests/SequenceAction-v0", "Sequence")])
@pytest.mark.parametrize("asynchronous", [False, True])
def test_unsupported_space_is_named_and_nothing_is_written(tmp_path, capsys, env_id, named, asynchronous):
    flags = ["--async-envs"] if asynchronous else []
    code = train.main(["--env-id", env_id, "--env-import", "faulty_envs", "--run-dir", str(tmp_path / "r"), *flags,
                       *FAST])
    err = capsys.readouterr().err
    assert code == 2 and named in err and "not supported" in err and "Wrap the env" in err
    assert not (tmp_path / "r").exists()
    assert not multiprocessing.active_children()  # async workers were shut down


def test_bad_env_kwargs_name_the_argument(tmp_path, capsys):
    code = train.main(["--env-kwargs", '{"corridor_lenght": 5}', "--run-dir", str(tmp_path / "r"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "corridor_lenght" in err and "--env-kwargs" in err
    code = train.main(["--env-kwargs", '{"corridor_length": -1}', "--run-dir", str(tmp_path / "r"), *FAST])
    assert code == 2 and "corridor_length must be an integer >= 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_env_with_a_missing_dependency_says_to_install_it(tmp_path, capsys):
    code = train.main(["--env-id", "tests/NeedsMissingPackage-v0", "--env-import", "faulty_envs", "--run-dir",
                       str(tmp_path / "r"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "gymnasium[box2d]" in err and "install" in err
    assert "arguments" not in err  # the env's arguments are not what is wrong
    assert not (tmp_path / "r").exists()


def test_env_import_of_a_module_that_fails_to_import(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken_envs_mod.py").write_text("raise RuntimeError('missing licence key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = train.main(["--env-id", "CartPole-v1", "--env-import", "broken_envs_mod", "--run-dir",
                       str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "broken_envs_mod" in err and "missing licence key" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--learning-rate", "nan"], "--learning-rate must be > 0"),
    (["--learning-rate", "-0.001"], "--learning-rate must be > 0"),
    (["--encoder-sizes", "64,0"], "--encoder-sizes must list positive layer sizes"),
    (["--bptt-len", "0"], "--bptt-len must be a positive integer"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer"),
    (["--gamma", "-0.1"], "--gamma must be in (0, 1]"),
    (["--gae-lambda", "1.5"], "--gae-lambda must be in [0, 1]"),
    (["--clip-coef", "0"], "--clip-coef must be > 0"),
])
def test_more_invalid_hyperparameters(flags, message):
    with pytest.raises(ConfigError) as err:
        train.resolve_config(flags)
    assert message in str(err.value)


def test_wrong_types_in_a_json_config_are_named():
    with pytest.raises(ConfigError, match="--learning-rate must be a number, got 'fast'"):
        TrainConfig.from_dict({"ppo": {"learning_rate": "fast"}}).validate()
    with pytest.raises(ConfigError, match=r"--num-envs must be an integer, got 2\.5"):
        TrainConfig.from_dict({"env": {"num_envs": 2.5}}).validate()
    with pytest.raises(ConfigError, match="--on-nonfinite must be one of stop, skip"):
        TrainConfig.from_dict({"run": {"on_nonfinite": "ignore"}}).validate()


def test_sizes_need_not_divide(tmp_path):
    """Minibatches are groups of whole sequences (np.array_split), so ragged sizes are fine by design."""
    code = train.main(["--run-dir", str(tmp_path / "r"), "--total-steps", "90", "--num-envs", "3",
                          "--num-steps", "30", "--bptt-len", "7", "--num-minibatches", "4", "--eval-episodes", "0",
                          "--no-progress"])
    assert code == 0


# --------------------------------------------------------------------------- run directories
def test_overwrite_replaces_a_run_and_refuses_foreign_directories(tmp_path, finished_run, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "summary.json").write_text('{"old": true}')
    assert train.main(["--run-dir", str(run), "--total-steps", "128", *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert train.main(["--run-dir", str(run), "--total-steps", "128", "--overwrite", *FAST]) == 0
    assert json.loads((run / "summary.json").read_text())["total_steps"] == 128
    assert len(list(run.glob("events.out.tfevents.*"))) == 1

    (run / "notes.txt").write_text("mine")
    assert train.main(["--run-dir", str(run), "--overwrite", *FAST]) == 2
    assert "notes.txt" in capsys.readouterr().err and (run / "notes.txt").exists()
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    assert train.main(["--run-dir", str(home), "--overwrite", *FAST]) == 2
    assert (home / "thesis.tex").read_text() == "precious"


def test_resume_and_run_dir_must_agree(tmp_path, finished_run, capsys):
    assert train.main(["--resume", str(finished_run), "--run-dir", str(tmp_path / "other")]) == 2
    assert "name different directories" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "named"), [
    (["--hidden-size", "7"], "--hidden-size: checkpoint 64, requested 7"),
    (["--core", "gru"], "--core: checkpoint 'lstm', requested 'gru'"),
    (["--num-envs", "8"], "--num-envs 8"),
    (["--env-id", "mnemo/CartPoleNoVel-v1"], "--env-id mnemo/CartPoleNoVel-v1 asks for another env"),
    (["--env-kwargs", '{"n_symbols": 3}', "--env-id", "mnemo/CountRecall-v0"], "asks for another env"),
    (["--env-id", "mnemo/CartPoleNoVel-v1", "--allow-env-change"], "observation space"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--env-import", "no_such_module_xyz"], "no_such_module_xyz"),
])
def test_a_bad_resume_names_the_mismatch_and_leaves_the_run_untouched(finished_run, capsys, flags, named):
    before = fingerprint(finished_run)
    assert train.main(["--resume", str(finished_run), "--no-progress", *flags]) == 2
    assert named in capsys.readouterr().err
    assert fingerprint(finished_run) == before


# --------------------------------------------------------------------------- misbehaving envs
@pytest.mark.parametrize(("mode", "what"), [("nan_obs", "non-finite observation"),
                                           ("inf_reward", "non-finite reward inf")])
def test_nonfinite_env_output_stops_with_env_index_and_step_after_saving(tmp_path, capsys, mode, what):
    run = tmp_path / "r"
    kwargs = json.dumps({"mode": mode, "fail_index": 2, "fail_at": 45})  # env 2's 45th step: iteration 2
    code = train.main([*FAULTY, "--env-kwargs", kwargs, "--run-dir", str(run), "--total-steps", "1024"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"env 2 returned a {what} at step 5 of its episode (step 12 of this rollout)" in err
    assert "--on-nonfinite skip" in err and f"--resume {run}" in err
    _, latest = load_payload(run / "checkpoints" / LATEST)
    _, previous = load_payload(run / "checkpoints" / PREVIOUS)
    assert latest["counters"]["global_step"] == 128 and not latest["resume"]["exact"]
    assert previous["counters"]["global_step"] == 128 and previous["resume"]["exact"]
    # Resuming with the offending episodes skipped finishes the run.
    assert train.main(["--resume", str(run), "--on-nonfinite", "skip"]) == 0


def test_nonfinite_skip_ends_the_episode_and_trains_on(tmp_path):
    kwargs = {"mode": "nan_obs", "fail_index": 1, "fail_at": 7, "repeat": True}
    config = TrainConfig().with_overrides({
        "env_id": "tests/Faulty-v0", "env_import": ("faulty_envs",), "env_kwargs": kwargs, "num_envs": 4,
        "num_steps": 32, "bptt_len": 8, "num_minibatches": 2, "update_epochs": 1, "total_steps": 512,
        "eval_episodes": 0, "progress": False, "on_nonfinite": "skip", "run_dir": str(tmp_path / "r")})
    trainer = Trainer(config.validate())
    with pytest.warns(RuntimeWarning, match="--on-nonfinite skip"):
        summary = trainer.train()
    assert summary["nonfinite_skips"] == 128 // 7
    assert all(torch.isfinite(p).all() for p in trainer.policy.parameters())
    assert all(np.isfinite(r) for r in trainer.recent_returns)


def test_nonfinite_reset_cannot_be_skipped(tmp_path, capsys):
    kwargs = json.dumps({"mode": "nan_reset", "fail_index": 0, "fail_at": 5})
    code = train.main([*FAULTY, "--env-kwargs", kwargs, "--on-nonfinite", "skip", "--run-dir", str(tmp_path / "r"),
                       "--total-steps", "256"])
    assert code == 1 and "env 0 returned a non-finite observation from reset" in capsys.readouterr().err


@pytest.mark.parametrize("asynchronous", [False, True])
def test_env_exception_names_the_env_keeps_checkpoints_and_shuts_workers(tmp_path, capsys, asynchronous):
    run = tmp_path / "r"
    kwargs = json.dumps({"mode": "raise", "fail_index": 2, "fail_at": 45})
    flags = ["--async-envs"] if asynchronous else []
    code = train.main([*FAULTY, *flags, "--env-kwargs", kwargs, "--run-dir", str(run), "--total-steps", "1024"])
    err = capsys.readouterr().err
    assert code == 1
    assert "env 2 raised RuntimeError in step: simulated failure at step 45" in err
    assert "faulty_envs.py" in err  # the env's own traceback is shown
    _, previous = load_payload(run / "checkpoints" / PREVIOUS)
    assert previous["counters"]["global_step"] == 128 and previous["resume"]["exact"]
    _, latest = load_payload(run / "checkpoints" / LATEST)
    assert latest["counters"]["global_step"] == 128
    assert not multiprocessing.active_children()


def test_env_error_from_the_vector_env_is_an_env_error():
    envs = make_vector_env("tests/Faulty-v0", 3, {"mode": "raise", "fail_index": 1, "fail_at": 1})
    envs.reset(seed=1)
    with pytest.raises(EnvError) as err:
        envs.step(np.zeros(3, dtype=np.int64))
    assert err.value.env_index == 1 and "Traceback" in err.value.env_traceback
    envs.close()


def test_diverging_update_is_not_saved(tmp_path, capsys, monkeypatch):
    from agents.train import trainer as trainer_module

    real_update = trainer_module.ppo_update

    def poisoned(policy, *args, **kwargs):
        stats = real_update(policy, *args, **kwargs)
        if trainer_module_state["calls"] == 1:
            with torch.no_grad():
                next(policy.parameters()).fill_(float("nan"))
        trainer_module_state["calls"] += 1
        return stats

    trainer_module_state = {"calls": 0}
    monkeypatch.setattr(trainer_module, "ppo_update", poisoned)
    run = tmp_path / "r"
    code = train.main(["--run-dir", str(run), "--total-steps", "1024", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "NaN or infinite weights" in err and "nothing was saved" in err
    payload, meta = load_payload(run / "checkpoints" / LATEST)
    assert meta["counters"]["global_step"] == 128
    assert all(torch.isfinite(t).all() for t in payload["policy"].values())


def test_resuming_a_finished_run_leaves_it_alone(tmp_path, capsys):
    """Issue 19, item 3: it used to evaluate again and overwrite summary.json with zero wall time and sps."""
    run = tmp_path / "done"
    assert train.main(["--run-dir", str(run), "--total-steps", "128", *FAST]) == 0
    capsys.readouterr()
    before = fingerprint(run)
    assert train.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "the run is finished (128 steps done" in err and "--total-steps N with N > 128" in err
    assert fingerprint(run) == before
    # A larger budget extends it.
    assert train.main(["--resume", str(run), "--total-steps", "256", "--eval-episodes", "0", "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["total_steps"] == 256
