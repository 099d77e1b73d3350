"""train.py flags, presets and config validation: bad input stops early with a message that says the fix."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.config import ConfigError, TrainConfig
from agents.train import cli as train

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_use_the_builtin_memory_task_and_its_preset():
    config, resume = train.resolve_config([])
    assert not resume
    assert config.env.env_id == "mnemo/TMaze-v0"
    assert config.env.num_envs == 16  # from the preset, not the dataclass default


def test_explicit_flags_override_the_preset():
    config, _ = train.resolve_config(["--num-envs", "4", "--core", "gru", "--separate-critic",
                                      "--encoder-sizes", "32,32", "--target-kl", "0.02", "--no-anneal-lr",
                                      "--env-kwargs", '{"corridor_length": 5}'])
    assert config.env.num_envs == 4 and config.policy.core == "gru" and config.policy.separate_critic
    assert config.policy.encoder_sizes == (32, 32) and config.ppo.target_kl == 0.02
    assert config.ppo.anneal_lr is False and config.env.env_kwargs == {"corridor_length": 5}


def test_env_import_is_repeatable():
    config, _ = train.resolve_config(["--env-id", "CartPole-v1", "--env-import", "a", "--env-import", "b"])
    assert config.env.env_import == ("a", "b")


@pytest.mark.parametrize(("flags", "message"), [
    (["--bptt-len", "64", "--num-steps", "32"], "--bptt-len (64) is longer than the rollout"),
    (["--num-minibatches", "1000"], "--num-minibatches (1000) exceeds"),
    (["--learning-rate", "0"], "--learning-rate must be > 0"),
    (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    (["--gamma", "0"], "--gamma must be in (0, 1]"),
    (["--num-envs", "0"], "--num-envs must be a positive integer"),
    (["--hidden-size", "-3"], "--hidden-size must be a positive integer"),
    (["--noise-correlation", "1"], "--noise-correlation must be in [0, 1)"),
    (["--noise-correlation", "-0.5"], "--noise-correlation must be in [0, 1)"),
    (["--stack-len", "3"], "--stack-len applies to --core stack only"),
    (["--core", "stack", "--stack-len", "0"], "--stack-len must be a positive integer"),
])
def test_invalid_hyperparameters_are_rejected_with_the_fix(flags, message):
    with pytest.raises(ConfigError) as err:
        train.resolve_config(flags)
    assert message in str(err.value)


def test_a_bad_choice_exits_with_one_line_naming_the_choices(capsys):
    with pytest.raises(SystemExit):
        train.resolve_config(["--core", "transformer"])
    assert "'transformer' is not a choice; Choices: lstm, gru" in capsys.readouterr().err


def test_config_round_trips_through_json():
    config = TrainConfig().with_overrides({"encoder_sizes": (8,), "env_import": ("x",), "target_kl": 0.1})
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="Unknown setting 'bptt'"):
        TrainConfig().with_overrides({"bptt": 3})


def test_main_reports_errors_without_a_traceback(tmp_path, capsys):
    code = train.main(["--env-id", "CartPole-v1", "--env-import", "no_such_module_xyz",
                       "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unknown_env_id_suggests_close_names(tmp_path, capsys):
    code = train.main(["--env-id", "mnemo/TMaz-v0", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "TMaze" in capsys.readouterr().err


def test_existing_run_dir_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    code = train.main(["--env-id", "CartPole-v1", "--run-dir", str(run)])
    assert code == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "config.json").read_text() == "{}"


def test_training_and_evaluation_need_no_pygame(tmp_path):
    """pygame (or pygame-ce) is an optional extra: only windows and drawing import it."""
    argv = ["--env-id", "mnemo/DarkCatchPixels-v0", "--total-steps", "64", "--num-envs", "2", "--num-steps", "32",
            "--bptt-len", "8", "--eval-episodes", "1", "--progress", "false", "--run-dir", str(tmp_path / "run")]
    code = ("import sys\n"
            "sys.modules['pygame'] = None  # as if neither pygame nor pygame-ce were installed\n"
            "import train\n"
            f"code = train.main({argv!r})\n"
            "import agents.deploy.export, agents.deploy.runner  # the game-loop runtime and export need no pygame\n"
            "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["eval_episodes"] == 1
    assert f"mnemo watch {tmp_path / 'run'} --inspect" in result.stderr  # what to do next


@pytest.mark.parametrize("bare,full", [("TMazeLong-v0", "mnemo/TMazeLong-v0"),
                                       ("PendulumNoVel-v1", "mnemo/PendulumNoVel-v1"),
                                       ("FogMaze", "mnemo/FogMaze-v0"),
                                       ("FogTeam-v0", "mnemo/FogTeam-v0")])
def test_bare_name_of_a_built_in_env_suggests_its_mnemo_id(tmp_path, capsys, bare, full):
    assert train.main(["--env-id", bare, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"pass --env-id {full}" in err and "Did you mean" not in err
    assert not (tmp_path / "r").exists()


def test_env_import_finds_a_module_in_the_working_directory(tmp_path, monkeypatch, capsys):
    """``python train.py`` puts train.py's folder on sys.path; the user's game module sits in the working dir."""
    (tmp_path / "cwd_game_xyz.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('mnemo_test/CwdGame-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',\n"
        "             max_episode_steps=20)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_game_xyz", raising=False)
    argv = ["--env-id", "mnemo_test/CwdGame-v0", "--env-import", "cwd_game_xyz", "--total-steps", "32",
            "--num-envs", "1", "--num-steps", "16", "--bptt-len", "8", "--num-minibatches", "1",
            "--eval-episodes", "1", "--progress", "false", "--run-dir", str(tmp_path / "run")]
    assert train.main(argv) == 0, capsys.readouterr().err
    assert "cwd_game_xyz" in sys.modules

    assert train.main(["--env-import", "not_here_xyz", "--run-dir", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert f"no module 'not_here_xyz' in the working directory ({tmp_path})" in err
    assert "PYTHONPATH" in err and "Traceback" not in err
