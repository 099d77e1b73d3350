"""Action distributions, one per Gymnasium action space.

Each head maps core features ``(N, F)`` to a distribution over actions. The
distributions are small hand-written classes rather than ``torch.distributions``
because the rollout calls them every step and argument validation, broadcasting
and lazy properties there cost more than the math.

| action space | head | distribution | stored action |
| --- | --- | --- | --- |
| Discrete(n) | CategoricalHead | categorical | (N,) int64 |
| MultiDiscrete(nvec) | MultiCategoricalHead | independent categoricals | (N, k) int64 |
| Box(d) | GaussianHead | diagonal Gaussian, state-independent log std | (N, *shape) float32, unclipped |
| MultiBinary(n) | BernoulliHead | independent Bernoullis | (N, *shape) float32 in {0, 1} |

Each head is the one place that knows its kind: export, the runner, the inspector and watch ask it
(``greedy``, ``to_env``, ``export_action``, ``action_rows``...) instead of switching on ``head.kind``.
``ACTION_HEADS`` maps each supported space type to its head (``register_action_head``); ``make_action_head``,
``check_action_space`` and the supported-spaces message read it, and nothing else lists the spaces.

Action masks (``agents.spaces``, "action masks"; docs/action_masks.md): the categorical heads take a bool
``legal`` (N, num_outputs), True where the env allows an action. Illegal logits become ``MASKED_LOGIT``, a large
finite negative number (as sb3-contrib's MaskableCategorical), before the softmax: an illegal action's probability
is exactly 0 in float32, the legal ones' log-probs are those of the softmax over the legal logits alone, and the
entropy sums over the legal actions only (``0 * MASKED_LOGIT`` is 0, where ``-inf`` would make it NaN). Sampling and
the mode also drop illegal entries after the Gumbel noise, so not even a saturated draw can pick one; a row whose
mask is all zero (an absent multi-agent row) stays finite (uniform).

The stored action is the sampled one; ``to_env`` clips Box actions to the
bounds for the env only, so log-probabilities stay exact.

``sample`` draws its own noise, or turns standard-normal noise of
``noise_shape`` (``agents.model.noise``, correlated over rollout steps) into an action
by inverse transform: a Gaussian's mean + std * z, a uniform Phi(z) for the
Gumbel-max and Bernoulli draws. Either way the action has the distribution's law.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from agents.spaces import UnsupportedSpaceError

# An illegal action's logit under a mask: finite, so that log-probs and entropy stay finite; softmax gives it
# probability exp(-1e8) = 0 exactly, the same value sb3-contrib's MaskableCategorical uses.
MASKED_LOGIT = -1e8


def _uniform(shape: torch.Size, generator: torch.Generator | None, device: torch.device,
             normal: torch.Tensor | None) -> torch.Tensor:
    """U(0, 1) draws of ``shape``: fresh ones, or Phi(normal) (uniform when ``normal`` is standard normal)."""
    if normal is None:
        return torch.rand(shape, generator=generator, device=device)
    return torch.special.ndtr(normal)


def _gumbel_argmax(logits: torch.Tensor, generator: torch.Generator | None,
                   normal: torch.Tensor | None = None, legal: torch.Tensor | None = None) -> torch.Tensor:
    """Sample from softmax(logits) along the last dim (Gumbel-max: one uniform draw per logit); under a mask
    ``legal`` (bool, the logits' shape) illegal entries are dropped after the noise: a uniform draw of exactly 1
    (Phi of a large normal) gives +inf noise, which must not pick an illegal action."""
    u = _uniform(logits.shape, generator, logits.device, normal)
    perturbed = logits - torch.log(-torch.log(u.clamp_(1e-20, 1.0)))
    if legal is not None:
        perturbed = torch.where(legal, perturbed, float("-inf"))
    return torch.argmax(perturbed, dim=-1)


class Categorical:
    """logits: (N, n) or (N, k, n) for k independent categoricals; ``legal``: None, or bool of the logits' shape,
    True where an action may be taken (its logits are then already ``MASKED_LOGIT`` where it is False)."""

    def __init__(self, logits: torch.Tensor, legal: torch.Tensor | None = None):
        # Normalised log-probs; one fused kernel (logits - logsumexp costs several times more per call).
        self.logits = torch.log_softmax(logits, -1)
        self.legal = legal

    @property
    def noise_shape(self) -> torch.Size:
        """Shape of the standard-normal noise ``sample`` turns into an action (one entry per logit)."""
        return self.logits.shape

    def sample(self, generator: torch.Generator | None = None, normal: torch.Tensor | None = None) -> torch.Tensor:
        return _gumbel_argmax(self.logits, generator, normal, self.legal)

    def mode(self) -> torch.Tensor:
        if self.legal is None:
            return self.logits.argmax(-1)
        return torch.where(self.legal, self.logits, float("-inf")).argmax(-1)

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
    """features (N, F) -> distribution over the env's actions; one subclass per action kind.

    A kind owns what differs between action spaces: the distribution, the stored and the env's action layout,
    the greedy action, the exported one and its metadata, the inspector's rows. ``make_action_head`` picks it.

    Attributes:
        kind: the kind's name, recorded in exports as ``action_kind``.
        action_shape: per-step shape of a stored action (``()`` for Discrete).
        action_dtype: dtype of a stored action.
        num_outputs: size of the raw output (logits or mean) that ``export`` exposes.
        output_name: the name of that output in an export.
        export_dtype: dtype of an export's greedy ``action`` output.
        rows_title, rows_signed: the inspector's caption of the action rows, and whether they span [-1, 1]
            (else [0, 1]).
        space_type: the Gymnasium space class it acts in (its key in ``ACTION_HEADS``).
        space_description: how the supported-spaces message names it.
    """

    kind: str
    space_type: type[spaces.Space]
    space_description: str
    output_name = "logits"
    rows_title = "action prob"
    rows_signed = False

    def __init__(self, space: spaces.Space, in_features: int, num_outputs: int, action_shape: tuple[int, ...],
                 action_dtype: torch.dtype, ortho_init: bool = True):
        super().__init__()
        self.space = space
        self.num_outputs, self.action_shape, self.action_dtype = num_outputs, action_shape, action_dtype
        self.export_dtype = {torch.int64: "int64"}.get(action_dtype, "float32")
        self.linear = nn.Linear(in_features, num_outputs)
        if ortho_init:
            # Small initial outputs: a near-uniform (or unit-std) starting policy, as in the PPO baselines.
            nn.init.orthogonal_(self.linear.weight, gain=0.01)
            nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        """features (N, F), and for a masked env ``legal`` (N, num_outputs) bool -> the distribution."""
        return self.distribution(self.linear(features), legal)

    @classmethod
    def check_space(cls, space: spaces.Space) -> None:
        """Raise UnsupportedSpaceError, naming the fix, for a ``space_type`` space this head cannot act in."""

    def distribution(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        """Raw head output (N, num_outputs) (and ``legal`` (N, num_outputs) bool under a mask) -> distribution."""
        raise NotImplementedError

    def mask_output(self, out: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        """Raw output (N, num_outputs) with illegal entries set to ``MASKED_LOGIT``; traceable (export)."""
        raise UnsupportedSpaceError(f"{type(self).__name__} ({self.space}) takes no action mask; action masks "
                                    f"need a Discrete or MultiDiscrete action space.")

    def greedy(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> torch.Tensor:
        """The most likely action for raw output (N, num_outputs), in the layout the distribution scores."""
        return self.distribution(out, legal).mode()

    def flat_actions(self, action: torch.Tensor) -> torch.Tensor:
        """Stored actions (N, *action_shape) -> the layout the distribution scores."""
        return action

    def shape_actions(self, action: torch.Tensor) -> torch.Tensor:
        """Distribution samples -> stored layout (N, *action_shape)."""
        return action

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        """Stored actions (N, *action_shape) -> numpy actions the env accepts (Box clipped to bounds)."""
        return action.detach().cpu().numpy()

    def describe_action(self, action: np.ndarray, labels: Sequence[str] | None = None) -> str:
        """One env action as short text (a caption); ``labels`` are the inspector's row labels."""
        a = np.asarray(action)
        return np.array2string(a, precision=2) if a.ndim else str(a.item())

    # ------------------------------------------------------------------ export (agents/deploy/export.py)
    def export_buffers(self) -> dict[str, torch.Tensor]:
        """Constants the exported graph's greedy action reads; the export keeps them as named buffers."""
        return {}

    def export_action(self, raw: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        """Traceable greedy action in the env's format (what ``to_env(shape_actions(greedy(raw)))`` gives)."""
        raise NotImplementedError

    def export_metadata(self) -> dict[str, Any]:
        """The kind's own entries in an export's metadata (what a runtime needs to sample or convert)."""
        return {}

    def export_reference(self, dist: Distribution) -> np.ndarray:
        """What ``normalise_export`` of the exported output must equal: (N, num_outputs) numpy."""
        return dist.logits.cpu().numpy()

    def normalise_export(self, raw: np.ndarray) -> np.ndarray:
        """An export's raw output (N, num_outputs) -> what the distribution holds (log-probs for categoricals)."""
        return raw

    def same_actions(self, got: np.ndarray, ref: np.ndarray) -> bool:
        """Whether an export's greedy actions equal torch's (exactly, for discrete actions)."""
        return bool(np.array_equal(got.astype(np.int64), np.asarray(ref).astype(np.int64)))

    # ------------------------------------------------------------------ inspector (agents/watch/inspector.py)
    def action_labels(self, given: Sequence[str] | None = None) -> list[str]:
        """Names of the inspector's action rows; ``given`` names a Discrete space's actions."""
        raise NotImplementedError

    def action_rows(self, dist: Distribution, action: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        """One step's row values (R,) for batch entry 0, and the rows of ``action`` (action_shape) taken."""
        raise NotImplementedError


ACTION_HEADS: dict[type[spaces.Space], type[ActionHead]] = {}


def register_action_head(head: type[ActionHead]) -> type[ActionHead]:
    """Class decorator: ``head`` acts in spaces of its ``space_type`` (one head per space type)."""
    old = ACTION_HEADS.get(head.space_type)
    if old is not None and old is not head:
        raise ValueError(f"{head.space_type.__name__} already has the action head {old.__name__}; "
                         f"unregister it (del ACTION_HEADS[...]) or subclass the space.")
    ACTION_HEADS[head.space_type] = head
    return head


@register_action_head
class CategoricalHead(ActionHead):
    """Discrete(n): one categorical; the env's action is the index plus the space's ``start``."""

    kind = "categorical"
    space_type = spaces.Discrete
    space_description = "Discrete"

    def __init__(self, space: spaces.Discrete, in_features: int, ortho_init: bool = True):
        super().__init__(space, in_features, int(space.n), (), torch.int64, ortho_init)
        self.start = int(space.start)

    def distribution(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        if legal is None:
            return Categorical(out)
        return Categorical(self.mask_output(out, legal), legal)

    def mask_output(self, out: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        return out.masked_fill(~legal, MASKED_LOGIT)

    def greedy(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> torch.Tensor:
        # Without building the distribution: argmax of the raw logits is argmax of the normalised ones
        # (the shift by logsumexp is the same for every action).
        if legal is not None:
            return torch.where(legal, out, float("-inf")).argmax(-1)
        return out.argmax(-1)

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        a = action.detach().cpu().numpy()
        return a + self.start if self.start != 0 else a

    def describe_action(self, action: np.ndarray, labels: Sequence[str] | None = None) -> str:
        a = np.asarray(action)
        if labels is not None and a.ndim == 0:
            idx = int(a) - self.start
            if 0 <= idx < len(labels) and labels[idx] != str(int(a)):
                return f"{int(a)} ({labels[idx]})"
        return super().describe_action(a)

    def export_action(self, raw: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        action = raw.argmax(-1)
        return action + self.start if self.start else action

    def export_metadata(self) -> dict[str, Any]:
        return {"action_start": self.start}

    def normalise_export(self, raw: np.ndarray) -> np.ndarray:
        return log_softmax(raw)

    def action_labels(self, given: Sequence[str] | None = None) -> list[str]:
        if given is not None and len(given) == self.num_outputs:
            return [str(label) for label in given]
        return [str(self.start + a) for a in range(self.num_outputs)]

    def action_rows(self, dist: Distribution, action: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        return dist.logits[0].exp().cpu().numpy(), [int(action.item())]


@register_action_head
class MultiCategoricalHead(ActionHead):
    """MultiDiscrete(nvec): independent categoricals, one per entry of ``nvec`` (start 0)."""

    kind = "multi_categorical"
    space_type = spaces.MultiDiscrete
    space_description = "MultiDiscrete (start 0)"

    @classmethod
    def check_space(cls, space: spaces.Space) -> None:
        if np.any(np.asarray(space.start) != 0):
            raise UnsupportedSpaceError(
                f"MultiDiscrete action space {space} has a non-zero start; wrap the env's actions to start at 0.")

    def __init__(self, space: spaces.MultiDiscrete, in_features: int, ortho_init: bool = True):
        nvec = np.asarray(space.nvec).ravel()
        super().__init__(space, in_features, int(nvec.sum()), (len(nvec),), torch.int64, ortho_init)
        self.nvec = [int(n) for n in nvec]
        self.offsets = [int(s) for s in np.cumsum([0, *self.nvec[:-1]])]
        # Pad each categorical to the largest size with very negative (finite, so that
        # entropy's p * log p stays 0, not nan) logits; one tensor op then serves all.
        self.max_n = int(nvec.max())
        mask = torch.full((len(nvec), self.max_n), -1e9)
        for i, n in enumerate(self.nvec):
            mask[i, :n] = 0.0
        self.register_buffer("pad_mask", mask)

    def distribution(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        if legal is not None:
            out = self.mask_output(out, legal)
        padded = out.new_zeros(out.shape[0], len(self.nvec), self.max_n)
        padded[:, :, :] = self.pad_mask
        for i, (start, n) in enumerate(zip(self.offsets, self.nvec, strict=True)):
            padded[:, i, :n] = out[:, start:start + n]
        if legal is None:
            return Categorical(padded)
        padded_legal = legal.new_zeros(out.shape[0], len(self.nvec), self.max_n)  # padding is never legal
        for i, (start, n) in enumerate(zip(self.offsets, self.nvec, strict=True)):
            padded_legal[:, i, :n] = legal[:, start:start + n]
        return Categorical(padded, padded_legal)

    def mask_output(self, out: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
        return out.masked_fill(~legal, MASKED_LOGIT)

    def export_action(self, raw: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([raw[:, a:a + n].argmax(-1) for a, n in zip(self.offsets, self.nvec, strict=True)], dim=1)

    def export_metadata(self) -> dict[str, Any]:
        return {"nvec": list(self.nvec)}

    def export_reference(self, dist: Distribution) -> np.ndarray:
        return np.concatenate([dist.logits[:, i, :n].cpu().numpy() for i, n in enumerate(self.nvec)], 1)

    def normalise_export(self, raw: np.ndarray) -> np.ndarray:
        return np.concatenate([log_softmax(raw[:, a:a + n]) for a, n in zip(self.offsets, self.nvec, strict=True)], 1)

    def action_labels(self, given: Sequence[str] | None = None) -> list[str]:
        return [f"{i}:{j}" for i, n in enumerate(self.nvec) for j in range(n)]

    def action_rows(self, dist: Distribution, action: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        probs = dist.logits[0].exp().cpu().numpy()  # (k, max_n), padding has probability 0
        rows = np.concatenate([probs[i, :n] for i, n in enumerate(self.nvec)])
        return rows, [self.offsets[i] + int(a) for i, a in enumerate(action.reshape(-1).tolist())]


class _ElementwiseHead(ActionHead):
    """Box and MultiBinary: one output per action element; stored actions keep the space's shape."""

    def flat_actions(self, action: torch.Tensor) -> torch.Tensor:
        return action.reshape(action.shape[0], self.num_outputs)

    def shape_actions(self, action: torch.Tensor) -> torch.Tensor:
        return action.reshape(action.shape[0], *self.action_shape)


@register_action_head
class GaussianHead(_ElementwiseHead):
    """Box: a diagonal Gaussian with a state-independent log std; the env gets the action clipped to the bounds."""

    kind = "gaussian"
    space_type = spaces.Box
    space_description = "Box (continuous, finite shape)"
    output_name = "mean"
    rows_title = "action mean"
    rows_signed = True

    @classmethod
    def check_space(cls, space: spaces.Space) -> None:
        if not (np.issubdtype(space.dtype, np.floating) and len(space.shape) > 0):
            raise UnsupportedSpaceError(
                f"Action space Box ({space}) is not supported: a Box action must be continuous (float) with a shape. "
                f"Supported: {supported_action_spaces()}; use Discrete / MultiDiscrete for integer actions.")

    def __init__(self, space: spaces.Box, in_features: int, ortho_init: bool = True):
        num_outputs = int(np.prod(space.shape))
        super().__init__(space, in_features, num_outputs, tuple(space.shape), torch.float32, ortho_init)
        self.log_std = nn.Parameter(torch.zeros(num_outputs))
        self.low = np.asarray(space.low, dtype=np.float32)
        self.high = np.asarray(space.high, dtype=np.float32)

    def distribution(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        return DiagGaussian(out, self.log_std)

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        a = action.detach().cpu().numpy()
        return np.clip(a, self.low, self.high).astype(self.space.dtype, copy=False)

    def export_buffers(self) -> dict[str, torch.Tensor]:
        return {"low": torch.as_tensor(self.low.reshape(-1), dtype=torch.float32),
                "high": torch.as_tensor(self.high.reshape(-1), dtype=torch.float32)}

    def export_action(self, raw: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.minimum(torch.maximum(raw, buffers["low"]), buffers["high"]).reshape(-1, *self.action_shape)

    def export_metadata(self) -> dict[str, Any]:
        return {"log_std": self.log_std.detach().cpu().tolist(), "action_low": self.low.reshape(-1).tolist(),
                "action_high": self.high.reshape(-1).tolist()}

    def export_reference(self, dist: Distribution) -> np.ndarray:
        return dist.mean.cpu().numpy()

    def same_actions(self, got: np.ndarray, ref: np.ndarray) -> bool:
        return bool(np.allclose(got, ref, atol=1e-5, rtol=0))

    def action_labels(self, given: Sequence[str] | None = None) -> list[str]:
        return [f"mean a{i}" for i in range(self.num_outputs)]

    def action_rows(self, dist: Distribution, action: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        """The means scaled to [-1, 1]: by the bounds where both are finite, else through tanh."""
        mean = dist.mean[0].cpu().numpy()
        low, high = self.low.reshape(-1), self.high.reshape(-1)
        finite = np.isfinite(low) & np.isfinite(high) & (high > low)
        mid = np.where(finite, (low + high) / 2, 0.0)
        half = np.where(finite, (high - low) / 2, 1.0)
        scaled = np.where(finite, (mean - mid) / half, np.tanh(mean))
        return np.clip(scaled, -1.0, 1.0), []


@register_action_head
class BernoulliHead(_ElementwiseHead):
    """MultiBinary: independent Bernoullis; the env gets 0 / 1 in the space's dtype."""

    kind = "bernoulli"
    space_type = spaces.MultiBinary
    space_description = "MultiBinary"

    def __init__(self, space: spaces.MultiBinary, in_features: int, ortho_init: bool = True):
        super().__init__(space, in_features, int(np.prod(space.shape)), tuple(space.shape), torch.float32,
                         ortho_init)
        self.export_dtype = "int8"

    def distribution(self, out: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        return Bernoulli(out)

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        return action.detach().cpu().numpy().astype(self.space.dtype)

    def export_action(self, raw: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        return (raw > 0).to(torch.int8).reshape(-1, *self.action_shape)

    def action_labels(self, given: Sequence[str] | None = None) -> list[str]:
        return [f"p(b=1) {i}" for i in range(self.num_outputs)]

    def action_rows(self, dist: Distribution, action: torch.Tensor) -> tuple[np.ndarray, list[int]]:
        probs = torch.sigmoid(dist.logits[0]).cpu().numpy()
        return probs, [i for i, a in enumerate(action.reshape(-1).tolist()) if a > 0.5]


def make_action_head(action_space: spaces.Space, in_features: int, ortho_init: bool = True) -> ActionHead:
    """The action head for ``action_space`` (UnsupportedSpaceError, naming the supported ones, otherwise)."""
    return head_class(action_space)(action_space, in_features, ortho_init)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Numpy log-softmax over the last axis."""
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def supported_action_spaces() -> str:
    """The spaces the registered heads act in, for messages and docs."""
    return ", ".join(head.space_description for head in ACTION_HEADS.values())


def head_class(space: spaces.Space) -> type[ActionHead]:
    """The registered head for ``space``'s type, after its own checks; UnsupportedSpaceError otherwise."""
    for space_type in type(space).__mro__:  # a subclass of a supported space is acted in by that space's head
        if space_type in ACTION_HEADS:
            head = ACTION_HEADS[space_type]
            head.check_space(space)
            return head
    raise UnsupportedSpaceError(
        f"Action space {type(space).__name__} ({space}) is not supported. Supported: {supported_action_spaces()}. "
        f"Wrap the env (e.g. flatten a Dict action space into MultiDiscrete) to use it.")


def check_action_space(space: spaces.Space) -> None:
    """Raise UnsupportedSpaceError naming the space and listing the supported ones."""
    head_class(space)
