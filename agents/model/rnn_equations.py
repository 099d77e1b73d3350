"""The textbook LSTM and GRU equations, re-run from a trained ``nn.LSTM`` / ``nn.GRU``'s own weights so that
every gate can be read out (the memory inspector's rows: ``agents/model/cores.py`` ``inspect_step``).

:func:`trace_rnn` re-runs the module step by step from its ``weight_ih_l{k}``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` and returns every gate of every layer; :func:`trace_core` does it for a
policy's LSTM or GRU core, in the core's reset or carry mode. PyTorch stacks the LSTM gates in
the order (i, f, g, o) and the GRU gates as (r, z, n)::

    LSTM  i = σ(W_ii x + b_ii + W_hi h + b_hi)      GRU  r = σ(W_ir x + b_ir + W_hr h + b_hr)
          f = σ(W_if x + b_if + W_hf h + b_hf)           z = σ(W_iz x + b_iz + W_hz h + b_hz)
          g = tanh(W_ig x + b_ig + W_hg h + b_hg)        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
          o = σ(W_io x + b_io + W_ho h + b_ho)           h' = (1 - z) * n + z * h
          c' = f * c + i * g
          h' = o * tanh(c')

Layer k > 0 reads layer k - 1's new h as its x. The tests check that the recomputed h and c equal
``nn.LSTM``'s (and ``nn.GRU``'s) to 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class InspectorError(RuntimeError):
    """The inspector cannot describe this network (e.g. its equations no longer match the core)."""


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
        state: (S, L, B, H), the state after the last step, laid out as the LSTM / GRU core keeps it
            (agents/model/cores.py).
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
