"""Memory cores: what sits between the encoder and the heads, behind one interface.

A core owns its state: how many tensors, their names, their shape, and how one step and a sequence
of steps update it. Everything else (policy, rollout buffer, collector, checkpoint, game runtime,
export) asks the core and never switches on its kind.

The state layout: a core's state is ONE tensor ``(S, L, B, W)`` (``B`` the batch of envs or agents)
whose sizes the core declares as ``state_shape = (S, L, W)``: ``S`` named tensors (``state_names``),
each ``(L, B, W)``. The batch is always dim 2, so the buffer, the collector and the runtime index and
store states without knowing what S, L and W mean:

=========  ===============  ====================  ====================================
core       state_names      (S, L, W)             output to the heads (B, out_features)
=========  ===============  ====================  ====================================
lstm       h, c             (2, layers, hidden)   the last layer's h (hidden)
gru        h                (1, layers, hidden)   the last layer's h (hidden)
none       (none)           (0, layers, hidden)   the encoder's features (F)
stack      stack            (1, K, F)             the last K encodings, oldest first (K * F)
=========  ===============  ====================  ====================================

Every core honours episode starts the same way: ``state`` is the state before ``x[t]``; in reset mode
it is zeroed where ``episode_start[t]`` is 1, before ``x[t]`` is processed. The sequence path
(``forward``, training) and the one-step paths (``step`` for rollouts, ``step_in_place`` for the game
runtime, ``export_step`` for ONNX / TorchScript) compute the same function.

The interface is ``MemoryCore`` below; ``agents.registry.CORES`` maps each ``--core`` name to its class and
``make_core`` builds the one a config names. A core of one's own is a class with that interface, registered
with ``agents.registry.register_core`` (docs/architecture.md, "Add a memory core").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import nn

from agents.config import PolicyConfig
from agents.model.rnn_equations import trace_core
from agents.registry import CORES


class MemoryCore(Protocol):
    """What the policy, buffer, collector, runner, export, checkpoint and inspector ask of a core (an ``nn.Module``).

    Attributes:
        kind: the name it is registered under (``--core``).
        state_names: the S state tensors' names (the export's state inputs).
        state_shape: (S, L, W); the state is (S, L, B, W), the batch at dim 2 (W need not be ``hidden_size``:
            the stack core's is the encoder width).
        num_state_tensors: S.
        out_features: O, the width of what the heads read.
        reset_on_episode_start: reset mode (True) or carry mode (``--carry-across-episodes``).

    Optional, for the memory inspector (``agents.watch.inspector``): ``memory_view() -> MemoryView`` and
    ``inspect_step(x (B, F), state, episode_start (B,)) -> (columns, new state)``, ``columns`` a list of
    ``{row key: (B, W)}``, one dict per column of the view. A core without them is shown by its state tensors
    (``memory_view`` / ``inspect_step`` the functions below).
    """

    kind: str
    state_names: tuple[str, ...]
    state_shape: tuple[int, int, int]
    num_state_tensors: int
    out_features: int
    reset_on_episode_start: bool

    @classmethod
    def from_config(cls, config: PolicyConfig, input_size: int) -> MemoryCore:
        """The core that ``config`` describes, reading ``input_size`` features per step (the options it takes)."""
        ...

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused sequence path: x (T, B, F), state (S, L, B, W), episode_start (T, B) -> out (T, B, O),
        the state after x[T - 1]."""
        ...

    def step(self, x: torch.Tensor, state: torch.Tensor,
             episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rollout's step: x (B, F), state, episode_start (B,) -> out (B, O), new state; ``forward`` at T = 1."""
        ...

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The game runtime's step: x (B, F), the state as S * L tensors (B, W) (tensor i, slot l at i * L + l),
        updated in place -> out (B, O). The caller has already zeroed the state where an episode starts."""
        ...

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Traceable ops only: x (1, B, F), states [(L, B, W)] * S, keep (1, B, 1) (None in carry mode) ->
        out (B, O), new states."""
        ...

    def export_metadata(self) -> dict:
        """The core's own keys in an export's metadata (its sizes under their own names)."""
        ...


@dataclass(frozen=True)
class MemoryRow:
    """One quantity the memory panel draws in every column: a strip of W units over time.

    Attributes:
        key: the key in ``inspect_step``'s column dicts ("f").
        name: what the panel calls it ("forget gate").
        scale: "gate" for values in [0, 1], "signed" for [-1, 1], "running" for unbounded values (scaled by a
            round number above most of those seen).
    """

    key: str
    name: str
    scale: Literal["gate", "signed", "running"]


@dataclass(frozen=True)
class MemoryView:
    """What the memory inspector shows of a core: a title, one column per layer or slot, the rows in each.

    No columns: the core has no memory to show (the panel says so).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[MemoryRow, ...]
    width: int  # W, units per strip


def memory_view(core: MemoryCore) -> MemoryView:
    """The core's ``memory_view()``, or its state tensors as rows and its L slots as columns."""
    own = getattr(core, "memory_view", None)
    if own is not None:
        return own()
    s, slots, width = core.state_shape
    if s == 0:
        return MemoryView(f"Memory: none (core = {core.kind})", (), (), width)
    rows = tuple(MemoryRow(name, "state", "running") for name in core.state_names)
    return MemoryView(f"Memory: {core.kind}, state {s} × {slots} × {width}",
                      tuple(f"slot {k + 1}" for k in range(slots)), rows, width)


def inspect_step(core: MemoryCore, x: torch.Tensor, state: torch.Tensor,
                 episode_start: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """One step's rows for the inspector: the core's ``inspect_step``, or its new state tensors, slot by slot.

    Args:
        x: (B, F) the encoder's features.
        state: (S, L, B, W) the state before x.
        episode_start: (B,).

    Returns:
        Per column of ``memory_view(core)``, row key -> (B, W); and the new state (S, L, B, W).
    """
    own = getattr(core, "inspect_step", None)
    if own is not None:
        return own(x, state, episode_start)
    _, new_state = core.step(x, state, episode_start)
    columns = [{name: new_state[i, k] for i, name in enumerate(core.state_names)} for k in range(new_state.shape[1])]
    return (columns if core.state_shape[0] else []), new_state


def passes_through(core: MemoryCore) -> bool:
    """Whether ``core`` returns its input unchanged: no state and no weights (``none``). The game runtime and the
    export skip such a core and hand the features to the heads themselves."""
    return not core.num_state_tensors and not any(True for _ in core.parameters())


def _zero_started(state: torch.Tensor, episode_start: torch.Tensor) -> torch.Tensor:
    """state (S, L, B, W) with the envs whose episode_start (B,) is 1 zeroed."""
    return state * (1.0 - episode_start.to(state.dtype)).view(1, 1, -1, 1)


class RNNCore(nn.Module):
    """An nn.LSTM / nn.GRU that honours episode starts (LSTMCore, GRUCore).

    Speed: when no episode starts inside the sequence (t > 0) -- always true for training sequences,
    which are cut at episode starts -- ``forward`` is ONE fused ``nn.LSTM`` / ``nn.GRU`` call. Otherwise
    the sequence is split at the times where some env starts an episode and each segment is one fused call.
    """

    kind = ""
    state_names: tuple[str, ...] = ()
    rnn_class: type[nn.Module] = nn.Module

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, reset_on_episode_start: bool,
                 ortho_init: bool = True):
        super().__init__()
        self.reset_on_episode_start = reset_on_episode_start
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.rnn = self.rnn_class(input_size, hidden_size, num_layers)
        self.out_features = hidden_size
        if ortho_init:
            for name, param in self.rnn.named_parameters():
                if "bias" in name:
                    nn.init.zeros_(param)
                else:
                    nn.init.orthogonal_(param, 1.0)

    @property
    def num_state_tensors(self) -> int:
        return len(self.state_names)

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return (self.num_state_tensors, self.num_layers, self.hidden_size)

    @classmethod
    def from_config(cls, config: PolicyConfig, input_size: int) -> RNNCore:
        return cls(input_size, config.hidden_size, config.num_layers, not config.carry_across_episodes,
                   config.ortho_init)

    def export_metadata(self) -> dict:
        return {"num_layers": self.num_layers, "hidden_size": self.hidden_size}

    # What the memory panel draws per layer (the LSTM candidate g is traced but not drawn).
    memory_rows: tuple[MemoryRow, ...] = ()

    def memory_view(self) -> MemoryView:
        layers = self.num_layers
        title = (f"Memory: {self.kind.upper()}, {layers} layer{'s' if layers > 1 else ''} × "
                 f"{self.hidden_size} units")
        return MemoryView(title, tuple(f"layer {k + 1}" for k in range(layers)), self.memory_rows, self.hidden_size)

    def inspect_step(self, x: torch.Tensor, state: torch.Tensor,
                     episode_start: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """Every gate of every layer, recomputed from the weights (agents/model/rnn_equations.py)."""
        trace = trace_core(self, x.unsqueeze(0), state, episode_start.unsqueeze(0))
        columns = [{row.key: trace.quantities[row.key][0, k] for row in self.memory_rows}
                   for k in range(self.num_layers)]
        return columns, trace.state

    # The kind-specific parts: the fused call and one layer's cell.
    def _fused(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _cell(self, x: torch.Tensor, views: Sequence[torch.Tensor], layer: int,
              weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """One layer, one step from the state tensors ``views`` (B, H): the new state tensors, h first."""
        raise NotImplementedError

    def _run(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] == 1 and x.device.type == "cpu":
            out, new_state = self._run_one_step(x[0], state)
            return out.unsqueeze(0), new_state
        return self._fused(x, state)

    def _run_one_step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step, layer by layer with the fused cell kernels: x (B, F) -> out (B, H), new state.

        On CPU a length-1 ``nn.LSTM`` call goes through oneDNN's sequence
        kernel and costs several times more than ``torch.lstm_cell``; the
        rollout and the game runtime call this every step. Same weights, same
        math: results agree with ``nn.LSTM`` to float rounding (~1e-7).
        """
        new_states = []
        for layer, weights in enumerate(self._runtime_weights()):
            tensors = self._cell(x, [state[i, layer] for i in range(self.num_state_tensors)], layer, weights)
            new_states.append(torch.stack(tensors))
            x = tensors[0]
        return x, (new_states[0].unsqueeze(1) if len(new_states) == 1 else torch.stack(new_states, dim=1))

    def step(
        self, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step for B envs (the rollout's path), without a time dim: what ``forward`` returns for T = 1."""
        if self.reset_on_episode_start:
            state = _zero_started(state, episode_start)
        if x.device.type == "cpu":
            return self._run_one_step(x, state)
        out, new_state = self._run(x.unsqueeze(0), state)
        return out[0], new_state

    def _runtime_weights(self) -> list[list[torch.Tensor]]:
        """Per layer, the weights ``torch.lstm_cell`` / ``torch.gru_cell`` take. ``nn.LSTM.all_weights`` builds its
        lists anew on every access (~10 us); the parameters stay the same objects (load_state_dict and .to()
        write into them), so the lists are kept until one is replaced."""
        cached = self.__dict__.get("_cell_weights")
        if cached is None or cached[0][0] is not self.rnn.weight_ih_l0:
            cached = self.__dict__["_cell_weights"] = self.rnn.all_weights
        return cached

    def forward(
        self, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.reset_on_episode_start:
            return self._run(x, state)
        first_keep = (1.0 - episode_start[0].to(x.dtype)).view(1, 1, -1, 1)
        # Training sequences never have an episode start after their first step (one check, no split).
        if x.shape[0] == 1 or not bool(episode_start[1:].any()):
            return self._run(x, state * first_keep)
        # Times t > 0 where any env begins an episode split the sequence into fused segments.
        keep = 1.0 - episode_start.to(x.dtype)  # (T, B)
        cuts = (episode_start[1:].any(dim=1).nonzero().flatten() + 1).tolist()
        outputs = []
        for start, end in zip([0, *cuts], [*cuts, x.shape[0]], strict=True):
            out, state = self._run(x[start:end], state * keep[start].view(1, 1, -1, 1))
            outputs.append(out)
        return torch.cat(outputs), state


class LSTMCore(RNNCore):
    """An ``nn.LSTM`` core: state ``(h, c)``, each (L, B, hidden)."""

    kind = "lstm"
    state_names = ("h", "c")
    rnn_class = nn.LSTM
    memory_rows = (MemoryRow("i", "input gate", "gate"), MemoryRow("f", "forget gate", "gate"),
                   MemoryRow("o", "output gate", "gate"), MemoryRow("c", "cell state", "running"),
                   MemoryRow("h", "hidden state", "signed"))

    @classmethod
    def from_config(cls, config: PolicyConfig, input_size: int) -> LSTMCore:
        return cls(input_size, config.hidden_size, config.num_layers, not config.carry_across_episodes,
                   config.ortho_init, config.forget_bias, config.chrono_init, config.chrono_gates,
                   config.chrono_fraction)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, reset_on_episode_start: bool,
                 ortho_init: bool = True, forget_bias: float = 0.0, chrono_init: int | None = None,
                 chrono_gates: str = "both", chrono_fraction: float = 1.0):
        super().__init__(input_size, hidden_size, num_layers, reset_on_episode_start, ortho_init)
        # PyTorch's gate order is (i, f, g, o): the first quarter is the input gate, the second the forget gate.
        # With --chrono-fraction below 1, the first round(fraction * hidden) units of each layer get chrono
        # initialisation and the rest keep --forget-bias: some units start out slow, the others fast.
        chrono_units = 0 if chrono_init is None else round(chrono_fraction * hidden_size)
        entry, forget = slice(0, chrono_units), slice(hidden_size, hidden_size + chrono_units)
        plain_forget = slice(hidden_size + chrono_units, 2 * hidden_size)
        with torch.no_grad():
            for layer in range(num_layers):
                # bias_ih and bias_hh are summed, so shifting bias_ih shifts the gate.
                bias_ih, bias_hh = getattr(self.rnn, f"bias_ih_l{layer}"), getattr(self.rnn, f"bias_hh_l{layer}")
                if chrono_units:
                    # A forget gate sigmoid(log u) = u / (1 + u) keeps the cell for about 1 + u steps. One draw per
                    # unit whatever the fraction, so a run's random stream does not depend on it.
                    log_span = torch.log(torch.empty(hidden_size).uniform_(1.0, chrono_init - 1.0))[:chrono_units]
                    bias_ih[forget] = log_span - bias_hh[forget]
                    if chrono_gates == "both":
                        # Input gates sigmoid(-log u) = 1 / (1 + u): a slow unit also writes slowly.
                        bias_ih[entry] = -log_span - bias_hh[entry]
                if forget_bias:
                    bias_ih[plain_forget] += forget_bias

    def _fused(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, (h, c) = self.rnn(x, (state[0], state[1]))
        return out, torch.stack((h, c))

    def _cell(self, x: torch.Tensor, views: Sequence[torch.Tensor], layer: int,
              weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return torch.lstm_cell(x, (views[0], views[1]), *weights)

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The game runtime's step: ``torch.lstm_cell`` per layer; views are h of every layer, then c."""
        layers = len(views) // 2
        for layer, weights in enumerate(self._runtime_weights()):
            h_view, c_view = views[layer], views[layers + layer]
            h, c = torch.lstm_cell(x, (h_view, c_view), *weights)
            h_view.copy_(h)
            c_view.copy_(c)
            x = h
        return x

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, c = states
        if keep is not None:
            h, c = h * keep, c * keep
        out, (h, c) = self.rnn(x, (h, c))
        return out[0], [h, c]


class GRUCore(RNNCore):
    """An ``nn.GRU`` core: state ``(h,)``, (L, B, hidden)."""

    kind = "gru"
    state_names = ("h",)
    rnn_class = nn.GRU
    memory_rows = (MemoryRow("r", "reset gate", "gate"), MemoryRow("z", "update gate", "gate"),
                   MemoryRow("n", "candidate", "signed"), MemoryRow("h", "hidden state", "signed"))

    def _fused(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.rnn(x, state[0])
        return out, h.unsqueeze(0)

    def _cell(self, x: torch.Tensor, views: Sequence[torch.Tensor], layer: int,
              weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (torch.gru_cell(x, views[0], *weights),)

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The game runtime's step: ``torch.gru_cell`` per layer; views are h of every layer."""
        for h_view, weights in zip(views, self._runtime_weights(), strict=True):
            x = torch.gru_cell(x, h_view, *weights)
            h_view.copy_(x)
        return x

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        (h,) = states
        if keep is not None:
            h = h * keep
        out, h = self.rnn(x, h)
        return out[0], [h]


class NoCore(nn.Module):
    """No memory (the memoryless baseline): the features pass through, the state is empty.

    Its state shape keeps the sizes of the configured recurrent core, ``(0, layers, hidden)``, so that
    runs saved before cores had their own classes hold the same (empty) state tensors.
    """

    kind = "none"
    state_names: tuple[str, ...] = ()

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, reset_on_episode_start: bool):
        super().__init__()
        self.reset_on_episode_start = reset_on_episode_start
        self.state_shape = (0, num_layers, hidden_size)
        self.out_features = input_size
        self.num_state_tensors = 0

    @classmethod
    def from_config(cls, config: PolicyConfig, input_size: int) -> NoCore:
        return cls(input_size, config.hidden_size, config.num_layers, not config.carry_across_episodes)

    def export_metadata(self) -> dict:
        # The (empty) state's L and W are the configured recurrent core's layers and units.
        return {"num_layers": self.state_shape[1], "hidden_size": self.state_shape[2]}

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, state

    def step(self, x: torch.Tensor, state: torch.Tensor,
             episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, state

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        return x

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return x[0], []


class StackCore(nn.Module):
    """A frame stack: the memory is the last K encoder outputs, and the heads read all K of them.

    State ``stack`` (1, K, B, F): slot K - 1 is the newest encoding, slot 0 the oldest; before ``x[t]``
    it holds the encodings of steps t - K .. t - 1. A step shifts ``x[t]`` in (dropping the oldest) and
    outputs the new stack concatenated, oldest first: (B, K * F), no weights in between (the heads' MLPs
    read it directly). At an episode start in reset mode the stack is zeroed first, so the output is
    ``[0, ..., 0, x[t]]`` -- zero padding, as frame-stacking wrappers do. The memory reaches K - 1 steps
    back and no further: the baseline that tells a task which needs a few steps of memory from one that
    needs long memory.
    """

    kind = "stack"
    state_names = ("stack",)
    num_state_tensors = 1

    def __init__(self, input_size: int, stack_len: int, reset_on_episode_start: bool):
        super().__init__()
        self.reset_on_episode_start = reset_on_episode_start
        self.stack_len, self.width = stack_len, input_size
        self.state_shape = (1, stack_len, input_size)
        self.out_features = stack_len * input_size

    @classmethod
    def from_config(cls, config: PolicyConfig, input_size: int) -> StackCore:
        """K is ``--stack-len``, 4 when not given."""
        return cls(input_size, 4 if config.stack_len is None else config.stack_len, not config.carry_across_episodes)

    def export_metadata(self) -> dict:
        return {"stack_len": self.stack_len, "features": self.width}

    def memory_view(self) -> MemoryView:
        k = self.stack_len
        return MemoryView(f"Memory: frame stack, {k} steps × {self.width} features",
                          tuple(f"t-{k - 1 - j}" if j < k - 1 else "t" for j in range(k)),
                          (MemoryRow("x", "encoding", "running"),), self.width)

    def inspect_step(self, x: torch.Tensor, state: torch.Tensor,
                     episode_start: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        """The memory is the encodings themselves: the new stack's slots, oldest first."""
        _, new = self.step(x, state, episode_start)
        return [{"x": new[0, j]} for j in range(self.stack_len)], new

    def _flat(self, stack: torch.Tensor) -> torch.Tensor:
        """stack (K, B, F) -> (B, K * F), oldest slot first."""
        return stack.permute(1, 0, 2).reshape(stack.shape[1], self.out_features)

    def step(self, x: torch.Tensor, state: torch.Tensor,
             episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reset_on_episode_start:
            state = _zero_started(state, episode_start)
        new = torch.cat((state[0, 1:], x.unsqueeze(0))).unsqueeze(0)
        return self._flat(new[0]), new

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        for older, newer in itertools.pairwise(views):
            older.copy_(newer)
        views[-1].copy_(x)
        return torch.cat(tuple(views), dim=1)

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        (stack,) = states
        if keep is not None:
            stack = stack * keep
        new = torch.cat((stack[1:], x))
        return self._flat(new), [new]

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All T steps at once, no loop over time: slot j at step t reads the padded sequence at t + j + 1.

        The padded sequence is the stored stack followed by ``x`` (K + T, B, F); in reset mode an entry
        from before the latest episode start at or before t is masked to zero, which is what zeroing the
        stack at that start and shifting from there gives. The values are copies or zeros, so this equals
        stepping one step at a time exactly.
        """
        t_len, k = x.shape[0], self.stack_len
        padded = torch.cat((state[0], x))  # (K + T, B, F); entry p holds step p - K
        slots = []
        if self.reset_on_episode_start:
            times = torch.arange(t_len, device=x.device).view(-1, 1)
            # The latest episode start at or before t (-K - 1 where none: every entry is visible).
            latest = torch.where(episode_start > 0, times, torch.full_like(times, -k - 1)).cummax(dim=0).values
        for j in range(k):
            window = padded[j + 1:j + 1 + t_len]  # slot j at step t: step t - (K - 1 - j)
            if self.reset_on_episode_start:
                window = window * (times - (k - 1 - j) >= latest).unsqueeze(-1).to(x.dtype)
            slots.append(window)
        stacks = torch.stack(slots, dim=2)  # (T, B, K, F)
        out = stacks.reshape(t_len, x.shape[1], self.out_features)
        return out, stacks[-1].transpose(0, 1).unsqueeze(0)


def make_core(config: PolicyConfig, input_size: int) -> MemoryCore:
    """The core ``config.core`` names in ``agents.registry.CORES``, reading ``input_size`` features per step."""
    return CORES.load(config.core).from_config(config, input_size)
