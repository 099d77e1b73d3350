"""The critic's half of each PPO minibatch on a second thread, for a policy with a separate critic core.

With a separate critic the actor and critic halves of the loss share no
parameter but the encoder's, and the recurrent kernels release the GIL, so on
a machine with a free core the two LSTMs run at the same time. The gradients
are bitwise the ones of the joint backward (``ppo.loss_and_backward``): each
parameter gets the same contributions, and the encoder's two (one per half) are
added once, in a fixed order. A central critic (``--central-critic``) shares no parameter with the actor at all:
its half encodes the global state on its own thread too.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch

from agents.config import PPOConfig
from agents.model.policy import RecurrentActorCritic
from agents.train.ppo_loss import (
    LossTerms,
    Minibatch,
    actor_objective,
    policy_terms,
    real_steps,
    recall_loss,
    value_loss,
)


def usable_cpu_count() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pays_off(policy: RecurrentActorCritic, device: torch.device) -> bool:
    """Whether a second thread can help: a separate critic core, on a CPU with a core free for it."""
    return (device.type == "cpu" and policy.has_critic_core
            and usable_cpu_count() >= 2 * torch.get_num_threads())


class ParallelCritic:
    """One background thread that runs critic halves; its owner (a trainer) closes it when the run ends.

    The thread starts on first use and takes the OpenMP thread count of the thread that first uses it:
    OpenMP's count is per thread, and a new thread would start a team of one thread per core in every
    kernel and oversubscribe the machine (measured: 4x slower).
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnemo-critic",
                                            initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))
        return self._pool

    def loss_and_backward(self, policy: RecurrentActorCritic, mb: Minibatch, cfg: PPOConfig,
                          clip_coef: float) -> LossTerms:
        """``ppo.loss_and_backward`` with the critic's forward and backward on the second thread (needs
        ``policy.has_critic_core``); the returned terms are detached."""
        features = [policy.encode_sequence(sub.obs, *sub.episode_starts.shape, sub.agent_inputs)
                    for sub in mb.groups]
        # Only a critic that reads the actor's encoder shares its gradient (and only when it has parameters).
        encoder_grad = features[0].requires_grad and not policy.central_critic
        actor_in = [f.detach().requires_grad_() for f in features] if encoder_grad else features
        critic_in = [f.detach().requires_grad_() for f in features] if encoder_grad else features

        def critic_half() -> torch.Tensor:
            parts = [policy.critic_memory(policy.critic_features(f, sub.agent_inputs, *sub.episode_starts.shape),
                                          sub.start_states, sub.episode_starts)[0]
                     for f, sub in zip(critic_in, mb.groups, strict=True)]
            v_loss = value_loss(policy, real_steps(parts, mb.real), mb, cfg, clip_coef)
            (cfg.vf_coef * v_loss).backward()
            return v_loss.detach()

        future = self._worker().submit(critic_half)
        try:
            parts = [policy.actor_memory(f, sub.start_states, sub.episode_starts)[0]
                     for f, sub in zip(actor_in, mb.groups, strict=True)]
            hidden = real_steps(parts, mb.real)
            pg_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac = policy_terms(policy, hidden, mb, cfg,
                                                                                     clip_coef)
            recall = recall_loss(policy, hidden, mb)
            actor_objective(policy, cfg, pg_loss, entropy_loss, recall).backward()
        finally:
            v_loss = future.result()  # never leave the worker running (its exception is raised here)
        if encoder_grad:
            torch.autograd.backward(features, [a.grad + c.grad for a, c in zip(actor_in, critic_in, strict=True)])
        pg_loss, entropy_loss, recall = pg_loss.detach(), entropy_loss.detach(), recall.detach()
        loss = actor_objective(policy, cfg, pg_loss, entropy_loss, recall) + cfg.vf_coef * v_loss
        return LossTerms(loss, pg_loss, v_loss, entropy_loss, approx_kl, old_approx_kl, clipfrac, recall)

    def close(self) -> None:
        """Stop the thread (it is idle between minibatches); a later use would start a new one."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
