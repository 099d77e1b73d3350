"""--prev-action-reward: the previous action and reward reach the policy as part of the observation, zeroed
at episode starts in reset mode and carried over resets in carry mode, in training, evaluation, resume and
the runtime alike."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs  # noqa: F401  (registers the mnemo/ ids)
from agents import PolicyRunner
from agents.rollout.env_state import restore_env, snapshot_env
from agents.rollout.previous_inputs import (
    PreviousActionReward,
    encode_action,
    previous_inputs_obs,
    run_input_wrapper,
    symlog,
)
from agents.train import cli as train
from tests.toy_envs import BoundaryEnv


@pytest.mark.parametrize(("kind", "action", "encoded"), [
    ("discrete", 2, [0, 0, 1]),
    ("multidiscrete", [1, 2], [0, 1, 0, 0, 1]),
    ("multibinary", [1, 0, 1], [1, 0, 1]),
    ("box", [0.5, -3.0], [np.log1p(0.5), -np.log1p(1.0)]),  # clipped to the bounds, then symlog
])
def test_each_action_kind_is_encoded_and_zero_means_no_action_yet(kind, action, encoded):
    env = PreviousActionReward(BoundaryEnv(kind))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert not obs["prev_action"].any() and obs["prev_reward"][0] == 0.0
    obs, reward, *_ = env.step(np.asarray(action))
    np.testing.assert_allclose(obs["prev_action"], encoded, rtol=1e-6)
    np.testing.assert_allclose(obs["prev_reward"], symlog([reward]))
    assert env.observation_space.contains(obs)


def test_reset_mode_zeroes_the_inputs_at_a_reset_and_carry_mode_keeps_them():
    for keep, zeroed in ((False, True), (True, False)):
        env = PreviousActionReward(BoundaryEnv("discrete"), keep_across_resets=keep)
        env.reset(seed=0)
        env.step(1)
        obs, _ = env.reset()
        assert (not obs["prev_action"].any()) is zeroed


def test_rewards_of_any_scale_arrive_squashed_within_the_declared_bounds():
    assert symlog(0.0) == 0.0 and symlog(-1.0) == pytest.approx(-np.log(2.0))
    assert symlog(1e12) == 10.0 and symlog(-np.inf) == -10.0


def test_the_wrapper_state_is_part_of_the_env_snapshot_so_resume_stays_exact():
    env = PreviousActionReward(BoundaryEnv("discrete"))
    env.reset(seed=3)
    env.step(2)
    snapshot = json.loads(json.dumps(snapshot_env(env)))
    fresh = PreviousActionReward(BoundaryEnv("discrete"))
    fresh.reset(seed=99)
    restore_env(fresh, snapshot)
    np.testing.assert_array_equal(fresh.prev_action, env.prev_action)
    np.testing.assert_array_equal(fresh.prev_reward, env.prev_reward)


def test_the_wrapper_follows_the_policy_config():
    class Config:
        prev_action_reward, carry_across_episodes = True, True

    assert run_input_wrapper(object()) is None
    wrapped = run_input_wrapper(Config())(gym.make("mnemo/TMaze-v0"))
    assert isinstance(wrapped, PreviousActionReward) and wrapped.keep_across_resets


def test_a_run_trains_evaluates_and_plays_in_the_runner_with_the_previous_inputs(tmp_path):
    run_dir = tmp_path / "run"
    code = train.main(["--preset", "none", "--prev-action-reward", "--total-steps", "512", "--num-envs", "2",
                       "--num-steps", "64", "--eval-episodes", "2", "--run-dir", str(run_dir), "--progress", "false"])
    assert code == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["policy"]["prev_action_reward"] is True
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval_return_mean"] is not None  # evaluation made its envs with the same wrapper

    runner = PolicyRunner.load(run_dir)
    assert isinstance(runner.observation_space, spaces.Dict)
    env = gym.make("mnemo/TMaze-v0")
    obs, _ = env.reset(seed=0)
    prev_action, reward = np.zeros(3, np.float32), 0.0
    for _ in range(5):
        action = runner.act(previous_inputs_obs(obs, prev_action, reward))
        obs, reward, terminated, truncated, _ = env.step(action)
        prev_action = encode_action(env.action_space, action)
        if terminated or truncated:
            break


def test_an_unsupported_action_space_is_refused_with_the_supported_ones():
    class TextActions(gym.Env):
        observation_space = spaces.Box(0, 1, (2,))
        action_space = spaces.Text(5)

    with pytest.raises(ValueError, match="--prev-action-reward: action space"):
        PreviousActionReward(TextActions())
