"""The PPO loss over padded sequences (Schulman et al. 2017), every term masked to real steps.

Names follow the paper and CleanRL: ``ratio``, ``pg_loss``, ``v_loss``,
``entropy_loss``, ``approx_kl``, ``clipfrac``. Padding steps (mask 0) never
reach a loss term or a statistic: each is a sum over real steps divided by
their count. The update loop that calls these is ``agents/train/ppo.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.config import PPOConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import SequenceBatch, length_buckets


@dataclass
class LossTerms:
    """The PPO objective's parts for one minibatch (tensors with grad where it matters)."""

    loss: torch.Tensor
    pg_loss: torch.Tensor
    v_loss: torch.Tensor
    entropy_loss: torch.Tensor
    approx_kl: torch.Tensor
    old_approx_kl: torch.Tensor
    clipfrac: torch.Tensor
    recall_loss: torch.Tensor  # 0 without --recall-coef


@dataclass
class Minibatch:
    """One minibatch of sequences, split into length groups, with its fixed data over real steps.

    Attributes:
        groups: padded sequences, one fused recurrent call each (see ``length_buckets``).
        real: per group, flat indices of the real steps in its (L_g * M_g) layout; None for a group
            without padding (every step real: no gather needed).
        actions: (R, *action_shape) over the R real steps, group by group.
        old_logprob, old_value, advantages, returns: (R,).
        returns_int, old_value_int: (R,) the intrinsic value targets and the stored intrinsic values with
            ``--exploration``; None without it.
    """

    groups: list[SequenceBatch]
    real: list[torch.Tensor | None]
    actions: torch.Tensor
    old_logprob: torch.Tensor
    old_value: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    returns_int: torch.Tensor | None = None
    old_value_int: torch.Tensor | None = None


def make_minibatch(batch: SequenceBatch, ids: np.ndarray, lengths: np.ndarray) -> Minibatch:
    """Select sequences ``ids`` of the rollout, group them by length, gather their real steps once."""
    device = batch.mask.device
    groups, real = [], []
    for g in length_buckets(lengths[ids]):
        sub = batch.select(torch.from_numpy(ids[g]).to(device), int(lengths[ids[g]].max()))
        groups.append(sub)
        idx = sub.mask.flatten().nonzero().squeeze(1)
        real.append(None if idx.numel() == sub.mask.numel() else idx)

    def gather(name: str) -> torch.Tensor:
        return real_steps([getattr(sub, name) for sub in groups], real)

    return Minibatch(groups, real, gather("actions"), gather("logprobs"), gather("values"), gather("advantages"),
                     gather("returns"), *((None, None) if batch.returns_int is None
                                          else (gather("returns_int"), gather("values_int"))))


def real_steps(parts: list[torch.Tensor], real: list[torch.Tensor | None]) -> torch.Tensor:
    """Per-group tensors (T_g, M_g, ...) -> their real steps, concatenated: (R, ...)."""
    picked = [x.flatten(0, 1) if idx is None else x.flatten(0, 1)[idx] for x, idx in zip(parts, real, strict=True)]
    return torch.cat(picked) if len(picked) > 1 else picked[0]


def policy_terms(
    policy: RecurrentActorCritic, hidden: torch.Tensor, mb: Minibatch, cfg: PPOConfig, clip_coef: float
) -> tuple[torch.Tensor, ...]:
    """Actor core outputs over real steps (R, H) -> pg_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac."""
    # A masked env's stored masks, over the same real steps: the actions are rescored under the mask they were
    # sampled with, so the recomputed log-probs equal the stored ones.
    legal = real_steps([policy.legal_actions(sub.obs) for sub in mb.groups], mb.real) if policy.masked else None
    new_logprob, entropy = policy.score_actions(hidden, mb.actions, legal)
    entropy_loss = entropy.mean()

    advantages = mb.advantages
    # Unbiased std, as CleanRL and SB3. It needs two real steps: over one it is NaN, and a minibatch can hold a
    # single real step (a length-1 sequence alone in it), whose advantage is then used as it is.
    if cfg.norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    logratio = new_logprob - mb.old_logprob
    ratio = logratio.exp()
    with torch.no_grad():
        # Schulman's low-variance KL estimator, http://joschu.net/blog/kl-approx.html
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean()

    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()
    return pg_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac


def value_loss(
    policy: RecurrentActorCritic, critic_hidden: torch.Tensor, mb: Minibatch, cfg: PPOConfig, clip_coef: float
) -> torch.Tensor:
    """Critic core outputs over real steps (R, H) -> v_loss (optionally clipped around the old values); with
    ``--exploration`` plus the intrinsic head's unclipped loss (CleanRL's RND: ``ext_v_loss + int_v_loss``)."""
    v_loss = _extrinsic_value_loss(policy, critic_hidden, mb, cfg, clip_coef)
    if mb.returns_int is not None:
        v_loss = v_loss + 0.5 * (policy.intrinsic_value_from(critic_hidden) - mb.returns_int).pow(2).mean()
    return v_loss


def _extrinsic_value_loss(
    policy: RecurrentActorCritic, critic_hidden: torch.Tensor, mb: Minibatch, cfg: PPOConfig, clip_coef: float
) -> torch.Tensor:
    """The extrinsic value head's loss over real steps (R, H) -> scalar."""
    new_value = policy.value_from(critic_hidden)
    scale = policy.value_scale
    if scale is not None:
        # Value normalisation: errors in units of the targets' std (PopArt's loss on normalised targets); the
        # clip range is in the same units.
        return _normalised_value_loss(new_value, mb, cfg.clip_vloss, clip_coef, scale)
    if cfg.clip_vloss:
        v_loss_unclipped = (new_value - mb.returns).pow(2)
        v_clipped = mb.old_value + torch.clamp(new_value - mb.old_value, -clip_coef, clip_coef)
        v_loss_clipped = (v_clipped - mb.returns).pow(2)
        return 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    return 0.5 * (new_value - mb.returns).pow(2).mean()


def _normalised_value_loss(
    new_value: torch.Tensor, mb: Minibatch, clip_vloss: bool, clip_coef: float, scale: torch.Tensor
) -> torch.Tensor:
    """0.5 * ((V - R) / sigma)^2 over real steps (R,), optionally clipped around the old values by clip_coef sigmas."""
    v_loss = ((new_value - mb.returns) / scale).pow(2)
    if clip_vloss:
        v_clipped = mb.old_value + torch.clamp(new_value - mb.old_value, -clip_coef * scale, clip_coef * scale)
        v_loss = torch.max(v_loss, ((v_clipped - mb.returns) / scale).pow(2))
    return 0.5 * v_loss.mean()


def recall_loss(policy: RecurrentActorCritic, hidden: torch.Tensor, mb: Minibatch) -> torch.Tensor:
    """The auxiliary recall term (``--recall-coef``): actor core outputs over real steps (R, H) -> the mean squared
    error of the recall head against ``policy.recall_targets`` over those steps and every feature; a zero scalar
    for a policy without the head."""
    if not policy.has_recall_head:
        return hidden.new_zeros(())
    targets = real_steps([policy.recall_targets(sub.obs, sub.episode_starts) for sub in mb.groups], mb.real)
    return (policy.recall_head(policy.recall_input(hidden)) - targets).pow(2).mean()


def actor_objective(policy: RecurrentActorCritic, cfg: PPOConfig, pg_loss: torch.Tensor, entropy_loss: torch.Tensor,
                    recall: torch.Tensor) -> torch.Tensor:
    """The actor's part of the loss from its terms: ``pg_loss - ent_coef * entropy + recall_coef * recall``; the
    whole loss adds ``vf_coef * v_loss`` (``ppo_loss``, and ``parallel_critic``, which backpropagates it alone)."""
    return pg_loss - cfg.ent_coef * entropy_loss + policy.config.recall_coef * recall


def ppo_loss(policy: RecurrentActorCritic, mb: Minibatch, cfg: PPOConfig, clip_coef: float) -> LossTerms:
    """Clipped surrogate + value loss - entropy bonus for one minibatch.

    Each length group is one fused recurrent call; the real steps of all groups
    are then concatenated and the heads run once over them, so every mean below
    is a mean over real steps and padding never enters a term or a statistic.
    """
    actor_parts, critic_parts = [], []
    for sub in mb.groups:
        hidden, critic_hidden, _ = policy.memory(sub.obs, sub.start_states, sub.episode_starts, sub.agent_inputs)
        actor_parts.append(hidden)
        critic_parts.append(critic_hidden)
    hidden = real_steps(actor_parts, mb.real)
    critic_hidden = real_steps(critic_parts, mb.real) if policy.has_critic_core else hidden
    pg_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac = policy_terms(policy, hidden, mb, cfg, clip_coef)
    v_loss = value_loss(policy, critic_hidden, mb, cfg, clip_coef)
    recall = recall_loss(policy, hidden, mb)
    loss = actor_objective(policy, cfg, pg_loss, entropy_loss, recall) + cfg.vf_coef * v_loss
    return LossTerms(loss, pg_loss, v_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac, recall)
