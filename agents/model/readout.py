"""ProductReadout: a memory core whose output also carries products of the memory and the current step's input.

``--readout-products N`` wraps the actor's core: at every step the heads read ``[h, (U h + a) * (V x + b)]``,
the core's output ``h`` (B, O) beside N products of a linear readout of it and a linear readout of the step's
features ``x`` (B, F), the core's own input. Why: many memory tasks end in a lookup, "which stored fact matches
what I see now" (Pairs: which remembered card has the face-up card's value). That is a product of two inputs,
which an MLP of tanh units fits poorly and slowly; with the products one layer of the head can form the match.
Fitted to perfect memory's cards in Pairs by supervised learning with the recall loss, the network named 83% of
the remembered partners with 128 products and 68% without (docs/multiagent_games.md, "Pairs: self-play
training", which also says what self-play made of it).

The products are stateless: they are computed from what the step already has, so the state, its shape and every
rule about it (resets at episode starts, carry mode, stored start states) are the inner core's, unchanged. The
wrapper delegates everything else to the inner core (its state names, the inspector's view, the export's
metadata). ``h`` comes first in its output, so a reader of the memory alone (the recall head) takes the first
``inner.out_features`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from agents.model.cores import MemoryCore, MemoryView, inspect_step, memory_view


class ProductReadout(nn.Module):
    """A core ``inner`` with N product units after it (module docstring).

    Args:
        inner: the memory core it wraps (any ``MemoryCore``).
        input_size: F, the width of the features the core reads per step.
        products: N >= 1.
        ortho_init: orthogonal weights and zero biases for both readouts (so the products start out purely
            bilinear); off keeps PyTorch's default initialisation.
    """

    def __init__(self, inner: MemoryCore, input_size: int, products: int, ortho_init: bool = True):
        super().__init__()
        self.inner = inner
        self.memory_readout = nn.Linear(inner.out_features, products)  # U, a
        self.input_readout = nn.Linear(input_size, products)  # V, b
        if ortho_init:
            for layer in (self.memory_readout, self.input_readout):
                nn.init.orthogonal_(layer.weight, 1.0)
                nn.init.zeros_(layer.bias)
        self.out_features = inner.out_features + products

    # The state and its rules are the inner core's.
    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.inner.state_names

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return self.inner.state_shape

    @property
    def num_state_tensors(self) -> int:
        return self.inner.num_state_tensors

    @property
    def reset_on_episode_start(self) -> bool:
        return self.inner.reset_on_episode_start

    def export_metadata(self) -> dict:
        return {**self.inner.export_metadata(), "readout_products": self.memory_readout.out_features}

    def memory_view(self) -> MemoryView:
        return memory_view(self.inner)

    def inspect_step(self, x: torch.Tensor, state: torch.Tensor,
                     episode_start: torch.Tensor) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        return inspect_step(self.inner, x, state, episode_start)

    def readout(self, hidden: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """hidden (..., O) and x (..., F) of the same steps -> [hidden, products] (..., O + N)."""
        return torch.cat((hidden, self.memory_readout(hidden) * self.input_readout(x)), dim=-1)

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, new_state = self.inner(x, state, episode_start)
        return self.readout(hidden, x), new_state

    def step(self, x: torch.Tensor, state: torch.Tensor,
             episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, new_state = self.inner.step(x, state, episode_start)
        return self.readout(hidden, x), new_state

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.readout(self.inner.step_in_place(x, views), x)

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden, new_states = self.inner.export_step(x, states, keep)
        return self.readout(hidden, x[0]), new_states


def memory_core(core: MemoryCore) -> MemoryCore:
    """The core that holds the state: ``core`` itself, or the one a ``ProductReadout`` wraps."""
    return core.inner if isinstance(core, ProductReadout) else core


__all__ = ["ProductReadout", "memory_core"]
