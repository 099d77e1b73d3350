"""Temporally correlated sampling noise for rollouts (``--noise-correlation``).

PPO draws every action independently of the one before. In a game whose reward
only shows after a long run of the same action (MountainCar: the car must swing
for dozens of steps before it can reach the flag), a near-uniform policy then
explores like a random walk with one-step strides and may never see a reward.
Here each env's sampling noise follows an AR(1) process, the discrete-time
Ornstein-Uhlenbeck process:

    z_t = rho * z_{t-1} + sqrt(1 - rho^2) * eps_t,    eps_t ~ N(0, I) i.i.d.,

started from z_0 = eps_0. Every z_t is exactly N(0, I), and the distributions
turn it into an action by inverse transform (``agents.model.action_heads``), so the
action drawn at each step has exactly the policy's distribution and the
log-probabilities PPO stores and recomputes are unchanged. What changes is the
joint law of consecutive actions: under a near-uniform categorical policy with
``rho = 0.98`` about one step in eleven changes action instead of two in three.
As the policy sharpens the noise decides less and less. The update still treats
the steps as independent draws, the approximation colored-noise PPO makes
(Hollenstein, Martius and Piater, "Colored noise in PPO", arXiv:2312.11091).
"""

from __future__ import annotations

import math

import torch


class CorrelatedNoise:
    """Standard-normal noise that is correlated from one rollout step to the next, per env.

    Args:
        rho: correlation between consecutive steps' noise, in [0, 1); 0 draws independent noise.

    The state is ``last``, the last draw (None before the first), shape ``(N, *event)`` with N envs; the
    collector saves and restores it with its checkpoints. A draw of another shape starts a fresh process.
    """

    def __init__(self, rho: float):
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {rho}")
        self.rho = rho
        self._innovation_scale = math.sqrt(1.0 - rho * rho)
        self.last: torch.Tensor | None = None

    def draw(self, shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
             device: torch.device | str | None = None) -> torch.Tensor:
        """The next noise tensor of ``shape``: N(0, 1) entries, each correlated ``rho`` with its previous value."""
        eps = torch.randn(shape, generator=generator, device=device)
        if self.last is None or self.last.shape != eps.shape:
            self.last = eps
        else:
            self.last = self.rho * self.last + self._innovation_scale * eps
        return self.last
