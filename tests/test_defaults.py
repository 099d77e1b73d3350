"""What an env without a preset gets: --preset none, the grid-of-codes encoder, and an evaluation that reports
both the greedy and the sampled return."""

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.config import PolicyConfig, TrainConfig
from agents.model.encoders import GridEncoder, ImageEncoder
from agents.model.policy import RecurrentActorCritic
from agents.spaces import choose_obs_encoder
from agents.train import cli as train
from agents.trees import obs_to_tensor


def test_preset_none_gives_the_defaults_and_the_config_records_which_preset_was_used():
    tuned, _ = train.resolve_config([])
    assert tuned.env.preset == "mnemo/TMaze-v0" and tuned.env.num_envs == 16
    plain, _ = train.resolve_config(["--preset", "none"])
    assert plain.env.preset == "none"
    defaults = TrainConfig()
    assert (plain.env.num_envs, plain.ppo.learning_rate) == (defaults.env.num_envs, defaults.ppo.learning_rate)
    other, _ = train.resolve_config(["--env-id", "CartPole-v1"])
    assert other.env.preset == "none"  # auto, but no preset exists for this id


def test_bad_preset_name_is_refused_with_the_choices(capsys):
    assert train.main(["--preset", "fast"]) == 2
    assert "--preset must be auto or none" in capsys.readouterr().err


@pytest.mark.parametrize(("space", "kind"), [
    (spaces.Box(0, 255, (7, 7, 3), np.uint8), "grid"),       # MiniGrid's view: object, colour, state codes
    (spaces.Box(0, 10, (32, 32, 1), np.uint8), "grid"),      # values stop below 255: codes, not pixels
    (spaces.Box(0, 255, (64, 64, 3), np.uint8), "image"),    # a frame
    (spaces.Box(0, 255, (3, 40, 40), np.uint8), "image"),    # a frame, channels first
    (spaces.Box(-1, 1, (7, 7, 3), np.float32), "flat"),      # floats are a vector whatever their shape
])
def test_auto_tells_grids_of_codes_from_frames(space, kind):
    assert choose_obs_encoder(space) == kind


def test_obs_encoder_flag_overrides_auto_and_builds_the_chosen_encoder():
    grid = spaces.Box(0, 255, (7, 7, 3), np.uint8)
    encoders = {name: RecurrentActorCritic(grid, spaces.Discrete(3), PolicyConfig(obs_encoder=name)).preprocess
                for name in ("auto", "image", "grid", "flat")}
    assert isinstance(encoders["auto"], GridEncoder) and isinstance(encoders["grid"], GridEncoder)
    assert isinstance(encoders["image"], ImageEncoder)
    assert encoders["flat"].out_features == 7 * 7 * 3


def test_grid_encoder_tells_neighbouring_codes_apart_and_keeps_every_cell():
    # As brightness, codes 4 and 5 differ by 1/255; embedded, they are as different as codes 1 and 9.
    torch.manual_seed(0)
    space = spaces.Box(0, 255, (7, 7, 3), np.uint8)
    encoder = GridEncoder(space)
    obs = np.zeros((3, 7, 7, 3), np.uint8)
    obs[0, 3, 3, 0], obs[1, 3, 3, 0], obs[2, 6, 6, 0] = 4, 5, 4
    features = encoder(obs_to_tensor(obs, "cpu"))
    assert features.shape == (3, 256)
    assert not torch.allclose(features[0], features[1], atol=1e-3)
    assert not torch.allclose(features[0], features[2], atol=1e-3)  # the corner cell is not merged away
    chw = GridEncoder(spaces.Box(0, 255, (3, 7, 7), np.uint8))
    chw.load_state_dict(encoder.state_dict())
    assert torch.allclose(chw(obs_to_tensor(obs.transpose(0, 3, 1, 2).copy(), "cpu")), features)


def _tiny_run(tmp_path, *flags):
    run_dir = tmp_path / "run"
    assert train.main(["--preset", "none", "--total-steps", "256", "--num-envs", "2", "--num-steps", "64",
                       "--bptt-len", "16", "--eval-episodes", "4", "--no-progress", "--run-dir", str(run_dir),
                       *flags]) == 0
    return json.loads((run_dir / "summary.json").read_text())


def test_evaluation_reports_greedy_and_sampled_returns(tmp_path, capsys):
    summary = _tiny_run(tmp_path)
    for key in ("eval_return_mean", "eval_return_std", "eval_sampled_return_mean", "eval_sampled_return_std"):
        assert isinstance(summary[key], float), key
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "greedy" in last and "sampled" in last


def test_eval_mode_greedy_leaves_the_sampled_figures_out(tmp_path):
    summary = _tiny_run(tmp_path, "--eval-mode", "greedy")
    assert summary["eval_return_mean"] is not None and summary["eval_sampled_return_mean"] is None


@pytest.mark.parametrize(("space", "normalise"), [
    (spaces.Box(-1, 1, (3,), np.float32), False),                              # on a small known scale
    (spaces.Box(-np.inf, np.inf, (3,), np.float32), True),                    # unbounded
    (spaces.Box(np.array([-4.8, -50.0]), np.array([4.8, 50.0]), dtype=np.float32), True),  # badly scaled
    (spaces.Dict({"cue": spaces.Discrete(3), "pos": spaces.Box(0, 100, (2,), np.float32)}), True),
    (spaces.Box(0, 255, (64, 64, 3), np.uint8), False),                       # a frame: the CNN scales it
])
def test_observation_normalisation_is_derived_from_the_space_unless_set(space, normalise):
    policy = RecurrentActorCritic(space, spaces.Discrete(2), PolicyConfig(hidden_size=8))
    assert policy.normalize_obs is normalise
    forced = RecurrentActorCritic(space, spaces.Discrete(2), PolicyConfig(hidden_size=8, normalize_obs=False))
    assert forced.normalize_obs is False


def test_config_and_summary_record_what_was_derived_and_why(tmp_path):
    summary = _tiny_run(tmp_path)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["env"]["preset"] == summary["preset"] == "none"
    assert saved["derived"] == summary["derived"]
    assert "bptt_len" not in saved["derived"]  # set by a flag: nothing to derive
    assert saved["derived"]["normalize_obs"]["value"] is False  # the T-maze's observations are bounded
    for entry in summary["derived"].values():
        assert set(entry) == {"value", "why"} and entry["why"]
    reloaded = json.loads(json.dumps(TrainConfig.from_dict(saved).to_dict()))  # the record is skipped on load
    assert reloaded == {k: v for k, v in saved.items() if k != "derived"}


def test_bptt_len_unset_takes_the_whole_rollout():
    config, _ = train.resolve_config(["--preset", "none", "--num-steps", "64"])
    assert config.ppo.bptt_len is None and config.sequence_len == 64
    config, _ = train.resolve_config(["--preset", "none", "--num-steps", "64", "--bptt-len", "16"])
    assert config.sequence_len == 16


def test_a_config_saved_before_obs_encoder_existed_keeps_the_cnn_for_small_images():
    saved = TrainConfig().to_dict()
    del saved["policy"]["obs_encoder"]
    config = TrainConfig.from_dict(saved)
    assert config.policy.obs_encoder == "image"
    policy = RecurrentActorCritic(spaces.Box(0, 255, (7, 7, 3), np.uint8), spaces.Discrete(2), config.policy)
    assert isinstance(policy.preprocess, ImageEncoder)


def test_a_config_saved_before_chrono_became_a_default_keeps_how_it_trained():
    saved = TrainConfig().to_dict()
    for key in ("chrono_init", "chrono_gates", "chrono_fraction"):
        del saved["policy"][key]
    assert TrainConfig.from_dict(saved).validate().policy.chrono_init is None  # saved before chrono existed
    saved["policy"].update(chrono_init=None, chrono_gates="both")  # saved before chrono was a default
    assert TrainConfig.from_dict(saved).validate().policy.chrono_init is None
    saved["policy"].update(chrono_init=64, chrono_gates="forget")  # saved before --chrono-fraction existed
    policy = TrainConfig.from_dict(saved).validate().policy
    assert (policy.chrono_init, policy.chrono_gates, policy.chrono_fraction) == (64, "forget", 1.0)


def test_the_defaults_put_chrono_on_half_the_forget_gates_and_tuned_presets_keep_it_off():
    policy = train.resolve_config(["--preset", "none"])[0].policy
    assert (policy.chrono_init, policy.chrono_gates, policy.chrono_fraction, policy.forget_bias) == (
        128, "forget", 0.5, 1.0)
    assert train.resolve_config(["--env-id", "mnemo/TMaze-v0"])[0].policy.chrono_init is None
    assert train.resolve_config(["--preset", "none", "--chrono-init", "none"])[0].policy.chrono_init is None


def test_the_derivation_rules_follow_an_explicit_obs_encoder():
    from agents.spaces import has_image, needs_obs_normalization

    frame = spaces.Box(0, 255, (32, 32, 3), np.uint8)
    assert has_image(frame) and not needs_obs_normalization(frame)
    # Read as a flat vector, a frame is a badly scaled vector (0-255) and no CNN runs.
    assert not has_image(frame, "flat") and needs_obs_normalization(frame, "flat")


def test_the_defaults_suite_holds_budget_only_presets_to_their_own_budget():
    # A budget-only preset promises that the defaults reach the threshold within it; every other built-in gets
    # twice its preset's budget (the target of the defaults benchmark).
    from benchmarks.defaults_suite import SUITE
    from envs.presets import BUDGET_ONLY, PRESETS

    for env_id, preset in PRESETS.items():
        expected = BUDGET_ONLY[env_id] if env_id in BUDGET_ONLY else 2 * preset["total_steps"]
        assert SUITE[env_id].budget == expected, env_id
