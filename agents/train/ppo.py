"""The PPO update: epochs over minibatches of sequences, one optimizer step each, early stop on the KL.

The loss itself (every term masked to real steps) is ``agents/train/ppo_loss.py``; with a separate critic on
a CPU with a free core, its half runs on a second thread (``agents/train/parallel_critic.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from agents.config import PPOConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import Rollout, SequenceBatch
from agents.train.ppo_loss import LossTerms, Minibatch, make_minibatch, ppo_loss
from agents.trees import tree_map

if TYPE_CHECKING:
    from agents.train.parallel_critic import ParallelCritic


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
    if not policy.has_recall_head:
        del stats["recall_loss"]  # logged only by runs that train the recall head
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


STAT_NAMES = ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac", "recall_loss")


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
               if name in ("loss", "pg_loss", "v_loss", "entropy_loss", "recall_loss") and not torch.isfinite(value)]
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
