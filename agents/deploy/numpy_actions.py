"""Each action kind's numpy side, for ``OnnxRunner``: the greedy action, a draw, the env's format and the
log-probability, computed from an export's raw output and its metadata with numpy alone (no torch).

``NUMPY_ACTIONS`` maps an export's ``action_kind`` (the head's ``kind``, ``agents/model/action_heads.py``) to
its ``NumpyActions``; a kind of one's own registers with ``register_numpy_actions``. ``raw`` is the export's
action output ``(B, num_outputs)``: logits, or a Gaussian's mean; ``meta`` the export's metadata.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class NumpyActions(Protocol):
    """One action kind's numpy math."""

    def greedy(self, raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """The mode of the exported distribution, in its own units (before start / clipping)."""
        ...

    def sample(self, raw: np.ndarray, meta: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        """A draw from the exported distribution, before start / clipping."""
        ...

    def to_env(self, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """A sample in the env's format, as the graph's ``action`` output gives the greedy one."""
        ...

    def log_prob(self, raw: np.ndarray, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """log pi(sample | obs) per agent (B,), summed over action dimensions."""
        ...


NUMPY_ACTIONS: dict[str, NumpyActions] = {}


def register_numpy_actions(kind: str) -> Callable[[type], type]:
    """Class decorator: an instance of the class serves exports whose ``action_kind`` is ``kind``."""

    def decorate(cls: type) -> type:
        NUMPY_ACTIONS[kind] = cls()
        return cls

    return decorate


def numpy_actions(kind: str) -> NumpyActions:
    """The numpy side of ``kind``, or a ValueError that names the registered kinds and how to add one."""
    if kind not in NUMPY_ACTIONS:
        raise ValueError(f"action kind {kind!r} has no numpy runtime (registered: {', '.join(NUMPY_ACTIONS)}); "
                         f"register one with agents.deploy.numpy_actions.register_numpy_actions, or run the "
                         f"checkpoint with PolicyRunner.")
    return NUMPY_ACTIONS[kind]


def _action_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    return tuple(next(o for o in meta["outputs"] if o["name"] == "action")["shape"][1:])


def _bounds(meta: dict[str, Any]) -> np.ndarray:
    return np.cumsum([0, *meta["nvec"]])


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# An illegal action's logit, as agents.model.action_heads.MASKED_LOGIT (this module loads numpy only).
MASKED_LOGIT = -1e8


def mask_logits(raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A masked env's logits (B, num_outputs) with the entries ``mask`` (B, num_outputs, 0 = illegal) forbids set
    to ``MASKED_LOGIT``: their probability is then exactly 0, for every kind's greedy, sample and log_prob."""
    return np.where(np.asarray(mask).reshape(raw.shape) != 0, raw, np.float32(MASKED_LOGIT)).astype(raw.dtype)


def _sample_categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits)."""
    u = np.clip(rng.random(logits.shape), 1e-20, 1.0)
    return np.argmax(logits - np.log(-np.log(u)), axis=-1)


@register_numpy_actions("categorical")
class CategoricalActions:
    """Discrete(n): logits (B, n); the env's action is the index plus ``action_start``."""

    def greedy(self, raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return raw.argmax(-1)

    def sample(self, raw: np.ndarray, meta: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        return _sample_categorical(raw, rng)

    def to_env(self, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return sample + meta["action_start"]

    def log_prob(self, raw: np.ndarray, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return np.take_along_axis(_log_softmax(raw), sample[:, None], axis=1)[:, 0]


@register_numpy_actions("multi_categorical")
class MultiCategoricalActions:
    """MultiDiscrete(nvec): the categoricals' logits side by side (B, sum(nvec))."""

    def greedy(self, raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return np.stack([raw[:, a:b].argmax(-1) for a, b in itertools.pairwise(_bounds(meta))], axis=1)

    def sample(self, raw: np.ndarray, meta: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        return np.stack([_sample_categorical(raw[:, a:b], rng) for a, b in itertools.pairwise(_bounds(meta))],
                        axis=1)

    def to_env(self, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return sample.reshape(-1, *_action_shape(meta))

    def log_prob(self, raw: np.ndarray, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return sum(np.take_along_axis(_log_softmax(raw[:, a:b]), sample[:, k:k + 1], axis=1)[:, 0]
                   for k, (a, b) in enumerate(itertools.pairwise(_bounds(meta))))


@register_numpy_actions("gaussian")
class GaussianActions:
    """Box: the mean (B, d) and the metadata's ``log_std``; the env gets the action clipped to the bounds."""

    def greedy(self, raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return raw

    def sample(self, raw: np.ndarray, meta: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        std = np.exp(np.asarray(meta["log_std"], dtype=np.float32))
        return raw + std * rng.standard_normal(raw.shape).astype(np.float32)

    def to_env(self, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        sample = np.clip(sample, meta["action_low"], meta["action_high"]).astype(np.float32)
        return sample.reshape(-1, *_action_shape(meta))

    def log_prob(self, raw: np.ndarray, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        log_std = np.asarray(meta["log_std"], dtype=np.float32).reshape(-1)
        z = (sample - raw) / np.exp(log_std)
        return (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)


@register_numpy_actions("bernoulli")
class BernoulliActions:
    """MultiBinary: logits (B, d); the env gets 0 / 1."""

    def greedy(self, raw: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return (raw > 0).astype(np.int8)  # p > 0.5

    def sample(self, raw: np.ndarray, meta: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        probs = 1.0 / (1.0 + np.exp(-raw))
        return (rng.random(raw.shape) < probs).astype(np.int8)

    def to_env(self, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        return sample.reshape(-1, *_action_shape(meta))

    def log_prob(self, raw: np.ndarray, sample: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        log_p, log_not_p = -np.logaddexp(0.0, -raw), -np.logaddexp(0.0, raw)
        return np.where(sample.reshape(raw.shape) > 0, log_p, log_not_p).sum(-1)
