"""Partial-observability wrappers and the masked classic-control ids."""

import doctest
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs import wrappers
from envs.wrappers import FlickerObservation, GaussianObservationNoise, MaskObservation

# CartPole renders through pygame; keep it off-screen.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

MASKED = {
    "mnemo/CartPoleNoVel-v1": ("CartPole-v1", [0, 2]),
    "mnemo/PendulumNoVel-v1": ("Pendulum-v1", [0, 1]),
    "mnemo/AcrobotNoVel-v1": ("Acrobot-v1", [0, 1, 2, 3]),
    "mnemo/MountainCarNoVel-v0": ("MountainCar-v0", [0]),
}
ALL_IDS = [*MASKED, "mnemo/CartPoleFlicker-v1"]

# Warnings that come from Gymnasium's own inner envs, not from the wrappers: CartPole's
# velocity bounds are infinite, Pendulum's torque is not a normalised Box action.
INNER_ENV_WARNINGS = {
    "mnemo/CartPoleFlicker-v1": "A Box observation space m.*infinity",
    "mnemo/PendulumNoVel-v1": "For Box action spaces, we recommend",
}


def rollout(env: gym.Env, seed: int, steps: int = 60) -> list[tuple]:
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = [(obs.copy(),)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        out.append((obs.copy(), reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs.copy(),))
    return out


def assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_without_warnings(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The made env is checked on purpose (the unwrapped one would skip the wrapper).
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version")
        if env_id in INNER_ENV_WARNINGS:
            warnings.filterwarnings("ignore", message=f".*{INNER_ENV_WARNINGS[env_id]}")
        check_env(env)
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_same_seed_same_rollout(env_id):
    assert_same(rollout(gym.make(env_id), seed=7), rollout(gym.make(env_id), seed=7))


@pytest.mark.parametrize("env_id", list(MASKED))
def test_masked_ids_keep_the_right_entries(env_id):
    base_id, keep = MASKED[env_id]
    masked, full = gym.make(env_id), gym.make(base_id)
    assert masked.observation_space.shape == (len(keep),)
    assert masked.observation_space.dtype == np.float32
    assert masked.spec.max_episode_steps == full.spec.max_episode_steps
    a, b = rollout(masked, seed=3, steps=30), rollout(full, seed=3, steps=30)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0][keep])
        assert x[1:] == y[1:]


def test_cartpole_no_velocity_is_raw_cartpole_with_one_time_limit():
    env = gym.make("mnemo/CartPoleNoVel-v1", render_mode="rgb_array")
    inner = env.unwrapped
    assert type(inner) is gym.envs.classic_control.CartPoleEnv
    assert env.spec.max_episode_steps == 500
    # Exactly one TimeLimit between the made env and the raw env.
    layers, e = [], env
    while isinstance(e, gym.Wrapper):
        layers.append(type(e).__name__)
        e = e.env
    assert layers.count("TimeLimit") == 1
    assert "MaskObservation" in layers
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3
    env.close()


def test_cartpole_no_velocity_truncates_at_500():
    env = gym.make("mnemo/CartPoleNoVel-v1")
    env.reset(seed=0)
    # Balance with the hidden state (a short PD controller reads the raw env).
    steps, truncated = 0, False
    while not truncated:
        x, x_dot, theta, theta_dot = env.unwrapped.state
        action = int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated
        steps += 1
    assert steps == 500


def test_mask_observation_subset_and_order():
    env = MaskObservation(gym.make("CartPole-v1"), keep_indices=[2, 0])
    full = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=1)
    ref, _ = full.reset(seed=1)
    np.testing.assert_array_equal(obs, ref[[2, 0]])
    np.testing.assert_array_equal(env.observation_space.high, full.observation_space.high[[2, 0]])


def test_flicker_p0_is_identity_and_p1_blanks_everything():
    same = FlickerObservation(gym.make("CartPole-v1"), p=0.0)
    assert_same(rollout(same, seed=2), rollout(gym.make("CartPole-v1"), seed=2))
    blank = FlickerObservation(gym.make("CartPole-v1"), p=1.0)
    for step in rollout(blank, seed=2):
        assert not step[0].any()


def test_flicker_rate_and_seeded_stream():
    env = FlickerObservation(gym.make("CartPole-v1"), p=0.5)
    blanks = [not s[0].any() for s in rollout(env, seed=4, steps=2000)]
    assert 0.45 < np.mean(blanks) < 0.55
    # Different seeds give different flicker patterns.
    other = [not s[0].any() for s in rollout(env, seed=5, steps=2000)]
    assert blanks[:50] != other[:50]


def test_flicker_does_not_touch_the_inner_env_stream():
    # The wrapper has its own generator: the inner env draws the same starting state.
    flicker = FlickerObservation(gym.make("CartPole-v1"), p=0.5)
    full = gym.make("CartPole-v1")
    flicker.reset(seed=11)
    full.reset(seed=11)
    np.testing.assert_array_equal(flicker.unwrapped.state, full.unwrapped.state)


def test_flicker_space_includes_zero():
    env = FlickerObservation(gym.make("MountainCar-v0"), p=0.5)  # velocity bounds contain 0 already
    assert env.observation_space.contains(np.zeros(2, dtype=np.float32))
    positive = gym.make("mnemo/MountainCarNoVel-v0")  # position in [-1.2, 0.6]
    assert FlickerObservation(positive, p=1.0).observation_space.contains(np.zeros(1, dtype=np.float32))


def test_gaussian_noise():
    clean = rollout(gym.make("Pendulum-v1"), seed=5, steps=50)
    assert_same(rollout(GaussianObservationNoise(gym.make("Pendulum-v1"), std=0.0), seed=5, steps=50), clean)
    noisy_env = GaussianObservationNoise(gym.make("Pendulum-v1"), std=0.1)
    noisy = rollout(noisy_env, seed=5, steps=50)
    diffs = np.concatenate([n[0] - c[0] for n, c in zip(noisy, clean, strict=True)])
    assert 0.07 < diffs.std() < 0.13
    assert all(noisy_env.observation_space.contains(s[0]) for s in noisy)
    assert_same(noisy, rollout(GaussianObservationNoise(gym.make("Pendulum-v1"), std=0.1), seed=5, steps=50))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FlickerObservation(gym.make("CartPole-v1"), p=-0.1), "p must be in"),
        (lambda: FlickerObservation(gym.make("CartPole-v1"), p=1.5), "p must be in"),
        (lambda: GaussianObservationNoise(gym.make("CartPole-v1"), std=-1.0), "std must be"),
        (lambda: GaussianObservationNoise(gym.make("CartPole-v1"), std=float("nan")), "std must be"),
        (lambda: MaskObservation(gym.make("CartPole-v1"), keep_indices=[0, 4]), "out of range"),
        (lambda: MaskObservation(gym.make("CartPole-v1"), keep_indices=[-1]), "out of range"),
        (lambda: MaskObservation(gym.make("CartPole-v1"), keep_indices=[]), "must not be empty"),
        (lambda: MaskObservation(gym.make("CartPole-v1"), keep_indices=[1, 1]), "duplicates"),
        (lambda: MaskObservation(gym.make("FrozenLake-v1"), keep_indices=[0]), "1-D Box"),
        (lambda: FlickerObservation(gym.make("FrozenLake-v1"), p=0.5), "1-D Box"),
        (lambda: GaussianObservationNoise(gym.make("FrozenLake-v1"), std=0.1), "1-D Box"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_docstring_examples():
    result = doctest.testmod(wrappers, verbose=False)
    assert result.attempted >= 3 and result.failed == 0
