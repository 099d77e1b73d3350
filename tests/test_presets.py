"""Presets: one per built-in env, known settings only, and each builds a valid config and a policy that acts."""

import dataclasses
import typing

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from agents.config import RunConfig, TrainConfig, flat_field_owners
from agents.model.policy import RecurrentActorCritic
from agents.trees import obs_to_tensor
from envs.presets import BUDGET_ONLY, PRESETS, ZOO_CARTPOLE_NOVEL, preset_for

MNEMO_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith(f"{envs.NAMESPACE}/"))


def test_every_registered_env_has_a_preset_and_every_preset_a_registered_env():
    assert MNEMO_IDS, "no mnemo/ ids registered"
    assert sorted(PRESETS) == MNEMO_IDS


def test_every_preset_has_a_success_threshold_in_the_learning_suite():
    from benchmarks.memory_suite import THRESHOLDS

    assert set(PRESETS) <= set(THRESHOLDS)


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_preset_names_only_known_training_settings_of_the_right_type(env_id):
    owners = flat_field_owners()
    run_settings = {f.name for f in dataclasses.fields(RunConfig)}
    defaults = {name: getattr(getattr(TrainConfig(), section), name) for name, section in owners.items()}
    hints = {name: typing.get_type_hints(type(getattr(TrainConfig(), section)))[name]
             for name, section in owners.items()}
    for name, value in PRESETS[env_id].items():
        assert name in owners, f"{env_id}: unknown setting {name!r}"
        # A preset tunes the learning, never where or how a run is stored, seeded or evaluated.
        assert name not in run_settings and name != "env_id", f"{env_id}: {name!r} is not a tuning setting"
        default = defaults[name]
        if value is None:
            assert type(None) in typing.get_args(hints[name]), f"{env_id}: {name} cannot be None"
        elif isinstance(default, bool):
            assert isinstance(value, bool), f"{env_id}: {name}={value!r} should be a bool"
        elif isinstance(default, int):
            assert isinstance(value, int) and not isinstance(value, bool), f"{env_id}: {name}={value!r} not an int"
        elif isinstance(default, float) or hints[name] == (float | None):
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{env_id}: {name}={value!r}"
        elif isinstance(default, tuple):
            assert isinstance(value, tuple), f"{env_id}: {name}={value!r} should be a tuple"


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_preset_validates_and_builds_a_policy_that_acts_in_the_env(env_id):
    config = TrainConfig().with_overrides({**preset_for(env_id), "env_id": env_id}).validate()
    env = gym.make(env_id, **config.env.env_kwargs)
    try:
        obs, _ = env.reset(seed=0)
        for core in ("lstm", "none"):
            policy_config = dataclasses.replace(config.policy, core=core)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                policy = RecurrentActorCritic(env.observation_space, env.action_space, policy_config)
            batch = obs_to_tensor(np.stack([obs, obs]), torch.device("cpu"))
            with torch.no_grad():
                out = policy.step(batch, policy.initial_state(2), torch.ones(2))
            action = policy.action_head.to_env(out.action)[0]
            assert env.action_space.contains(action), f"{env_id} ({core}): action {action!r} not in the space"
            assert out.value.shape == (2,) and torch.isfinite(out.value).all()
    finally:
        env.close()


def test_preset_for_returns_a_copy_and_nothing_for_other_envs():
    preset = preset_for("mnemo/GatedMemory-v0")
    preset["num_envs"] = -1
    assert PRESETS["mnemo/GatedMemory-v0"]["num_envs"] > 0
    assert preset_for("CartPole-v1") == {}


def test_a_budget_only_preset_trains_with_the_defaults_for_its_budget():
    # Such a preset replaced tuned settings because the defaults learn the env; it must not bring back the
    # values the tuned presets were pinned to (the older reward-scaling and forget-bias defaults).
    assert BUDGET_ONLY
    for env_id, steps in BUDGET_ONLY.items():
        assert preset_for(env_id) == {"total_steps": steps}
        preset_config = TrainConfig().with_overrides({**preset_for(env_id), "env_id": env_id}).validate()
        default_config = TrainConfig().with_overrides({"env_id": env_id, "total_steps": steps}).validate()
        assert preset_config == default_config


def test_the_speed_benchmark_keeps_the_zoo_settings_and_they_build_a_valid_config():
    # benchmarks/cartpole_novel.py compares against sb3-contrib run with rl-baselines3-zoo's ppo_lstm
    # CartPoleNoVel settings; the env's own preset may change, these must not.
    config = TrainConfig().with_overrides({**ZOO_CARTPOLE_NOVEL, "env_id": "mnemo/CartPoleNoVel-v1"}).validate()
    assert (config.env.num_envs, config.ppo.num_steps, config.ppo.num_minibatches, config.ppo.update_epochs) == (
        8, 32, 1, 20)
    assert (config.ppo.gamma, config.ppo.gae_lambda, config.ppo.learning_rate, config.policy.hidden_size) == (
        0.98, 0.8, 1e-3, 64)
    assert config.policy.separate_critic and config.policy.normalize_obs
