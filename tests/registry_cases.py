"""The cores that the core-parametrised tests run, read from ``agents.registry.CORES``: a core registered there is
covered by the rollout invariant, sequence-against-step, runner, export and ONNX parity, resume and inspector
tests without a list to update.

``core_settings(name, depth)`` gives the ``PolicyConfig`` settings of a small (depth 1) or a deeper (depth 2)
instance of a core: its number of layers, or, for a core sized by an option of its own, that option.
"""

from __future__ import annotations

from agents.registry import CORES

# Cores whose depth is an option of their own rather than --num-layers (the stack: K = 3 or 6 slots, which
# reach past the episode starts inside the tests' sequences).
_DEPTH_OPTION = {"stack": lambda depth: {"stack_len": 3 * depth}}


def core_names() -> list[str]:
    """Every registered core, built-in or not, in registration order."""
    return list(CORES.names())


def core_settings(core: str, depth: int = 1) -> dict:
    """``PolicyConfig`` settings for ``core`` at ``depth``: ``{"core": core, "num_layers": depth}`` or its own."""
    sized = _DEPTH_OPTION.get(core, lambda d: {"num_layers": d})
    return {"core": core, **sized(depth)}
