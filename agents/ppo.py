"""The PPO update over padded sequences (Schulman et al. 2017), every term masked to real steps.

Names follow the paper and CleanRL: ``ratio``, ``pg_loss``, ``v_loss``,
``entropy_loss``, ``approx_kl``, ``clipfrac``. Padding steps (mask 0) never
reach a loss term or a statistic: each is a sum over real steps divided by
their count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agents.buffer import SequenceBatch
from agents.config import PPOConfig
from agents.policy import RecurrentActorCritic
from agents.spaces import Tree, tree_map


def masked_mean(x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mean of x over the steps where mask is 1 (count = mask.sum())."""
    return (x * mask).sum() / count


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


def ppo_loss(
    policy: RecurrentActorCritic, mb: SequenceBatch, cfg: PPOConfig, clip_coef: float
) -> LossTerms:
    """Clipped surrogate + value loss - entropy bonus for one minibatch of sequences (L, M)."""
    new_logprob, entropy, new_value = policy.evaluate(mb.obs, mb.start_states, mb.episode_starts, mb.actions)
    mask = mb.mask
    count = mask.sum()

    advantages = mb.advantages
    if cfg.norm_adv:
        adv_mean = masked_mean(advantages, mask, count)
        adv_var = masked_mean((advantages - adv_mean).pow(2), mask, count)
        advantages = (advantages - adv_mean) / (adv_var.sqrt() + 1e-8)

    logratio = new_logprob - mb.logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        # Schulman's low-variance KL estimator, http://joschu.net/blog/kl-approx.html
        old_approx_kl = masked_mean(-logratio, mask, count)
        approx_kl = masked_mean((ratio - 1) - logratio, mask, count)
        clipfrac = masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask, count)

    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask, count)

    if cfg.clip_vloss:
        v_loss_unclipped = (new_value - mb.returns).pow(2)
        v_clipped = mb.values + torch.clamp(new_value - mb.values, -clip_coef, clip_coef)
        v_loss_clipped = (v_clipped - mb.returns).pow(2)
        v_loss = 0.5 * masked_mean(torch.max(v_loss_unclipped, v_loss_clipped), mask, count)
    else:
        v_loss = 0.5 * masked_mean((new_value - mb.returns).pow(2), mask, count)

    entropy_loss = masked_mean(entropy, mask, count)
    loss = pg_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * v_loss
    return LossTerms(loss, pg_loss, v_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac)


@torch.no_grad()
def refresh_start_states(policy: RecurrentActorCritic, batch: SequenceBatch, rollout_states: torch.Tensor,
                         rollout_obs: Tree, rollout_episode_starts: torch.Tensor, seq_start_time: torch.Tensor,
                         seq_start_env: torch.Tensor) -> None:
    """Recompute every sequence's start state with the current network (stale-state fix, R2D2-style).

    Replays the whole rollout step by step from its first stored state (the
    state carried in from the previous rollout) and takes the state each
    sequence begins with. A loop over T steps of batched inference, run at most
    once per epoch and only when enabled.

    Args:
        rollout_states: (T, S, L, N, H) stored states; ``[0]`` seeds the replay.
        rollout_obs: leaves (T, N, ...); rollout_episode_starts: (T, N).
        seq_start_time, seq_start_env: (M,) where each sequence starts.
    """
    t_len = rollout_episode_starts.shape[0]
    state = rollout_states[0]
    states = torch.empty_like(rollout_states)
    for t in range(t_len):
        states[t] = state
        obs_t = tree_map(lambda x, t=t: x[t:t + 1], rollout_obs)  # (1, N, ...)
        _, _, state = policy.forward_sequence(obs_t, state, rollout_episode_starts[t:t + 1])
    fresh = states[seq_start_time, :, :, seq_start_env]  # (M, S, L, H)
    batch.start_states.copy_(fresh.permute(1, 2, 0, 3))


def ppo_update(
    policy: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: SequenceBatch,
    cfg: PPOConfig,
    clip_coef: float,
    rng: np.random.Generator,
    refresh: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Run ``update_epochs`` passes of minibatched PPO over the rollout's sequences.

    Args:
        batch: the whole rollout as padded sequences (L, M).
        clip_coef: the (possibly annealed) clip coefficient for this update.
        rng: draws the minibatch permutation.
        refresh: called before every epoch after the first when start states are to be recomputed.

    Returns:
        Mean statistics over the minibatches run (losses, approx_kl, clipfrac, explained variance).
    """
    num_seq = batch.mask.shape[1]
    totals: dict[str, float] = {}
    n_minibatches_run = 0
    stopped_early = False
    for epoch in range(cfg.update_epochs):
        if refresh is not None and epoch > 0:
            refresh()
        epoch_kl, epoch_minibatches = 0.0, 0
        order = torch.from_numpy(rng.permutation(num_seq))
        for ids in torch.tensor_split(order, cfg.num_minibatches):
            mb = batch.select(ids.to(batch.mask.device))
            terms = ppo_loss(policy, mb, cfg, clip_coef)
            optimizer.zero_grad(set_to_none=True)
            terms.loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            optimizer.step()
            for name in ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac"):
                totals[name] = totals.get(name, 0.0) + float(getattr(terms, name).detach())
            n_minibatches_run += 1
            epoch_kl += float(terms.approx_kl)
            epoch_minibatches += 1
        if cfg.target_kl is not None and epoch_kl / epoch_minibatches > cfg.target_kl:
            stopped_early = True
            break
    stats = {name: value / n_minibatches_run for name, value in totals.items()}
    stats["epochs"] = epoch + 1
    stats["stopped_early"] = float(stopped_early)
    mask = batch.mask.bool()
    y_pred, y_true = batch.values[mask], batch.returns[mask]
    var_y = torch.var(y_true)
    stats["explained_variance"] = float("nan") if var_y == 0 else float(1 - torch.var(y_true - y_pred) / var_y)
    return stats
