"""Trees: observations (and their tensors) shaped like their space.

A tree is a leaf (a numpy array or a tensor) for a leaf space, a dict for ``Dict`` and a tuple for
``Tuple``. These helpers map, stack and reshape trees leaf by leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

Tree = Any  # a tensor / array, or a dict or tuple of trees


def tree_map(fn: Callable[[Any], Any], tree: Tree) -> Tree:
    """Apply ``fn`` to every leaf of a dict/tuple tree."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(tree_map(fn, v) for v in tree)
    return fn(tree)


def tree_map2(fn: Callable[[Any, Any], Any], a: Tree, b: Tree) -> Tree:
    """Apply ``fn`` leaf-wise to two trees of the same structure."""
    if isinstance(a, dict):
        return {k: tree_map2(fn, a[k], b[k]) for k in a}
    if isinstance(a, tuple):
        return tuple(tree_map2(fn, x, y) for x, y in zip(a, b, strict=True))
    return fn(a, b)


def tree_stack(trees: list[Tree]) -> Tree:
    """Stack a list of numpy trees of one structure along a new first axis."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: tree_stack([t[k] for t in trees]) for k in first}
    if isinstance(first, tuple):
        return tuple(tree_stack([t[i] for t in trees]) for i in range(len(first)))
    return np.stack([np.asarray(t) for t in trees])


def obs_to_tensor(obs: Tree, device: torch.device) -> Tree:
    """Numpy observation tree -> tensor tree on ``device`` (dtypes kept; float64 becomes float32)."""

    def convert(x: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x), device=device)
        return t.float() if t.dtype == torch.float64 else t

    return tree_map(convert, obs)


def tree_get(tree: Tree, path: tuple) -> Any:
    """The subtree at ``path``, a sequence of dict keys and tuple indices."""
    for key in path:
        tree = tree[key]
    return tree


def leading_shape(obs: Tree, space: spaces.Space) -> tuple[int, ...]:
    """The batch dims in front of the space's own shape, e.g. (T, B) for a (T, B, *shape) leaf."""
    while isinstance(space, (spaces.Dict, spaces.Tuple)):
        key = next(iter(space.spaces)) if isinstance(space, spaces.Dict) else 0
        obs, space = obs[key], space[key]
    shape = space.shape if space.shape is not None else ()
    return tuple(obs.shape[: obs.dim() - len(shape)])


def flatten_leading(obs: Tree, space: spaces.Space, n_leading: int) -> Tree:
    """Merge ``n_leading`` leading dims of every leaf into one: (T, B, *s) -> (T*B, *s)."""

    def merge(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *x.shape[n_leading:])

    return tree_map(merge, obs)

