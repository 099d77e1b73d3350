"""--normalize-value (PopArt): the value head learns on normalised targets, its outputs stay in return units
through every statistics update, and a run saves, resumes and plays with them."""

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs  # noqa: F401  (registers the mnemo/ ids)
from agents import PolicyRunner
from agents.config import PolicyConfig
from agents.model.policy import RecurrentActorCritic
from agents.model.value_norm import MIN_SIGMA, PopArtValueHead
from agents.train import cli as train
from agents.train.ppo_loss import Minibatch, value_loss


def test_statistics_updates_preserve_the_outputs_while_the_scale_follows_the_targets():
    torch.manual_seed(0)
    head, x = PopArtValueHead(8), torch.randn(32, 8)
    for size in (1.0, 100.0, 10_000.0):  # returns growing by orders of magnitude
        for _ in range(500):  # the statistics forget at DECAY per update: 0.99^500 leaves under 1% of the past
            before = head(x).detach().clone()
            head.update(torch.randn(256) * size + 3 * size)
            torch.testing.assert_close(head(x).detach(), before, rtol=1e-4, atol=1e-4 * size)
        assert head.mu.item() == pytest.approx(3 * size, rel=0.2)
        assert head.sigma.item() == pytest.approx(size, rel=0.3)


def test_constant_targets_keep_sigma_above_its_floor():
    head = PopArtValueHead(4)
    head.update(torch.full((64,), 2.0))
    assert head.sigma.item() == pytest.approx(MIN_SIGMA) and torch.isfinite(head.linear.weight).all()


def test_the_loss_is_the_squared_error_in_units_of_the_targets_std():
    torch.manual_seed(0)
    policy = RecurrentActorCritic(spaces.Box(-1, 1, (3,)), spaces.Discrete(2),
                                  PolicyConfig(hidden_size=8, normalize_value=True))
    policy.update_value_statistics(torch.randn(64, 4) * 50.0)
    hidden = torch.randn(10, 8)
    returns = torch.randn(10) * 50.0
    mb = Minibatch(groups=None, real=None, actions=None, old_logprob=None, old_value=returns.clone(),
                   advantages=None, returns=returns)
    cfg = type("Cfg", (), {"clip_vloss": False})()
    loss = value_loss(policy, hidden, mb, cfg, 0.2)
    expected = 0.5 * ((policy.value_from(hidden) - returns) / policy.value_scale).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    plain = RecurrentActorCritic(spaces.Box(-1, 1, (3,)), spaces.Discrete(2), PolicyConfig(hidden_size=8))
    assert plain.value_scale is None and isinstance(plain.value_head, torch.nn.Linear)


def test_a_run_with_value_normalisation_saves_resumes_and_reports_values_in_return_units(tmp_path):
    run_dir = tmp_path / "run"
    common = ["--preset", "none", "--normalize-value", "--num-envs", "2", "--num-steps", "64", "--eval-episodes",
              "0", "--run-dir", str(run_dir), "--progress", "false"]
    assert train.main([*common, "--total-steps", "256"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["policy"]["normalize_value"] is True
    assert train.main([*common, "--total-steps", "512", "--resume", str(run_dir)]) == 0
    runner = PolicyRunner.load(run_dir)
    head = runner.policy.value_head
    assert isinstance(head, PopArtValueHead) and head.debias.item() > 0  # statistics came back with the weights
    _, info = runner.act(np.array([0, 1, 1, 0], np.float32), return_info=True)
    hidden = torch.zeros(1, runner.policy.value_head.linear.in_features)
    assert np.isfinite(info.value) and head(hidden).shape == (1, 1)
