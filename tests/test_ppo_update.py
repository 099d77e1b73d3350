"""The PPO update at its edges: the clipped surrogate worked by hand, tensors on the policy's device, one-step
minibatches, statistics weighted by real steps, and a divergence that names what went non-finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from agents.config import PolicyConfig, PPOConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import SequenceBatch
from agents.train import cli as train
from agents.train import ppo, ppo_loss
from agents.train.trainer import Trainer

FAST = ["--eval-episodes", "0", "--no-progress"]


@pytest.mark.parametrize("overrides", [
    {"normalize_reward": True, "noise_correlation": 0.9, "target_kl": 1.0, "refresh_start_states": True},
    {"env_id": "mnemo/PendulumNoVel-v1", "separate_critic": True, "normalize_obs": True},
])
def test_training_makes_no_tensor_off_the_policys_device(tmp_path, overrides):
    """A tensor made without ``device=`` lands on the CPU and breaks training on CUDA (issue 19, item 0).

    Under ``torch.device("meta")`` such a factory call makes a meta tensor instead: mixing it with the CPU
    tensors of the policy and buffers, or reading its value, raises. So a run on the CPU inside that context
    finds every forgotten device on the training path without a GPU.
    """
    config = TrainConfig().with_overrides({
        "total_steps": 128, "num_envs": 2, "num_steps": 16, "bptt_len": 4, "num_minibatches": 2,
        "update_epochs": 2, "eval_episodes": 2, "progress": False, "device": "cpu", "checkpoint_every": 32,
        "run_dir": str(tmp_path / "run"), **overrides})
    trainer = Trainer(config.validate())  # built outside: the policy and buffers are real CPU tensors
    with torch.device("meta"):
        summary = trainer.train()
    assert summary["total_steps"] == 128 and summary["eval_episodes"] == 2


def test_a_minibatch_of_one_real_step_trains(tmp_path, capsys):
    """Issue 19, item 1: the std of one advantage is NaN; one real step is used without normalisation."""
    run = tmp_path / "run"
    code = train.main(["--env-id", "mnemo/TMaze-v0", "--num-envs", "1", "--num-steps", "2", "--bptt-len", "1",
                       "--num-minibatches", "2", "--total-steps", "64", "--run-dir", str(run), *FAST])
    assert code == 0, capsys.readouterr().err

    net = RecurrentActorCritic(spaces.Box(-1, 1, (3,)), spaces.Discrete(2), PolicyConfig())
    features = torch.zeros(1, net.actor_core.out_features)
    old_logprob = net.score_actions(features, torch.zeros(1, dtype=torch.long))[0].detach()
    mb = ppo_loss.Minibatch([], [], torch.zeros(1, dtype=torch.long), old_logprob, torch.zeros(1), torch.tensor([0.5]),
                       torch.zeros(1))
    pg_loss, *_ = ppo_loss.policy_terms(net, features, mb, PPOConfig(norm_adv=True), 0.2)
    assert float(pg_loss.detach()) == pytest.approx(-0.5)  # ratio 1, the advantage as it is


class _Ratios:
    """Stands in for the policy: each step's core output is its log-ratio, scored as the new log-probability
    (the old one is 0), so ``policy_terms`` sees exactly the ratios a test chooses."""

    masked = False  # no action mask (docs/action_masks.md)

    @staticmethod
    def score_actions(hidden: torch.Tensor, actions: torch.Tensor,
                      legal: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return hidden[:, 0], torch.zeros(len(hidden))


def _clipped_loss(advantages: list[float], ratios: list[float]) -> tuple[torch.Tensor, ...]:
    """policy_terms at clip 0.2, advantages as they are; returns (pg_loss, clipfrac, d pg_loss / d log r)."""
    n = len(ratios)
    log_ratio = torch.tensor(ratios, dtype=torch.float64).log().unsqueeze(1).requires_grad_()
    zeros = torch.zeros(n, dtype=torch.float64)
    mb = ppo_loss.Minibatch([], [], torch.zeros(n, dtype=torch.long), zeros, zeros,
                            torch.tensor(advantages, dtype=torch.float64), zeros)
    pg_loss, _, _, _, clipfrac = ppo_loss.policy_terms(_Ratios(), log_ratio, mb, PPOConfig(norm_adv=False), 0.2)
    (grad,) = torch.autograd.grad(pg_loss, log_ratio)
    return pg_loss.detach(), clipfrac, grad[:, 0]


# pg_loss = mean(max(-A * r, -A * clip(r, 0.8, 1.2))), worked on paper with eps = 0.2:
#   A, r      -A*r   -A*clip(r)   max    which term   d/d(log r) (one step: -A*r if unclipped, else 0)
#  +1, 1.5    -1.5     -1.2       -1.2   clipped      0      (no gain from pushing r past 1 + eps)
#  +1, 0.5    -0.5     -0.8       -0.5   unclipped   -0.5    (the pessimistic bound keeps the loss)
#  -1, 1.5    +1.5     +1.2       +1.5   unclipped   +1.5
#  -1, 0.5    +0.5     +0.8       +0.8   clipped      0      (no gain from pushing r below 1 - eps)
#  +2, 1.1    -2.2     -2.2       -2.2   inside       -2.2
#  -2, 0.9    +1.8     +1.8       +1.8   inside       +1.8
# With min instead of max, the first four would be -1.5, -0.8, +1.2, +0.5.
CLIP_CASES = [(1.0, 1.5, -1.2, 0.0), (1.0, 0.5, -0.5, -0.5), (-1.0, 1.5, 1.5, 1.5), (-1.0, 0.5, 0.8, 0.0),
              (2.0, 1.1, -2.2, -2.2), (-2.0, 0.9, 1.8, 1.8)]


@pytest.mark.parametrize(("advantage", "ratio", "loss", "grad"), CLIP_CASES)
def test_clipped_surrogate_by_hand(advantage, ratio, loss, grad):
    pg_loss, clipfrac, d_log_ratio = _clipped_loss([advantage], [ratio])
    assert float(pg_loss) == pytest.approx(loss)
    assert float(d_log_ratio[0]) == pytest.approx(grad)
    assert float(clipfrac) == (abs(ratio - 1) > 0.2)


def test_clipped_surrogate_averages_a_minibatch_by_hand():
    # (-1.2 - 0.5 + 1.5 + 0.8 - 2.2 + 1.8) / 6 = 0.2 / 6; each step's gradient is its own one divided by 6;
    # four of the six ratios lie outside [0.8, 1.2].
    advantages, ratios, _, grads = zip(*CLIP_CASES, strict=True)
    pg_loss, clipfrac, d_log_ratio = _clipped_loss(list(advantages), list(ratios))
    assert float(pg_loss) == pytest.approx(0.2 / 6)
    torch.testing.assert_close(d_log_ratio, torch.tensor(grads, dtype=torch.float64) / 6)
    assert float(clipfrac) == pytest.approx(4 / 6)


class _Minibatches:
    """A rollout of two sequences, 1 and 3 real steps long, so two minibatches of unequal size."""

    @staticmethod
    def batch() -> SequenceBatch:
        mask = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # (L=3, M=2): lengths 1 and 3
        zeros = torch.zeros(3, 2)
        return SequenceBatch(obs=torch.zeros(3, 2, 1), actions=torch.zeros(3, 2, dtype=torch.long),
                             episode_starts=zeros, logprobs=zeros, values=zeros, advantages=zeros,
                             returns=torch.tensor([[1.0, 2.0], [0.0, 3.0], [0.0, 4.0]]), mask=mask,
                             start_states=torch.zeros(0, 1, 2, 1))


def test_epoch_statistics_and_target_kl_weigh_minibatches_by_real_steps(monkeypatch):
    """Issue 19, item 5: a minibatch of 3 real steps counts 3 times as much as one of 1 step."""

    def fake_loss(policy, mb, cfg, clip_coef, parallel=None):
        r = float(mb.advantages.shape[0])  # every term equals the minibatch's real steps: 1 or 3
        return ppo_loss.LossTerms(*(torch.tensor(r) for _ in range(8)))

    monkeypatch.setattr(ppo, "loss_and_backward", fake_loss)
    net = nn.Linear(1, 1)
    net.has_recall_head = False  # ppo_update asks the policy whether to report the recall term
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
    cfg = PPOConfig(num_minibatches=2, update_epochs=3)
    stats = ppo.ppo_update(net, optimizer, _Minibatches.batch(), cfg, 0.2, np.random.default_rng(0))
    # Over real steps: (1 * 1 + 3 * 3) / 4 = 2.5; an equal-weight mean of the minibatches would give 2.0.
    for name in ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac"):
        assert stats[name] == pytest.approx(2.5), name
    assert stats["epochs"] == 3 and stats["stopped_early"] == 0.0

    # The same mean drives --target-kl: 2.5 > 2.2 stops after the first epoch (2.0 would not).
    cfg = PPOConfig(num_minibatches=2, update_epochs=3, target_kl=2.2)
    stats = ppo.ppo_update(net, optimizer, _Minibatches.batch(), cfg, 0.2, np.random.default_rng(0))
    assert stats["epochs"] == 1 and stats["stopped_early"] == 1.0


def test_first_nonfinite_names_the_loss_or_the_gradients():
    nan = float("nan")
    finite = torch.ones(8)
    bad_pg = torch.tensor([nan, nan, 1.0, 1.0, nan, nan, 0.0, 0.0])
    assert ppo.first_nonfinite(torch.stack([finite, finite]), torch.tensor([1.0, 2.0])) is None
    assert ppo.first_nonfinite(torch.stack([finite, bad_pg]), torch.tensor([1.0, nan])) == \
        "the loss (pg_loss) in minibatch 2 of 2"
    assert ppo.first_nonfinite(torch.stack([finite, bad_pg]), torch.tensor([float("inf"), nan])) == \
        "the gradients in minibatch 1 of 2"
    bad_recall = torch.tensor([nan, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, nan])
    assert ppo.first_nonfinite(torch.stack([bad_recall]), torch.tensor([nan])) == \
        "the loss (recall_loss) in minibatch 1 of 1"


def test_divergence_from_a_nonfinite_loss_does_not_blame_the_learning_rate(tmp_path, capsys, monkeypatch):
    """Issue 19, item 1: the error says what went non-finite, and the advice fits it."""
    from agents.train import trainer as trainer_module

    real_gae = trainer_module.compute_gae

    def poisoned_gae(*args, **kwargs):
        advantages, returns = real_gae(*args, **kwargs)
        return advantages, returns.fill_(float("nan"))  # v_loss becomes NaN with finite weights

    monkeypatch.setattr(trainer_module, "compute_gae", poisoned_gae)
    code = train.main(["--run-dir", str(tmp_path / "run"), "--total-steps", "128", "--num-envs", "4",
                       "--num-steps", "32", "--num-minibatches", "2", "--bptt-len", "8", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "nothing was saved" in err
    assert "The loss (v_loss) in minibatch 1 of" in err and "--normalize-reward" in err
    assert "--learning-rate" not in err
