"""Value normalisation (``--normalize-value``): PopArt's output-preserving value head.

The critic learns values on a unit scale while the returns it predicts drift
in size as the agent improves (a game whose score grows from 10 to 10,000).
PopArt (van Hasselt et al. 2016, "Learning values across many orders of
magnitude") keeps running statistics ``mu``, ``sigma`` of the value targets,
trains the head's linear layer on ``(target - mu) / sigma``, and whenever the
statistics move, rescales that layer so that the value it outputs in the
return's own units stays exactly what it was ("preserving outputs precisely
while adaptively rescaling targets").

``PopArtValueHead.forward`` returns the value in return units, so every
reader of the critic (rollout, GAE, evaluation, the runner, the export) is
unchanged; only the loss divides its error by ``sigma`` (``scale``), which is
the squared error in normalised units.

The statistics are exponential moving averages of the first and second
moments of each iteration's targets (decay ``DECAY`` per update, debiased as
Adam debiases its moments), so they follow returns that grow or shrink over
training instead of averaging over the whole run.
"""

from __future__ import annotations

import torch
from torch import nn

# Per update (one rollout's targets): statistics remember about the last 1 / (1 - DECAY) = 100 updates.
DECAY = 0.99
# Below this the targets are constant (a task with one outcome); a smaller sigma would blow the head's weights up.
MIN_SIGMA = 1e-4


class PopArtValueHead(nn.Module):
    """A ``Linear(in_features, 1)`` value head whose output is in return units: ``linear(x) * sigma + mu``.

    Args:
        in_features: the critic features' width F.
    Shapes: ``forward`` (N, F) -> (N, 1), as ``nn.Linear(F, 1)`` gives (so callers can swap it in).
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)
        self.register_buffer("first_moment", torch.zeros((), dtype=torch.float64))
        self.register_buffer("second_moment", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debias", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mu", torch.zeros(()))
        self.register_buffer("sigma", torch.ones(()))

    @property
    def weight(self) -> nn.Parameter:
        return self.linear.weight

    @property
    def bias(self) -> nn.Parameter:
        return self.linear.bias

    @property
    def scale(self) -> torch.Tensor:
        """sigma: the loss divides value errors in return units by it."""
        return self.sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.sigma + self.mu

    @torch.no_grad()
    def update(self, targets: torch.Tensor) -> None:
        """Fold one rollout's value targets (any shape, real steps only) into the statistics, then rescale the
        linear layer so that ``forward`` gives the same values as before (to float rounding)."""
        targets = targets.detach().double().reshape(-1)
        if targets.numel() == 0:
            return
        self.first_moment.mul_(DECAY).add_((1 - DECAY) * targets.mean())
        self.second_moment.mul_(DECAY).add_((1 - DECAY) * targets.pow(2).mean())
        self.debias.mul_(DECAY).add_(1 - DECAY)
        mean = self.first_moment / self.debias
        var = (self.second_moment / self.debias - mean.pow(2)).clamp(min=0.0)
        new_mu, new_sigma = mean.float(), var.sqrt().clamp(min=MIN_SIGMA).float()
        old_mu, old_sigma = self.mu.clone(), self.sigma.clone()
        self.linear.weight.mul_(old_sigma / new_sigma)
        self.linear.bias.mul_(old_sigma).add_(old_mu - new_mu).div_(new_sigma)
        self.mu.copy_(new_mu)
        self.sigma.copy_(new_sigma)
