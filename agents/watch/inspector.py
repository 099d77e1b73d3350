"""Look inside the agent's memory: gates recomputed from the trained weights, read out step by step.

Two parts, each usable alone (torch only; the panel that draws the readouts is
``agents.watch.memory_panel.MemoryPanel``):

1. **The equations** (torch only). :func:`trace_rnn` re-runs a trained
   ``nn.LSTM`` / ``nn.GRU`` step by step with the textbook equations, from the
   module's own ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
   ``bias_hh_l{k}``, and returns every gate of every layer. PyTorch stacks the
   LSTM gates in the order (i, f, g, o) and the GRU gates as (r, z, n)::

       LSTM  i = σ(W_ii x + b_ii + W_hi h + b_hi)      GRU  r = σ(W_ir x + b_ir + W_hr h + b_hr)
             f = σ(W_if x + b_if + W_hf h + b_hf)           z = σ(W_iz x + b_iz + W_hz h + b_hz)
             g = tanh(W_ig x + b_ig + W_hg h + b_hg)        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
             o = σ(W_io x + b_io + W_ho h + b_ho)           h' = (1 - z) * n + z * h
             c' = f * c + i * g
             h' = o * tanh(c')

   Layer k > 0 reads layer k - 1's new h as its x. The tests check that the
   recomputed h and c equal ``nn.LSTM``'s (and ``nn.GRU``'s) to 1e-5.

2. **The readout** (:class:`MemoryProbe`): one policy step for one env turned
   into numpy arrays: the observation the core saw, every layer's gates and
   states, the value estimate and the action rows (what they are is the action
   head's to say: probabilities, or Gaussian means scaled to [-1, 1]).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.model.encoders import GridEncoder, ImageEncoder
from agents.model.policy import RecurrentActorCritic
from agents.trees import Tree, tree_map


class InspectorError(RuntimeError):
    """The inspector cannot describe this network (e.g. its equations no longer match the core)."""


# =========================================================================== 1. the equations
def _check_rnn(rnn: nn.Module) -> None:
    if not isinstance(rnn, (nn.LSTM, nn.GRU)):
        raise InspectorError(f"Expected an nn.LSTM or nn.GRU, got {type(rnn).__name__}.")
    if rnn.bidirectional or rnn.batch_first or getattr(rnn, "proj_size", 0):
        raise InspectorError(
            f"{rnn} is bidirectional, batch_first or projected; the inspector reads time-major, "
            "one-directional, unprojected cores only (as agents/model/policy.py builds them).")


def _layer_weights(rnn: nn.LSTM | nn.GRU, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_ih, W_hh, b_ih, b_hh) of layer ``k``; zero biases for ``bias=False`` modules."""
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
    if rnn.bias:
        return w_ih, w_hh, getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")
    zeros = w_ih.new_zeros(w_ih.shape[0])
    return w_ih, w_hh, zeros, zeros


def lstm_cell(
    x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One LSTM layer, one step: x (B, F), h and c (B, H) -> dict of i, f, g, o, c, h, each (B, H)."""
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)  # PyTorch's order in weight_ih_l{k}
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return {"i": i, "f": f, "g": g, "o": o, "c": c_new, "h": h_new}


def gru_cell(
    x: torch.Tensor, h: torch.Tensor,
    w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One GRU layer, one step: x (B, F), h (B, H) -> dict of r, z, n, h, each (B, H)."""
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)  # the reset gate scales the recurrent term, bias included (PyTorch's form)
    return {"r": r, "z": z, "n": n, "h": (1.0 - z) * n + z * h}


@dataclass
class CoreTrace:
    """Everything an LSTM / GRU computed over a sequence.

    Attributes:
        kind: ``"lstm"`` or ``"gru"``.
        quantities: name -> (T, L, B, H); LSTM: i, f, g, o, c, h; GRU: r, z, n, h.
        state: (S, L, B, H), the state after the last step, laid out as RecurrentCore keeps it.
    """

    kind: str
    quantities: dict[str, torch.Tensor]
    state: torch.Tensor


LSTM_QUANTITIES = ("i", "f", "g", "o", "c", "h")
GRU_QUANTITIES = ("r", "z", "n", "h")


@torch.no_grad()
def trace_rnn(
    rnn: nn.LSTM | nn.GRU, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor | None = None
) -> CoreTrace:
    """Re-run ``rnn`` step by step with the textbook equations and keep every gate.

    Args:
        rnn: a trained nn.LSTM or nn.GRU (time-major).
        x: (T, B, F) inputs.
        state: (S, L, B, H) state before x[0]: (h, c) for an LSTM (S = 2), (h,) for a GRU (S = 1).
        episode_start: (T, B) or None; where 1, the state is zeroed before that step (reset mode).

    Returns:
        A CoreTrace whose h (and c) equal what ``rnn`` computes, to float rounding.
    """
    _check_rnn(rnn)
    is_lstm = isinstance(rnn, nn.LSTM)
    names = LSTM_QUANTITIES if is_lstm else GRU_QUANTITIES
    weights = [_layer_weights(rnn, k) for k in range(rnn.num_layers)]
    h = list(state[0].unbind(0))
    c = list(state[1].unbind(0)) if is_lstm else []
    steps: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for t in range(x.shape[0]):
        if episode_start is not None:
            keep = (1.0 - episode_start[t].to(x.dtype)).unsqueeze(-1)  # (B, 1)
            h = [hk * keep for hk in h]
            c = [ck * keep for ck in c]
        inp = x[t]
        layers = []
        for k, w in enumerate(weights):
            out = lstm_cell(inp, h[k], c[k], *w) if is_lstm else gru_cell(inp, h[k], *w)
            h[k] = out["h"]
            if is_lstm:
                c[k] = out["c"]
            inp = out["h"]
            layers.append(out)
        for name in names:
            steps[name].append(torch.stack([out[name] for out in layers]))  # (L, B, H)
    quantities = {name: torch.stack(v) for name, v in steps.items()}
    final = torch.stack([torch.stack(h), torch.stack(c)]) if is_lstm else torch.stack(h).unsqueeze(0)
    return CoreTrace("lstm" if is_lstm else "gru", quantities, final)


def trace_core(core: nn.Module, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor) -> CoreTrace:
    """:func:`trace_rnn` for a policy's LSTM or GRU core (agents/model/cores.py), honouring its reset or carry mode."""
    if not isinstance(getattr(core, "rnn", None), (nn.LSTM, nn.GRU)):
        raise InspectorError(f"This core is {core.kind!r}: it has no LSTM or GRU to trace.")
    return trace_rnn(core.rnn, x, state, episode_start if core.reset_on_episode_start else None)


# =========================================================================== 2. the readout
@dataclass
class StepReadout:
    """One policy step of one env, as numpy arrays for drawing.

    Attributes:
        episode_start: whether this observation began an episode (the state was reset before it).
        obs: (P,) the preprocessed observation fed to the encoder, or None when not shown (images, P > 64).
        layers: per layer, quantity name -> (H,) values.
        value: the critic's estimate V(obs).
        action_values: (R,) one row per action choice: probabilities, or Gaussian means scaled to [-1, 1].
        chosen: row indices of the action taken.
        reward: the reward the action earned (set once the env has stepped).
    """

    episode_start: bool
    obs: np.ndarray | None
    layers: list[dict[str, np.ndarray]]
    value: float
    action_values: np.ndarray
    chosen: list[int]
    reward: float | None = None


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
        # What the panel draws per column: a recurrent core's layers, or a stack's slots (oldest first).
        _, columns, self.hidden_size = core.state_shape
        if self.kind == "stack":
            self.num_layers = columns
            self.column_names = [f"t-{columns - 1 - k}" if k < columns - 1 else "t" for k in range(columns)]
            self.title = f"Memory: frame stack, {columns} steps × {self.hidden_size} features"
        elif self.kind == "none":
            self.num_layers, self.column_names = 0, []
            self.title = "Memory: none (core = none)"
        else:
            self.num_layers = columns
            self.column_names = [f"layer {k + 1}" for k in range(columns)]
            self.title = (f"Memory: {self.kind.upper()}, {columns} layer{'s' if columns > 1 else ''} × "
                          f"{self.hidden_size} units")
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
    def quantities(self) -> tuple[str, ...]:
        """The quantities the panel draws per layer (the LSTM candidate g is traced but not drawn; x: a stacked
        encoding)."""
        return {"lstm": ("i", "f", "o", "c", "h"), "gru": ("r", "z", "n", "h"), "stack": ("x",)}.get(self.kind, ())

    @torch.no_grad()
    def read(self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, action: torch.Tensor,
             next_state: torch.Tensor | None = None) -> StepReadout:
        """Readout of the step that ``policy.step(obs, state, episode_start)`` took.

        Args:
            obs: leaves (1, *shape).
            state: (S, L, 1, H), the state before obs.
            episode_start: (1,).
            action: (1, *action_shape), the action the policy chose.
            next_state: the state ``policy.step`` returned; when given, the recomputed core state must
                equal it (1e-4), which guards the equations against changes to the policy's core.
        """
        policy = self.policy
        pre = policy.preprocess(obs)
        layers: list[dict[str, np.ndarray]] = []
        if self.kind == "stack":  # the memory is the encodings themselves: read the new stack
            _, stack = policy.actor_core.step(policy.encoder(pre), state[: self._actor_states], episode_start)
            layers = [{"x": stack[0, k, 0].cpu().numpy()} for k in range(self.num_layers)]
        elif self.kind != "none":
            features = policy.encoder(pre).unsqueeze(0)  # (1, 1, F)
            trace = trace_core(policy.actor_core, features, state[: self._actor_states], episode_start.unsqueeze(0))
            if next_state is not None:
                diff = (trace.state - next_state[: self._actor_states]).abs().max().item()
                if diff > 1e-4:
                    raise InspectorError(
                        f"Recomputed {self.kind} state differs from the policy's by {diff:.2e}: the inspector's "
                        "equations no longer describe agents/model/policy.py's core.")
            for k in range(self.num_layers):
                layers.append({q: trace.quantities[q][0, k, 0].cpu().numpy() for q in self.quantities})
        dist, value, _ = policy.forward_sequence(_time_major(obs), state, episode_start.unsqueeze(0))
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
