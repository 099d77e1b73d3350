"""Look inside the agent's memory: what its core holds and computes, read out step by step.

Two parts (torch only; the panel that draws the readouts is ``agents.watch.memory_panel.MemoryPanel``):

1. **The equations**: :func:`trace_rnn` re-runs a trained ``nn.LSTM`` / ``nn.GRU`` step by step with the
   textbook equations from its own weights and returns every gate of every layer
   (``agents/model/rnn_equations.py``; :func:`trace_core` for a policy's LSTM or GRU core).

2. **The readout** (:class:`MemoryProbe`): one policy step for one env turned into numpy arrays: the
   observation the core saw, the rows its core shows per column (``agents.model.cores.memory_view`` and
   ``inspect_step``: an LSTM's gates and states per layer, a GRU's, a frame stack's slots, any other core's
   state tensors), the value estimate and the action rows (what they are is the action head's to say:
   probabilities, or Gaussian means scaled to [-1, 1]).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.model.cores import MemoryRow, inspect_step, memory_view
from agents.model.encoders import GridEncoder, ImageEncoder
from agents.model.policy import RecurrentActorCritic
from agents.model.rnn_equations import (
    GRU_QUANTITIES,
    LSTM_QUANTITIES,
    CoreTrace,
    InspectorError,
    gru_cell,
    lstm_cell,
    trace_core,
    trace_rnn,
)
from agents.trees import Tree, tree_map

__all__ = ["GRU_QUANTITIES", "LSTM_QUANTITIES", "CoreTrace", "InspectorError", "MemoryProbe", "StepReadout",
           "action_labels_for", "gru_cell", "lstm_cell", "trace_core", "trace_rnn"]


# =========================================================================== 2. the readout
@dataclass
class StepReadout:
    """One policy step of one env, as numpy arrays for drawing.

    Attributes:
        episode_start: whether this observation began an episode (the state was reset before it).
        obs: (P,) the preprocessed observation fed to the encoder, or None when not shown (images, P > 64).
        layers: per column of the core's view (a layer, a stack slot), row key -> (W,) values.
        value: the critic's estimate V(obs).
        action_values: (R,) one row per action choice: probabilities, or Gaussian means scaled to [-1, 1].
        chosen: row indices of the action taken.
        reward: the reward the action earned (set once the env has stepped).
        absent: the agent was not in the env at this step (a multi-agent env): nothing was read, its state
            was held; the panel leaves the column empty (``StepReadout.away``).
    """

    episode_start: bool
    obs: np.ndarray | None
    layers: list[dict[str, np.ndarray]]
    value: float
    action_values: np.ndarray
    chosen: list[int]
    reward: float | None = None
    absent: bool = False

    @classmethod
    def away(cls) -> StepReadout:
        """The readout of a step at which the inspected agent was absent (nothing to read)."""
        return cls(episode_start=False, obs=None, layers=[], value=float("nan"), action_values=np.empty(0),
                   chosen=[], absent=True)


def _time_major(obs: Tree) -> Tree:
    return tree_map(lambda x: x.unsqueeze(0), obs)


class MemoryProbe:
    """Reads a policy's memory and outputs for one env (batch B = 1).

    Args:
        policy: the trained agent (its actor core is shown; a separate critic core is not).
        action_labels: names of the action rows (Discrete: one per action); defaults to numbers.
        max_obs_rows: preprocessed observations up to this size are shown as a strip.
    """

    def __init__(self, policy: RecurrentActorCritic, action_labels: Sequence[str] | None = None,
                 max_obs_rows: int = 64):
        self.policy = policy
        core = policy.actor_core
        self.kind = core.kind
        self.separate_critic = policy.critic_core is not None
        self._actor_states = core.num_state_tensors
        # What the panel draws: the core's columns (layers, or a stack's slots) and the rows in each.
        self.view = memory_view(core)
        self.title, self.column_names = self.view.title, list(self.view.columns)
        self.num_layers, self.hidden_size = len(self.view.columns), self.view.width
        has_image = any(isinstance(m, (ImageEncoder, GridEncoder)) for m in policy.preprocess.modules())
        self.obs_size = 0 if has_image or policy.preprocess.out_features > max_obs_rows \
            else policy.preprocess.out_features
        self._head = policy.action_head
        self.action_labels = self._head.action_labels(action_labels)
        self.rows_title, self.rows_signed = self._head.rows_title, self._head.rows_signed

    def describe_action(self, action: Any) -> str:
        """An env action as caption text, with its label where the env names its actions."""
        return self._head.describe_action(action, self.action_labels)

    @property
    def rows(self) -> tuple[MemoryRow, ...]:
        """The rows the panel draws in every column (none when the core has no memory to show)."""
        return self.view.rows if self.view.columns else ()

    @property
    def quantities(self) -> tuple[str, ...]:
        """The keys of ``rows``, as in each readout's ``layers`` dicts."""
        return tuple(row.key for row in self.rows)

    @torch.no_grad()
    def read(self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, action: torch.Tensor,
             next_state: torch.Tensor | None = None, agent_inputs: dict | None = None) -> StepReadout:
        """Readout of the step that ``policy.step(obs, state, episode_start)`` took.

        Args:
            obs: leaves (1, *shape).
            state: (S, L, 1, H), the state before obs.
            episode_start: (1,).
            action: (1, *action_shape), the action the policy chose.
            next_state: the state ``policy.step`` returned; when given, the recomputed core state must
                equal it (1e-4), which guards the equations against changes to the policy's core.
            agent_inputs: a multi-agent policy's inputs beside the observation, leaves (1, ...) (its slot; never
                the global state: a central critic's value reads NaN here).
        """
        policy = self.policy
        pre = policy.preprocess(policy.encoder_obs(obs))
        layers: list[dict[str, np.ndarray]] = []
        if self.view.columns:
            actor_state = state[: self._actor_states]
            columns, new_state = inspect_step(policy.actor_core, policy.encode(obs, agent_inputs), actor_state,
                                              episode_start)
            if next_state is not None:
                diff = (new_state - next_state[: self._actor_states]).abs().max().item()
                if diff > 1e-4:
                    raise InspectorError(
                        f"Recomputed {self.kind} state differs from the policy's by {diff:.2e}: the inspector's "
                        "equations no longer describe agents/model/policy.py's core.")
            layers = [{key: values[0].cpu().numpy() for key, values in column.items()} for column in columns]
        dist, value, _ = policy.forward_sequence(_time_major(obs), state, episode_start.unsqueeze(0),
                                                 None if agent_inputs is None else _time_major(agent_inputs))
        values, chosen = self._head.action_rows(dist, action[0])
        return StepReadout(
            episode_start=bool(episode_start[0].item() > 0.5),
            obs=pre[0].cpu().numpy() if self.obs_size else None,
            layers=layers,
            value=float(value[0, 0].item()),
            action_values=values,
            chosen=chosen,
        )


def action_labels_for(env: Any) -> list[str] | None:
    """Names of a Discrete env's actions, or None (the panel then numbers them).

    From, in order: ``env.metadata["action_names"]`` (one name per action, in action order from the space's
    ``start``; the built-in envs declare it), ``get_action_meanings()`` (Atari style), ``KEYS_TO_ACTION``.
    """
    names = getattr(env, "metadata", {}).get("action_names")
    n = getattr(getattr(env, "action_space", None), "n", None)
    if names is not None and n is not None and len(names) == int(n):
        return [str(name) for name in names]
    base = getattr(env, "unwrapped", env)
    meanings = getattr(base, "get_action_meanings", None)
    if callable(meanings):
        with contextlib.suppress(Exception):
            return [str(m).lower() for m in meanings()]
    keys = getattr(base, "KEYS_TO_ACTION", None)
    n = getattr(getattr(env, "action_space", None), "n", None)
    if isinstance(keys, dict) and n is not None:
        names: dict[int, str] = {}
        for combo, action in keys.items():
            names.setdefault(int(action), "+".join(combo))
        start = int(env.action_space.start)
        return [names.get(start + a, str(start + a)) for a in range(int(n))]
    return None
