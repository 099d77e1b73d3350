"""--sparse-noise (opt-in): correlated sampling noise switched on when the first episodes all return the same.

Off by default: a default run has no rule state, no counter and no summary entry. Asked for, the rule either
leaves a run bitwise as it was without it (returns differ) or switches the noise on for good (they never did);
its state travels in the checkpoints (resume across the switch: tests/test_crash_resume.py; the Ray backend:
tests/test_ray_backend.py).
"""

from __future__ import annotations

import json

import pytest
import torch

from agents.config import ConfigError, TrainConfig
from agents.model.noise import CorrelatedNoise
from agents.run.checkpoint import LATEST, load_payload
from agents.train.sparse_noise import OFF, ON, UNDECIDED, SparseRewardNoise
from agents.train.trainer import Trainer

SMALL = {"sparse_noise": 0.98, "total_steps": 1536, "num_envs": 4, "num_steps": 64, "bptt_len": 8, "num_minibatches": 2,
         "update_epochs": 2, "eval_episodes": 0, "progress": False, "seed": 3}


def rule(**overrides) -> SparseRewardNoise:
    return SparseRewardNoise(TrainConfig().with_overrides({"sparse_noise": 0.98, "sparse_noise_episodes": 4,
                                                           **overrides}).validate())


def test_identical_returns_switch_the_noise_on_once_enough_episodes_have_finished():
    noise = rule()
    assert not noise.observe([], 100)  # a rollout in which no episode ended changes nothing
    assert not noise.observe([-200.0, -200.0], 200) and noise.decision == UNDECIDED
    assert noise.observe([-200.0, -200.0, -200.0], 300)  # the 5th episode: 4 reached, all the same
    assert noise.on and noise.decided_at_step == 300
    assert not noise.observe([1.0], 400) and noise.on  # for good, whatever comes later
    assert noise.summary()["value"] == ON and "-200.0" in noise.summary()["why"]


def test_one_different_return_decides_off_for_good():
    noise = rule()
    noise.observe([0.0, 0.0], 100)
    assert not noise.observe([0.0, 0.5], 200)  # differs before the 4th episode
    assert noise.decision == OFF and noise.decided_at_step == 200
    assert not noise.observe([0.0] * 10, 300) and noise.decision == OFF


def test_a_rollout_that_reaches_the_count_with_a_different_return_decides_off():
    noise = rule()
    assert not noise.observe([1.0, 1.0, 1.0, 1.0, 2.0], 100)
    assert noise.decision == OFF


@pytest.mark.parametrize(("overrides", "why"), [
    ({"sparse_noise": 0.0}, "--sparse-noise 0"),
    ({"noise_correlation": 0.9}, "--noise-correlation"),
    ({"exploration": "rnd"}, "--exploration rnd"),
])
def test_the_rule_stands_aside_where_the_run_chose_its_own_exploration(overrides, why):
    noise = rule(**overrides)
    assert not noise.active and noise.decision == OFF
    assert not noise.observe([0.0] * 8, 100) and not noise.on
    assert why in noise.summary()["why"]


def test_state_round_trips_and_a_checkpoint_from_before_the_rule_goes_on_without_it():
    noise = rule()
    noise.observe([3.0, 3.0], 100)
    restored = rule()
    restored.load_state_dict(json.loads(json.dumps(noise.state_dict())), 100)
    assert restored.state_dict() == noise.state_dict()
    assert restored.observe([3.0, 3.0], 200) and restored.on
    old = rule()
    old.load_state_dict(None, 5000)  # a run saved before the rule trained without it
    assert old.decision == OFF and "before" in old.summary()["why"]
    fresh = rule()
    fresh.load_state_dict(None, 0)
    assert fresh.decision == UNDECIDED


@pytest.mark.parametrize(("settings", "message"), [
    ({"sparse_noise": 1.0}, "--sparse-noise must be in [0, 1)"),
    ({"sparse_noise_episodes": 0}, "--sparse-noise-episodes must be >= 1"),
])
def test_bad_settings_are_refused_by_name(settings, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        TrainConfig().with_overrides(settings).validate()


def train(tmp_path, name: str, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(tmp_path / name), **overrides}).validate()
    trainer = Trainer(config)
    trainer.train()
    return trainer


def test_a_game_whose_returns_differ_trains_bitwise_as_without_the_rule(tmp_path):
    with_rule = train(tmp_path, "rule", env_id="mnemo/CartPoleNoVel-v1")
    without = train(tmp_path, "without", env_id="mnemo/CartPoleNoVel-v1", sparse_noise=0.0)
    assert with_rule.sparse_noise.decision == OFF and with_rule.collector.noise is None
    for key, value in with_rule.policy.state_dict().items():
        assert torch.equal(value, without.policy.state_dict()[key]), key
    assert list(with_rule.recent_returns) == list(without.recent_returns)


def test_a_game_that_pays_nothing_yet_switches_noise_on_and_records_it(tmp_path):
    # MountainCarNoVel pays -1 a step: a near-uniform policy's episodes all return -200. With 4 envs of 64
    # steps a rollout, the first 4 episodes end in the 4th rollout (step 1024).
    run = train(tmp_path, "car", env_id="mnemo/MountainCarNoVel-v0", sparse_noise_episodes=4)
    assert run.sparse_noise.on and run.sparse_noise.decided_at_step == 1024
    assert isinstance(run.collector.noise, CorrelatedNoise) and run.collector.noise.rho == 0.98
    assert run.collector.noise.last is not None  # the rollouts after the switch drew from it
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["sparse_noise"]["value"] == ON and "step 1024" in summary["sparse_noise"]["why"]
    counters = load_payload(run.run_dir / "checkpoints" / LATEST)[1]["counters"]
    assert counters["sparse_noise"]["decision"] == ON and counters["sparse_noise"]["first_return"] == -200.0


def test_the_command_line_says_when_the_rule_switches_noise_on(tmp_path, capsys):
    from agents.train import cli

    code = cli.main(["--env-id", "mnemo/MountainCarNoVel-v0", "--preset", "none", "--run-dir", str(tmp_path / "r"),
                     "--total-steps", "1280", "--num-envs", "4", "--num-steps", "64", "--update-epochs", "1",
                     "--sparse-noise", "0.98", "--sparse-noise-episodes", "4", "--eval-episodes", "0",
                     "--no-progress"])
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("note: the first 4 episodes all returned -200.0: noise of correlation 0.98 from step 1024") == 1


@pytest.mark.parametrize("named", [False, True], ids=["shared-policy", "policy-map"])
def test_multi_agent_collectors_switch_noise_on_mid_run_and_save_it(named):
    from agents.config import PolicyConfig
    from agents.model.policy import RecurrentActorCritic
    from agents.rollout.multiagent_collector import MultiAgentCollector, MultiPolicyCollector
    from agents.rollout.multiagent_env import make_multiagent_vector_env

    envs = make_multiagent_vector_env("toy_multiagent_envs:make_respawn", 3, policy_map="*=all" if named else None)
    block = envs.policies[0]
    policy = RecurrentActorCritic(block.observation_space, block.action_space, PolicyConfig(hidden_size=16))
    collector = (MultiPolicyCollector if named else MultiAgentCollector)(envs, 24)
    try:
        collector.start({"all": policy} if named else policy, torch.device("cpu"), 1, 2)
        collector.collect()
        assert "sampling_noise" not in str(list(collector.state_dict(snapshot_envs=False)["tensors"]))
        collector.use_noise(0.9)
        collector.collect()
        noises = collector.noises if named else {"": collector.noise}
        assert all(noise.rho == 0.9 and noise.last is not None for noise in noises.values())
        saved = collector.state_dict(snapshot_envs=False)["tensors"]
        assert ("sampling_noise/all" if named else "sampling_noise") in saved
    finally:
        collector.close()


def test_the_rule_benchmark_trains_only_until_the_rule_decides(tmp_path):
    """benchmarks/sparse_noise_rule.py: a task's run stops at the decision, which it reports."""
    from benchmarks.sparse_noise_rule import decide, suite_settings

    settings = dict(suite_settings("presets", 1, tmp_path))["mnemo/CartPoleNoVel-v1"]
    result = decide({**settings, "num_envs": 4})
    assert result["decision"] == OFF and result["step"] == result["decided_at_step"] < settings["total_steps"]
    car = {**dict(suite_settings("defaults", 1, tmp_path))["mnemo/MountainCarNoVel-v0"], "sparse_noise_episodes": 4,
           "num_envs": 4, "num_steps": 64}
    result = decide(car)
    assert (result["decision"], result["decided_at_step"], result["first_return"]) == (ON, 1024, -200.0)
    preset = dict(suite_settings("presets", 1, tmp_path))["mnemo/MountainCarNoVel-v0"]  # sets the noise itself
    assert decide(preset)["decision"] == "stands aside (--noise-correlation 0.98 is on from the start)"


def test_a_default_run_holds_no_trace_of_the_rule(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(tmp_path, "default", env_id="mnemo/MountainCarNoVel-v0", sparse_noise=TrainConfig().ppo.sparse_noise,
                total_steps=1024)
    assert TrainConfig().ppo.sparse_noise == 0.0 and not run.sparse_noise.active and run.collector.noise is None
    assert "sparse_noise" not in json.loads((run.run_dir / "summary.json").read_text())
    assert "sparse_noise" not in load_payload(run.run_dir / "checkpoints" / LATEST)[1]["counters"]
    acc = EventAccumulator(str(run.run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert "charts/sparse_noise" not in acc.Tags()["scalars"]
