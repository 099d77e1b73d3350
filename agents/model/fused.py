"""Several networks of one architecture acting in ONE batched forward: self-play's learner and its snapshots.

Self-play (agents/rollout/self_play.py) has, per step, the learning policy acting on all R rows and every pool
snapshot in use acting on its opponent rows. Called one network after the other, every snapshot adds a whole
forward pass of small-batch calls, each with a fixed cost (dispatch, reading its weights) that at these sizes
is a large part of the call. ``FusedNetworks``
stacks the K networks' weights once (K, out, in) and runs the K row blocks through one chain of calls: the
observation rows are gathered into K blocks of P rows each (block k: the rows network k drives, padded to P by
repeating its last row; the caller chooses them), and every linear layer and recurrent gate matmul is one
``torch.baddbmm`` over the blocks, each block with its own weights; the caller picks each row's outputs from its
own network's block (``source``).

It computes what each network's ``RecurrentActorCritic._one_step`` computes on its rows, op for op (the
LSTM / GRU cells in ATen's own CPU order, ``baddbmm`` for ``linear``; an LSTM's two gate matmuls as one). Not
bitwise: on the development machine
(torch 2.13 CPU, MKL) ``baddbmm`` and ``linear`` round alike for most shapes but not all (a few outputs, e.g.
the 1-wide value head, or a block's padded rows against the snapshot's own few rows), so outputs agree to
~1e-7 (the tests check 1e-6). The fused path is deterministic in itself: the same inputs and blocks give the
same bits. Sampling stays outside, one draw per network from its own generator as before (the caller's job),
so runs draw the same random numbers fused or not.

What it fuses (``fusable`` says why not, and the caller then keeps the one-network-after-the-other path): a
plain ``RecurrentActorCritic`` whose observation preprocessing is a flat Box (with or without the running
normaliser) or has no weights or statistics at all, an MLP encoder and actor MLP of ``nn.Linear`` and
activations, an ``lstm`` or ``gru`` core (any layers, reset or carry mode) or a core without weights (``none``,
``stack``: run over the gathered blocks as one batch), either one with ``--readout-products``, no critic core of
its own (``--separate-critic``, ``--central-critic`` fall back), any action head whose forward is its ``linear``
then its ``distribution``. Action masks and the agent-index input are supported. Only network 0's critic head
runs (the others are opponents, whose values nobody reads).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agents.model.action_heads import ActionHead
from agents.model.cores import GRUCore, LSTMCore, RNNCore, _zero_started
from agents.model.encoders import BoxVectorEncoder
from agents.model.policy import RecurrentActorCritic
from agents.model.readout import ProductReadout, memory_core
from agents.trees import Tree

_ACTIVATION_TYPES = (nn.Tanh, nn.ReLU)


def _mlp_fusable(module: nn.Module) -> bool:
    if isinstance(module, nn.Identity):
        return True
    return isinstance(module, nn.Sequential) and all(
        isinstance(layer, (nn.Linear, *_ACTIVATION_TYPES)) for layer in module)


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def fusable(policy: nn.Module) -> str | None:
    """Why ``policy``'s architecture cannot act through ``FusedNetworks`` (one line), or None when it can."""
    if type(policy) is not RecurrentActorCritic:
        return f"the policy is a {type(policy).__name__}, not a plain RecurrentActorCritic"
    if policy.critic_core is not None:
        return "the critic has a recurrent core of its own (--separate-critic / --central-critic)"
    preprocess = policy.preprocess
    if not isinstance(preprocess, BoxVectorEncoder) and _has_state(preprocess):
        return f"the observation encoder {type(preprocess).__name__} has weights or statistics"
    if not (_mlp_fusable(policy.encoder) and _mlp_fusable(policy.actor_mlp)):
        return "the encoder or actor MLP is not a plain stack of nn.Linear and activations"
    core = memory_core(policy.actor_core)
    if isinstance(core, RNNCore):
        if type(core) not in (LSTMCore, GRUCore) or core.rnn.bias is False:
            return f"the {core.kind} core is not the plain LSTM / GRU core"
    elif _has_state(core):
        return f"the {core.kind} core has weights"
    head = policy.action_head
    if type(head).forward is not ActionHead.forward or not isinstance(head.linear, nn.Linear):
        return f"the action head {type(head).__name__} has a forward of its own"
    return None


def _stack_linear(layers: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
    """K layers -> weight transposed (K, in, out) (a view of the stacked (K, out, in), as ``linear`` reads it)
    and bias (K, 1, out)."""
    weight = torch.stack([layer.weight for layer in layers])
    return weight.transpose(1, 2), torch.stack([layer.bias for layer in layers]).unsqueeze(1)


class _FusedMLP:
    """K copies of one MLP (``nn.Sequential`` of ``nn.Linear`` and activations, or ``nn.Identity``)."""

    def __init__(self, mlps: Sequence[nn.Module]):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | nn.Module] = []
        if isinstance(mlps[0], nn.Identity):
            return
        for position, layer in enumerate(mlps[0]):
            if isinstance(layer, nn.Linear):
                self.layers.append(_stack_linear([mlp[position] for mlp in mlps]))
            else:
                self.layers.append(layer)  # an activation: no weights, the same for every network

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, P, in) -> (K, P, out)."""
        for layer in self.layers:
            x = torch.baddbmm(layer[1], x, layer[0]) if isinstance(layer, tuple) else layer(x)
        return x


class FusedNetworks:
    """K networks of one fusable architecture (``fusable``), their weights stacked for one batched step.

    The stacked weights are copies: build a new ``FusedNetworks`` after any of the networks changes (the
    self-play collector builds one per rollout and set of snapshots in use).

    Args:
        networks: K ``RecurrentActorCritic`` of the same architecture; network 0 is the one whose value is
            computed (the learner).
    """

    @torch.no_grad()
    def __init__(self, networks: Sequence[RecurrentActorCritic]):
        self.networks = list(networks)
        first = self.networks[0]
        self.policy = first
        self.num_networks = len(self.networks)
        preprocess = first.preprocess
        # The flat Box's running normaliser, stacked (K, 1, D); None: the learner's preprocessing serves all.
        self.normalizer = None
        if isinstance(preprocess, BoxVectorEncoder) and preprocess.normalizer is not None:
            norms = [network.preprocess.normalizer for network in self.networks]
            self.normalizer = (torch.stack([n.mean for n in norms]).unsqueeze(1),
                               torch.stack([n.var for n in norms]).unsqueeze(1), norms[0].eps, norms[0].clip)
        self.encoder = _FusedMLP([network.encoder for network in self.networks])
        self.actor_mlp = _FusedMLP([network.actor_mlp for network in self.networks])
        self.head = _stack_linear([network.action_head.linear for network in self.networks])
        core = memory_core(first.actor_core)
        self.core = core
        # --readout-products: the two readouts stacked, applied after the core (``_readout``); None without.
        self.readout = None
        if isinstance(first.actor_core, ProductReadout):
            self.readout = tuple(_stack_linear([getattr(network.actor_core, name) for network in self.networks])
                                 for name in ("memory_readout", "input_readout"))
        # Per layer, G the gates' width: for a GRU (w_ih^T (K, in, G), w_hh^T (K, H, G), b_ih (K, 1, G),
        # b_hh (K, 1, G)); for an LSTM, whose gates sum both products, one matmul over [x, h]: ([w_ih, w_hh]^T
        # (K, in + H, G), b_ih + b_hh (K, 1, G)) (one call instead of two and an add: ~10-30% less time at 256
        # units; the sum's rounding differs from lstm_cell's by ~1e-7).
        self.cell_weights: list[tuple[torch.Tensor, ...]] = []
        if isinstance(core, RNNCore):
            per_network = [memory_core(network.actor_core)._runtime_weights() for network in self.networks]
            for layer in range(core.num_layers):
                w_ih, w_hh, b_ih, b_hh = (torch.stack([weights[layer][i] for weights in per_network])
                                          for i in range(4))
                if isinstance(core, LSTMCore):
                    self.cell_weights.append((torch.cat((w_ih, w_hh), dim=2).transpose(1, 2),
                                              (b_ih + b_hh).unsqueeze(1)))
                else:
                    self.cell_weights.append((w_ih.transpose(1, 2), w_hh.transpose(1, 2),
                                              b_ih.unsqueeze(1), b_hh.unsqueeze(1)))

    def _features(self, obs: Tree, block_index: torch.Tensor, agent_inputs: dict | None) -> torch.Tensor:
        """The encoder's features (K, P, F) of every block's rows, each through its own network."""
        policy, k = self.policy, self.num_networks
        encoder_obs = policy.encoder_obs(obs)
        if isinstance(policy.preprocess, BoxVectorEncoder):
            x = policy.preprocess.flat(encoder_obs)
        else:  # no weights, no statistics: every network computes the same
            x = policy.preprocess(encoder_obs)
        x = x.index_select(0, block_index).view(k, -1, x.shape[-1])
        if self.normalizer is not None:
            mean, var, eps, clip = self.normalizer
            x = ((x - mean) / torch.sqrt(var + eps)).clamp(-clip, clip)  # RunningMeanStd.forward, per block
        if policy.config.agent_index_input:
            one_hot = policy.agent_one_hot(agent_inputs["agent_index"]).index_select(0, block_index)
            x = torch.cat((x, one_hot.view(k, -1, one_hot.shape[-1])), dim=-1)
        return self.encoder(x)

    def _lstm_cell(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                   weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """``torch.lstm_cell`` over K blocks (its gate activations in ATen's CPU order): x (K, P, in), h and c
        (K, P, H)."""
        weight, bias = weights
        gates = torch.baddbmm(bias, torch.cat((x, h), dim=2), weight)
        in_gate, forget_gate, cell_gate, out_gate = gates.unsafe_chunk(4, 2)
        in_gate, forget_gate = in_gate.sigmoid_(), forget_gate.sigmoid_()
        cell_gate, out_gate = cell_gate.tanh_(), out_gate.sigmoid_()
        c_new = (forget_gate * c).add_(in_gate * cell_gate)
        return out_gate * c_new.tanh(), c_new

    def _gru_cell(self, x: torch.Tensor, h: torch.Tensor, weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``torch.gru_cell`` over K blocks, in ATen's CPU order: x (K, P, in), h (K, P, H)."""
        w_ih, w_hh, b_ih, b_hh = weights
        x_r, x_z, x_n = torch.baddbmm(b_ih, x, w_ih).unsafe_chunk(3, 2)
        h_r, h_z, h_n = torch.baddbmm(b_hh, h, w_hh).unsafe_chunk(3, 2)
        reset_gate = h_r.add_(x_r).sigmoid_()
        update_gate = h_z.add_(x_z).sigmoid_()
        new_gate = x_n.add(h_n.mul_(reset_gate)).tanh_()
        return (h - new_gate).mul_(update_gate).add_(new_gate)

    def _core(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent core over K blocks: x (K, P, F), state (S, L, K, P, W) -> out (K, P, O), new state."""
        core = self.core
        if not self.cell_weights:  # a core without weights: one batch of K * P rows
            k, p = x.shape[:2]
            flat_state = state.flatten(2, 3)
            out, new_state = core.step(x.flatten(0, 1), flat_state,
                                       torch.zeros(k * p, device=x.device, dtype=x.dtype))
            return out.view(k, p, -1), new_state.view(*new_state.shape[:2], k, p, *new_state.shape[3:])
        new_states = []
        for layer, weights in enumerate(self.cell_weights):
            if isinstance(core, LSTMCore):
                h, c = self._lstm_cell(x, state[0, layer], state[1, layer], weights)
                new_states.append(torch.stack((h, c)))
            else:
                h = self._gru_cell(x, state[0, layer], weights)
                new_states.append(h.unsqueeze(0))
            x = h
        return x, torch.stack(new_states, dim=1)

    def _readout(self, hidden: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``ProductReadout.readout`` over K blocks: hidden (K, P, O), x (K, P, F) -> (K, P, O + N)."""
        (u, a), (v, b) = self.readout
        return torch.cat((hidden, torch.baddbmm(a, hidden, u) * torch.baddbmm(b, x, v)), dim=2)

    def step(self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, block_index: torch.Tensor,
             source: torch.Tensor, agent_inputs: dict | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every network over its block of rows.

        Args:
            obs: leaves (R, *shape), the R rows' observations.
            state: (S, L, R, W), the rows' state before ``obs``.
            episode_start: (R,), 1 where a row's episode starts (reset mode zeroes its state first).
            block_index: (K * P,) int64, the rows of block 0, then block 1, ... (P rows each).
            source: (R,) int64, where each row's own outputs sit among the K * P block rows.
            agent_inputs: the rows' multi-agent inputs, leaves (R, ...), where the policy reads them.

        Returns:
            The action heads' raw outputs per block (K, P, num_outputs) (``ActionHead.distribution`` of network k
            turns block k's into its distribution); per row, its own network's raw output (R, num_outputs), the
            value network 0's critic gives its own network's core output (R,) (a value only where network 0 is
            the row's own), and its own network's new state (S, L, R, W).
        """
        k = self.num_networks
        if self.core.reset_on_episode_start:
            state = _zero_started(state, episode_start)
        block_state = state.index_select(2, block_index)
        block_state = block_state.view(*block_state.shape[:2], k, block_index.numel() // k, *block_state.shape[3:])
        features = self._features(obs, block_index, agent_inputs)
        hidden, new_state = self._core(features, block_state)
        if self.readout is not None:
            hidden = self._readout(hidden, features)
        raw = torch.baddbmm(self.head[1], self.actor_mlp(hidden), self.head[0])
        value = self.policy.value_from(hidden.flatten(0, 1).index_select(0, source))
        return (raw, raw.flatten(0, 1).index_select(0, source), value,
                new_state.flatten(2, 3).index_select(2, source))


__all__ = ["FusedNetworks", "fusable"]
