"""Reward scaling (--normalize-reward): the discounted sums, statistics and scaled rewards of SB3's VecNormalize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.train.reward_scale import RewardScaler


def vecnormalize_reference(rewards: np.ndarray, dones: np.ndarray, gamma: float, clip: float = 10.0):
    """SB3 VecNormalize's reward path, step by step in float64: (sums (T, N), mean, var after the rollout).

    The statistics are a plain mean / variance over every sum seen (SB3 starts its count at 1e-4, which
    only matters for the first handful of steps; this project starts it at 0).
    """
    running = np.zeros(rewards.shape[1])
    sums = np.zeros_like(rewards, dtype=np.float64)
    for t in range(rewards.shape[0]):
        running = running * gamma + rewards[t]
        sums[t] = running
        running[dones[t].astype(bool)] = 0.0
    return sums, sums.mean(), sums.var()


def test_hand_worked_single_env():
    scaler = RewardScaler(num_envs=1, gamma=0.5, eps=0.0)
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    scaled = scaler.scale_rollout(rewards, dones)
    # Sums 1, 1.5, then 1 (a new episode); their variance is 1/18.
    assert float(scaler.return_rms.var) == pytest.approx(1 / 18, rel=1e-6)
    assert scaler.returns.tolist() == [1.0]
    torch.testing.assert_close(scaled, rewards * 18 ** 0.5)


def test_a_window_caps_the_count_so_the_statistics_forget():
    """window=2 at gamma 0 (the sums are the rewards): rollouts [1, 3], [5, 5], [5, 5]. Each update starts from a
    count of at most 2, so the third rollout weighs half (mean 4.25, variance 1.9375, worked by hand) where the
    whole-run statistics give it a third (mean 4, variance 7/3)."""
    forgetting, whole = RewardScaler(1, gamma=0.0, eps=0.0, window=2), RewardScaler(1, gamma=0.0, eps=0.0)
    for rewards in ([1.0, 3.0], [5.0, 5.0], [5.0, 5.0]):
        for scaler in (forgetting, whole):
            scaler.scale_rollout(torch.tensor(rewards).unsqueeze(1), torch.zeros(2, 1))
    assert float(forgetting.return_rms.mean) == pytest.approx(4.25)
    assert float(forgetting.return_rms.var) == pytest.approx(1.9375)
    assert float(whole.return_rms.mean) == pytest.approx(4.0) and float(whole.return_rms.var) == pytest.approx(7 / 3)


def test_matches_the_vecnormalize_recurrence_over_several_rollouts():
    rng = np.random.default_rng(0)
    T, N, gamma = 16, 5, 0.9
    rewards = rng.normal(1.0, 2.0, size=(3 * T, N)).astype(np.float32)
    dones = (rng.random((3 * T, N)) < 0.1).astype(np.float32)
    scaler = RewardScaler(N, gamma)
    for k in range(3):  # the sums carry across rollouts
        part = slice(k * T, (k + 1) * T)
        scaled = scaler.scale_rollout(torch.from_numpy(rewards[part]), torch.from_numpy(dones[part]))
    sums, _, var = vecnormalize_reference(rewards, dones, gamma)
    np.testing.assert_allclose(scaler.returns.numpy(), sums[-1] * (1 - dones[-1]), rtol=1e-12)
    assert float(scaler.return_rms.var) == pytest.approx(var, rel=1e-5)
    expected = np.clip(rewards[2 * T:] / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(scaled.numpy(), expected, rtol=1e-5)


def test_large_rewards_are_clipped_and_signs_kept():
    scaler = RewardScaler(num_envs=2, gamma=0.0, clip=1.0)  # std ~58: 100 -> 1.7 -> 1
    rewards = torch.tensor([[1.0, -1.0], [1.0, -1.0], [100.0, -100.0]])
    scaled = scaler.scale_rollout(rewards, torch.zeros(3, 2))
    assert scaled[2].tolist() == [1.0, -1.0]
    assert (scaled[:2, 0] > 0).all() and (scaled[:2, 1] < 0).all()


def test_state_round_trip_and_wrong_width_is_refused():
    scaler = RewardScaler(num_envs=3, gamma=0.99)
    scaler.scale_rollout(torch.rand(8, 3), torch.zeros(8, 3))
    other = RewardScaler(num_envs=3, gamma=0.99)
    other.load_state_dict(scaler.state_dict())
    rewards, dones = torch.rand(4, 3), torch.zeros(4, 3)
    torch.testing.assert_close(scaler.scale_rollout(rewards, dones), other.scale_rollout(rewards, dones))
    with pytest.raises(ValueError, match="3 envs"):
        RewardScaler(num_envs=4, gamma=0.99).load_state_dict(scaler.state_dict())
