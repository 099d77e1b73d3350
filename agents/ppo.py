"""The PPO update over padded sequences (Schulman et al. 2017), every term masked to real steps.

Names follow the paper and CleanRL: ``ratio``, ``pg_loss``, ``v_loss``,
``entropy_loss``, ``approx_kl``, ``clipfrac``. Padding steps (mask 0) never
reach a loss term or a statistic: each is a sum over real steps divided by
their count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from agents.buffer import Rollout, SequenceBatch, length_buckets
from agents.config import PPOConfig
from agents.policy import RecurrentActorCritic
from agents.spaces import tree_map

if TYPE_CHECKING:
    from agents.parallel_critic import ParallelCritic


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


@dataclass
class Minibatch:
    """One minibatch of sequences, split into length groups, with its fixed data over real steps.

    Attributes:
        groups: padded sequences, one fused recurrent call each (see ``length_buckets``).
        real: per group, flat indices of the real steps in its (L_g * M_g) layout; None for a group
            without padding (every step real: no gather needed).
        actions: (R, *action_shape) over the R real steps, group by group.
        old_logprob, old_value, advantages, returns: (R,).
    """

    groups: list[SequenceBatch]
    real: list[torch.Tensor | None]
    actions: torch.Tensor
    old_logprob: torch.Tensor
    old_value: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


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
                     gather("returns"))


def real_steps(parts: list[torch.Tensor], real: list[torch.Tensor | None]) -> torch.Tensor:
    """Per-group tensors (T_g, M_g, ...) -> their real steps, concatenated: (R, ...)."""
    picked = [x.flatten(0, 1) if idx is None else x.flatten(0, 1)[idx] for x, idx in zip(parts, real, strict=True)]
    return torch.cat(picked) if len(picked) > 1 else picked[0]


def policy_terms(
    policy: RecurrentActorCritic, hidden: torch.Tensor, mb: Minibatch, cfg: PPOConfig, clip_coef: float
) -> tuple[torch.Tensor, ...]:
    """Actor core outputs over real steps (R, H) -> pg_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac."""
    new_logprob, entropy = policy.score_actions(hidden, mb.actions)
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
    """Critic core outputs over real steps (R, H) -> v_loss (optionally clipped around the old values)."""
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


def ppo_loss(policy: RecurrentActorCritic, mb: Minibatch, cfg: PPOConfig, clip_coef: float) -> LossTerms:
    """Clipped surrogate + value loss - entropy bonus for one minibatch.

    Each length group is one fused recurrent call; the real steps of all groups
    are then concatenated and the heads run once over them, so every mean below
    is a mean over real steps and padding never enters a term or a statistic.
    """
    actor_parts, critic_parts = [], []
    for sub in mb.groups:
        hidden, critic_hidden, _ = policy.memory(sub.obs, sub.start_states, sub.episode_starts)
        actor_parts.append(hidden)
        critic_parts.append(critic_hidden)
    hidden = real_steps(actor_parts, mb.real)
    critic_hidden = real_steps(critic_parts, mb.real) if policy.has_critic_core else hidden
    pg_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac = policy_terms(policy, hidden, mb, cfg, clip_coef)
    v_loss = value_loss(policy, critic_hidden, mb, cfg, clip_coef)
    loss = pg_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * v_loss
    return LossTerms(loss, pg_loss, v_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac)


def loss_and_backward(policy: RecurrentActorCritic, mb: Minibatch, cfg: PPOConfig, clip_coef: float,
                      parallel: ParallelCritic | None = None) -> LossTerms:
    """``ppo_loss`` and its backward pass; the returned terms are detached.

    With ``parallel`` and a separate critic core, the critic's half runs on that
    thread (``ParallelCritic.loss_and_backward``), with bitwise the same gradients.
    """
    if parallel is not None and policy.has_critic_core:
        return parallel.loss_and_backward(policy, mb, cfg, clip_coef)
    terms = ppo_loss(policy, mb, cfg, clip_coef)
    terms.loss.backward()
    return LossTerms(*(t.detach() for t in vars(terms).values()))


@torch.no_grad()
def refresh_start_states(policy: RecurrentActorCritic, batch: SequenceBatch, rollout: Rollout) -> None:
    """Recompute every sequence's start state with the current network (stale-state fix, R2D2-style).

    Replays the whole rollout step by step from its first stored state (the
    state carried in from the previous rollout) and takes the state each
    sequence begins with (``batch.start_time``, ``batch.start_env``). A loop over
    T steps of batched inference, run at most once per epoch and only when enabled.

    Args:
        batch: the rollout's sequences; their ``start_states`` are overwritten.
        rollout: the rollout they were cut from (its obs, episode starts and ``states[0]``).
    """
    t_len = rollout.episode_starts.shape[0]
    state = rollout.states[0]
    states = torch.empty_like(rollout.states)
    for t in range(t_len):
        states[t] = state
        obs_t = tree_map(lambda x, t=t: x[t:t + 1], rollout.obs)  # (1, N, ...)
        _, _, state = policy.forward_sequence(obs_t, state, rollout.episode_starts[t:t + 1])
    fresh = states[batch.start_time, :, :, batch.start_env]  # (M, S, L, H)
    batch.start_states.copy_(fresh.permute(1, 2, 0, 3))


def ppo_update(
    policy: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: SequenceBatch,
    cfg: PPOConfig,
    clip_coef: float,
    rng: np.random.Generator,
    refresh_from: Rollout | None = None,
    parallel: ParallelCritic | None = None,
) -> dict[str, float | str]:
    """Run ``update_epochs`` passes of minibatched PPO over the rollout's sequences.

    Args:
        batch: the whole rollout as padded sequences (L, M).
        clip_coef: the (possibly annealed) clip coefficient for this update.
        rng: draws the minibatch permutation.
        refresh_from: the rollout ``batch`` was cut from, when start states are to be recomputed before every
            epoch after the first (``refresh_start_states``); None keeps the stored ones.
        parallel: runs the critic's half of each minibatch on a second thread (``loss_and_backward``).

    Returns:
        Statistics of the minibatches run: the losses, approx_kl and clipfrac as means over all their real
        steps (each minibatch weighted by its real steps; ``target_kl`` is checked against the same mean per
        epoch), ``epochs``, ``stopped_early``, ``explained_variance``, and, only where a loss or a gradient
        went NaN or infinite, ``nonfinite``: which of them did first, and in which minibatch.
    """
    num_seq = batch.mask.shape[1]
    lengths = batch.lengths.cpu().numpy()
    # One minibatch covers the whole rollout: its grouping is the same every epoch, so build it once
    # (unless start states are refreshed, which rewrites the sequences' start states in place).
    whole = make_minibatch(batch, np.arange(num_seq), lengths) if cfg.num_minibatches == 1 else None
    # Per minibatch run: its terms and gradient norm (left on the device until the end: no sync per
    # minibatch) and its number of real steps, the weight of its terms in every mean.
    rows: list[torch.Tensor] = []
    grad_norms: list[torch.Tensor] = []
    real_steps: list[int] = []
    stopped_early = False
    for epoch in range(cfg.update_epochs):
        if refresh_from is not None and epoch > 0:
            refresh_start_states(policy, batch, refresh_from)
            whole = None if whole is None else make_minibatch(batch, np.arange(num_seq), lengths)
        if whole is not None:
            minibatches = [whole]
        else:
            order = rng.permutation(num_seq)
            split = np.array_split(order, cfg.num_minibatches)
            minibatches = [make_minibatch(batch, ids, lengths) for ids in split]
        epoch_start = len(rows)
        for mb in minibatches:
            optimizer.zero_grad(set_to_none=True)
            terms = loss_and_backward(policy, mb, cfg, clip_coef, parallel)
            grad_norms.append(nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm, foreach=True))
            optimizer.step()
            rows.append(torch.stack([getattr(terms, name) for name in STAT_NAMES]))
            real_steps.append(int(mb.advantages.shape[0]))
        if cfg.target_kl is not None:
            epoch_means = weighted_mean(rows[epoch_start:], real_steps[epoch_start:])
            if float(epoch_means[STAT_NAMES.index("approx_kl")]) > cfg.target_kl:
                stopped_early = True
                break
    means = weighted_mean(rows, real_steps).cpu()
    stats: dict[str, float | str] = {name: float(v) for name, v in zip(STAT_NAMES, means, strict=True)}
    stats["epochs"] = epoch + 1
    stats["stopped_early"] = float(stopped_early)
    nonfinite = first_nonfinite(torch.stack(rows).cpu(), torch.stack(grad_norms).cpu())
    if nonfinite is not None:
        stats["nonfinite"] = nonfinite
    mask = batch.mask.bool()
    y_pred, y_true = batch.values[mask], batch.returns[mask]
    var_y = torch.var(y_true)
    stats["explained_variance"] = float("nan") if var_y == 0 else float(1 - torch.var(y_true - y_pred) / var_y)
    return stats


STAT_NAMES = ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac")


def weighted_mean(rows: list[torch.Tensor], weights: list[int]) -> torch.Tensor:
    """Per-minibatch means, K rows of (C,), weighted by their K real-step counts -> the mean over all those steps (C,).

    Minibatches hold different numbers of real steps (sequences differ in length): an equal-weight mean of
    their means would count each step of a small minibatch more than each step of a large one.
    """
    stacked = torch.stack(rows)
    w = torch.tensor(weights, dtype=stacked.dtype, device=stacked.device)
    return (stacked * w.unsqueeze(1)).sum(0) / w.sum()


def first_nonfinite(rows: torch.Tensor, grad_norms: torch.Tensor) -> str | None:
    """What went NaN or infinite first in an update, or None.

    The weights enter minibatch k finite unless an earlier minibatch's loss or gradient was not (Adam's step
    from finite gradients stays finite), so the first non-finite loss or gradient norm is the cause.

    Args:
        rows: (K, C) the terms of ``STAT_NAMES`` for the K minibatches run, in order.
        grad_norms: (K,) their gradient norms before clipping.

    Returns:
        e.g. ``"the loss (pg_loss) in minibatch 3 of 16"`` or ``"the gradients in minibatch 1 of 16"``.
    """
    for k, (row, norm) in enumerate(zip(rows, grad_norms, strict=True)):
        where = f"minibatch {k + 1} of {len(rows)}"
        bad = [name for name, value in zip(STAT_NAMES, row, strict=True)
               if name in ("loss", "pg_loss", "v_loss", "entropy_loss") and not torch.isfinite(value)]
        if bad:
            terms = [name for name in bad if name != "loss"] or bad
            return f"the loss ({', '.join(terms)}) in {where}"
        if not torch.isfinite(norm):
            return f"the gradients in {where}"
    return None


def divergence_cause(nonfinite: str | None) -> str:
    """Why an update left NaN / inf weights, and what to do, from ``first_nonfinite``'s account (None: the
    losses and gradients stayed finite)."""
    if nonfinite is not None and nonfinite.startswith("the loss"):
        return (f"{nonfinite} was NaN or infinite while the weights were still finite, so the step size is "
                f"not the cause: look for extreme values in the env's rewards and observations "
                f"(--normalize-reward and --normalize-obs bound them).")
    if nonfinite is not None:
        return (f"{nonfinite} were NaN or infinite while the loss was finite (an overflow in backpropagation): "
                f"check the scale of the env's rewards and observations (--normalize-reward, "
                f"--normalize-obs), or lower --learning-rate.")
    return ("the losses and gradients stayed finite but the optimizer's step made the weights NaN or "
            "infinite: lower --learning-rate.")
