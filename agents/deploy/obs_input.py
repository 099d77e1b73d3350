"""Observations handed to a runtime: checked against the policy's space, converted to tensors.

A game calling ``PolicyRunner.act`` gets an ``ObservationError`` that names the leaf and what
was expected (shape, dtype, range, structure) instead of a shape error deep inside the network.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from agents.spaces import is_image_space
from agents.trees import Tree


class ObservationError(ValueError):
    """An observation does not fit the policy's observation space (shape, dtype, range or structure)."""


def _leaf_check_dtype(arr: np.ndarray, space: spaces.Space, path: str) -> None:
    kind = arr.dtype.kind
    if is_image_space(space):
        if arr.dtype != np.uint8:
            raise ObservationError(f"{path}: expected dtype uint8 for image space {space}, got {arr.dtype} "
                                   f"(the network scales uint8 pixels by 1/255).")
    elif isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        if kind not in "iu":
            raise ObservationError(f"{path}: expected integer values for {space}, got dtype {arr.dtype}.")
        low = int(space.start) if isinstance(space, spaces.Discrete) else 0
        high = low + (int(space.n) if isinstance(space, spaces.Discrete) else np.asarray(space.nvec))
        if arr.size and (np.any(arr < low) or np.any(arr >= high)):
            raise ObservationError(f"{path}: values out of range for {space}: got {arr.tolist()}.")
    elif kind not in "biuf":
        raise ObservationError(f"{path}: expected numbers for {space}, got dtype {arr.dtype}.")


def to_tensor_tree(obs: Tree, space: spaces.Space, batch: int | None, device: torch.device, path: str) -> Tree:
    """Validate a numpy observation tree against ``space`` and convert it to tensors with a leading batch dim.

    ``batch`` None: one observation (a batch dim of 1 is added); otherwise every leaf has ``batch`` rows.
    """
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, dict):
            raise ObservationError(f"{path}: expected a dict with keys {list(space.spaces)}, got {type(obs).__name__}.")
        missing = [k for k in space.spaces if k not in obs]
        if missing:
            raise ObservationError(f"{path}: missing key(s) {missing}; expected keys {list(space.spaces)}.")
        return {k: to_tensor_tree(obs[k], sub, batch, device, f"{path}[{k!r}]") for k, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        if not isinstance(obs, (tuple, list)) or len(obs) != len(space.spaces):
            got = f"{type(obs).__name__} of length {len(obs)}" if isinstance(obs, (tuple, list)) else type(obs).__name__
            raise ObservationError(f"{path}: expected a tuple of {len(space.spaces)} parts, got {got}.")
        return tuple(to_tensor_tree(o, sub, batch, device, f"{path}[{i}]")
                     for i, (o, sub) in enumerate(zip(obs, space.spaces, strict=True)))
    try:
        arr = np.asarray(obs.detach().cpu() if isinstance(obs, torch.Tensor) else obs)
    except (ValueError, TypeError) as exc:
        raise ObservationError(f"{path}: cannot read {type(obs).__name__} as an array for {space} ({exc}).") from exc
    shape = tuple(space.shape)
    if batch is None:
        if arr.shape != shape:
            hint = (" It looks like a batch: pass agent_ids=[...] with one id per row."
                    if arr.shape[1:] == shape else "")
            raise ObservationError(f"{path}: expected shape {shape} for {space}, got {arr.shape}.{hint}")
    elif arr.shape != (batch, *shape):
        if arr.shape[1:] == shape:
            raise ObservationError(f"{path}: got {batch} agent_ids but observations for {arr.shape[0]} agents "
                                   f"(shape {arr.shape}); expected shape {(batch, *shape)}.")
        raise ObservationError(f"{path}: expected shape {(batch, *shape)} (batch of {batch}) for {space}, "
                               f"got {arr.shape}.")
    _leaf_check_dtype(arr, space, path)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    tensor = torch.as_tensor(np.ascontiguousarray(arr) if arr.flags.writeable else arr.copy(), device=device)
    return tensor.unsqueeze(0) if batch is None else tensor
