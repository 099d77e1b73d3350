"""Action distributions, one per Gymnasium action space.

Each head maps core features ``(N, F)`` to a distribution over actions. The
distributions are small hand-written classes rather than ``torch.distributions``
because the rollout calls them every step and argument validation, broadcasting
and lazy properties there cost more than the math.

| action space | distribution | stored action |
| --- | --- | --- |
| Discrete(n) | categorical | (N,) int64 |
| MultiDiscrete(nvec) | independent categoricals | (N, k) int64 |
| Box(d) | diagonal Gaussian, state-independent log std | (N, *shape) float32, unclipped |
| MultiBinary(n) | independent Bernoullis | (N, *shape) float32 in {0, 1} |

The stored action is the sampled one; ``to_env`` clips Box actions to the
bounds for the env only, so log-probabilities stay exact.

``sample`` draws its own noise, or turns standard-normal noise of
``noise_shape`` (``agents.noise``, correlated over rollout steps) into an action
by inverse transform: a Gaussian's mean + std * z, a uniform Phi(z) for the
Gumbel-max and Bernoulli draws. Either way the action has the distribution's law.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from agents.spaces import UnsupportedSpaceError

SUPPORTED_ACTION_SPACES = "Discrete, MultiDiscrete, Box (continuous, finite shape) and MultiBinary"


def _uniform(shape: torch.Size, generator: torch.Generator | None, device: torch.device,
             normal: torch.Tensor | None) -> torch.Tensor:
    """U(0, 1) draws of ``shape``: fresh ones, or Phi(normal) (uniform when ``normal`` is standard normal)."""
    if normal is None:
        return torch.rand(shape, generator=generator, device=device)
    return torch.special.ndtr(normal)


def _gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None,
                   normal: torch.Tensor | None = None) -> torch.Tensor:
    """Sample from softmax(logits) along the last dim (Gumbel-max: one uniform draw per logit)."""
    u = _uniform(logits.shape, generator, logits.device, normal)
    return torch.argmax(logits - torch.log(-torch.log(u.clamp_(1e-20, 1.0))), dim=-1)


class Categorical:
    """logits: (N, n) or (N, k, n) for k independent categoricals."""

    def __init__(self, logits: torch.Tensor):
        # Normalised log-probs; one fused kernel (logits - logsumexp costs several times more per call).
        self.logits = torch.log_softmax(logits, -1)

    @property
    def noise_shape(self) -> torch.Size:
        """Shape of the standard-normal noise ``sample`` turns into an action (one entry per logit)."""
        return self.logits.shape

    def sample(self, generator: torch.Generator | None = None, normal: torch.Tensor | None = None) -> torch.Tensor:
        return _gumbel_argmax(self.logits, generator, normal)

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        lp = self.logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return lp if lp.dim() == 1 else lp.sum(-1)

    def entropy(self) -> torch.Tensor:
        ent = -(self.logits.exp() * self.logits).sum(-1)
        return ent if ent.dim() == 1 else ent.sum(-1)


class DiagGaussian:
    """mean: (N, d), log_std: (d,); actions (N, d) (reshaped to the Box shape by the head)."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean, self.log_std = mean, log_std.expand_as(mean)

    @property
    def noise_shape(self) -> torch.Size:
        return self.mean.shape

    def sample(self, generator: torch.Generator | None = None, normal: torch.Tensor | None = None) -> torch.Tensor:
        if normal is None:
            normal = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return self.mean + normal * self.log_std.exp()

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        z = (action - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)


class Bernoulli:
    """logits: (N, d); actions (N, d) floats in {0, 1}."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    @property
    def noise_shape(self) -> torch.Size:
        return self.logits.shape

    def sample(self, generator: torch.Generator | None = None, normal: torch.Tensor | None = None) -> torch.Tensor:
        u = _uniform(self.logits.shape, generator, self.logits.device, normal)
        return (u < torch.sigmoid(self.logits)).float()

    def mode(self) -> torch.Tensor:
        return (self.logits > 0).float()

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, action, reduction="none").sum(-1)

    def entropy(self) -> torch.Tensor:
        p = torch.sigmoid(self.logits)
        return F.binary_cross_entropy_with_logits(self.logits, p, reduction="none").sum(-1)


Distribution = Categorical | DiagGaussian | Bernoulli


class ActionHead(nn.Module):
    """features (N, F) -> distribution over the env's actions; also converts actions for the env.

    Attributes:
        action_shape: per-step shape of a stored action (``()`` for Discrete).
        action_dtype: dtype of a stored action.
        num_outputs: size of the raw output (logits or mean) that ``export`` exposes.
    """

    def __init__(self, action_space: spaces.Space, in_features: int, ortho_init: bool = True):
        super().__init__()
        check_action_space(action_space)
        self.space = action_space
        self.log_std: nn.Parameter | None = None
        if isinstance(action_space, spaces.Discrete):
            self.kind, self.num_outputs = "categorical", int(action_space.n)
            self.action_shape, self.action_dtype = (), torch.int64
        elif isinstance(action_space, spaces.MultiDiscrete):
            nvec = np.asarray(action_space.nvec).ravel()
            self.kind, self.nvec = "multi_categorical", [int(n) for n in nvec]
            self.num_outputs = int(nvec.sum())
            self.action_shape, self.action_dtype = (len(nvec),), torch.int64
            # Pad each categorical to the largest size with very negative (finite, so that
            # entropy's p * log p stays 0, not nan) logits; one tensor op then serves all.
            self.max_n = int(nvec.max())
            mask = torch.full((len(nvec), self.max_n), -1e9)
            for i, n in enumerate(self.nvec):
                mask[i, :n] = 0.0
            self.register_buffer("pad_mask", mask)
        elif isinstance(action_space, spaces.Box):
            self.kind, self.num_outputs = "gaussian", int(np.prod(action_space.shape))
            self.action_shape, self.action_dtype = tuple(action_space.shape), torch.float32
            self.log_std = nn.Parameter(torch.zeros(self.num_outputs))
            self.low = np.asarray(action_space.low, dtype=np.float32)
            self.high = np.asarray(action_space.high, dtype=np.float32)
        else:  # MultiBinary
            self.kind, self.num_outputs = "bernoulli", int(np.prod(action_space.shape))
            self.action_shape, self.action_dtype = tuple(action_space.shape), torch.float32
        self.linear = nn.Linear(in_features, self.num_outputs)
        if ortho_init:
            # Small initial outputs: a near-uniform (or unit-std) starting policy, as in the PPO baselines.
            nn.init.orthogonal_(self.linear.weight, gain=0.01)
            nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> Distribution:
        return self.distribution(self.linear(features))

    def distribution(self, out: torch.Tensor) -> Distribution:
        """Raw head output (N, num_outputs) -> distribution."""
        if self.kind == "categorical":
            return Categorical(out)
        if self.kind == "multi_categorical":
            padded = out.new_zeros(out.shape[0], len(self.nvec), self.max_n)
            padded[:, :, :] = self.pad_mask
            for i, (start, n) in enumerate(zip(np.cumsum([0, *self.nvec[:-1]]), self.nvec, strict=True)):
                padded[:, i, :n] = out[:, start:start + n]
            return Categorical(padded)
        if self.kind == "gaussian":
            return DiagGaussian(out, self.log_std)
        return Bernoulli(out)

    def flat_actions(self, action: torch.Tensor) -> torch.Tensor:
        """Stored actions (N, *action_shape) -> the layout the distribution scores."""
        if self.kind in ("gaussian", "bernoulli"):
            return action.reshape(action.shape[0], self.num_outputs)
        return action

    def shape_actions(self, action: torch.Tensor) -> torch.Tensor:
        """Distribution samples -> stored layout (N, *action_shape)."""
        if self.kind in ("gaussian", "bernoulli"):
            return action.reshape(action.shape[0], *self.action_shape)
        return action

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        """Stored actions (N, *action_shape) -> numpy actions the env accepts (Box clipped to bounds)."""
        a = action.detach().cpu().numpy()
        if self.kind == "gaussian":
            return np.clip(a, self.low, self.high).astype(self.space.dtype, copy=False)
        if self.kind == "bernoulli":
            return a.astype(self.space.dtype)
        if self.kind == "categorical" and self.space.start != 0:
            return a + int(self.space.start)
        return a


def check_action_space(space: spaces.Space) -> None:
    """Raise UnsupportedSpaceError naming the space and listing the supported ones."""
    ok = isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary))
    if isinstance(space, spaces.Box):
        ok = np.issubdtype(space.dtype, np.floating) and len(space.shape) > 0
    if isinstance(space, spaces.MultiDiscrete) and np.any(np.asarray(space.start) != 0):
        raise UnsupportedSpaceError(
            f"MultiDiscrete action space {space} has a non-zero start; wrap the env's actions to start at 0.")
    if not ok:
        raise UnsupportedSpaceError(
            f"Action space {type(space).__name__} ({space}) is not supported. Supported: {SUPPORTED_ACTION_SPACES}. "
            f"Wrap the env (e.g. flatten a Dict action space into MultiDiscrete) to use it.")
