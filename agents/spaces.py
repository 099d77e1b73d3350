"""Observation preprocessing per Gymnasium space, and spaces as JSON.

Observations travel through the project as *trees* that mirror the space:
a tensor for a leaf space, a dict for ``Dict`` and a tuple for ``Tuple``.
Leaves keep their dtype (uint8 images stay uint8 in the rollout buffer); the
encoder turns each leaf into float features:

| space | preprocessing |
| --- | --- |
| Box, vector (any shape that is not an image) | flatten, optional running mean/std normalisation |
| Box, image (uint8, HxWxC or CxHxW, C in 1, 3, 4, both sides >= 16) | scale to [0, 1], small CNN |
| Box, grid of codes (uint8, HxWxC or CxHxW, a side < 16) | embedding per cell and channel, CNN without strides |
| Discrete | one-hot |
| MultiDiscrete | one-hot per entry, concatenated |
| MultiBinary | flatten to floats |
| Dict / Tuple | per-part encoders, concatenated |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

SUPPORTED_OBSERVATION_SPACES = (
    "Box (vectors, or uint8 images HxWxC / CxHxW with 1, 3 or 4 channels), Discrete, MultiDiscrete, "
    "MultiBinary, and Dict / Tuple of these"
)

Tree = Any  # a tensor / array, or a dict or tuple of trees


class UnsupportedSpaceError(ValueError):
    """The env uses a space the policy cannot encode or act in."""


# --------------------------------------------------------------------------- trees
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


# --------------------------------------------------------------------------- space checks
# Below this many cells on a side a uint8 "image" is a grid of object codes (MiniGrid's 7x7 view, a board),
# not a frame: the CNN's three stride-2 layers would shrink 7x7 to 1x1 and treat codes as brightness.
MIN_FRAME_SIDE = 16


def is_image_space(space: spaces.Space) -> bool:
    """A uint8 Box with 3 dims whose first or last dim has 1, 3 or 4 channels (a frame or a grid of codes)."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and (space.shape[-1] in (1, 3, 4) or space.shape[0] in (1, 3, 4))
    )


def image_layout(space: spaces.Box) -> tuple[bool, int, int, int]:
    """(channels_last, C, H, W) of a 3-dim image or grid Box (channels last when the last dim has 1, 3 or 4)."""
    channels_last = space.shape[-1] in (1, 3, 4)
    if channels_last:
        return True, space.shape[2], space.shape[0], space.shape[1]
    return False, space.shape[0], space.shape[1], space.shape[2]


def choose_obs_encoder(space: spaces.Space, requested: str = "auto") -> str:
    """The encoder kind for one leaf Box: 'image' (CNN on pixels), 'grid' (embedded codes) or 'flat' (vector).

    ``auto``: uint8 HxWxC / CxHxW with both spatial sides of at least ``MIN_FRAME_SIDE`` and an upper bound
    of 255 are frames (CNN); smaller ones, or ones whose values stop below 255, are grids of codes;
    everything else is a vector. An explicit choice applies to every leaf
    that can take it (image and grid need the 3-dim uint8 layout; other leaves stay vectors).
    """
    if not is_image_space(space):
        return "flat"
    if requested != "auto":
        return requested
    _, _, height, width = image_layout(space)
    is_frame = min(height, width) >= MIN_FRAME_SIDE and int(np.max(space.high)) == 255
    return "image" if is_frame else "grid"


def leaf_spaces(space: spaces.Space) -> list[spaces.Space]:
    """The leaf spaces of a (possibly nested) Dict / Tuple space, in encoding order."""
    if isinstance(space, spaces.Dict):
        return [leaf for sub in space.spaces.values() for leaf in leaf_spaces(sub)]
    if isinstance(space, spaces.Tuple):
        return [leaf for sub in space.spaces for leaf in leaf_spaces(sub)]
    return [space]


# Vectors whose declared bounds stay within this are left as they are: running statistics would only blow up a
# rare input (a cue shown once, a one-hot) to the clip value.
WELL_SCALED_BOUND = 10.0


def needs_obs_normalization(space: spaces.Space, obs_encoder: str = "auto") -> bool:
    """Whether some vector leaf of ``space`` (as ``obs_encoder`` reads it) is unbounded or badly scaled (bounds
    beyond +-``WELL_SCALED_BOUND``), so that running mean/std normalisation should put it on a common scale (the
    rule behind ``normalize_obs=None``). Images, grids of codes, one-hots and binaries are never normalised."""
    for leaf in leaf_spaces(space):
        if isinstance(leaf, spaces.Box) and choose_obs_encoder(leaf, obs_encoder) == "flat":
            bounds = np.concatenate([np.ravel(leaf.low), np.ravel(leaf.high)]).astype(np.float64)
            if not np.all(np.isfinite(bounds)) or np.max(np.abs(bounds)) > WELL_SCALED_BOUND:
                return True
    return False


def has_image(space: spaces.Space, obs_encoder: str = "auto") -> bool:
    """Whether any leaf of an observation space is a frame that the image CNN reads (as ``obs_encoder`` chooses)."""
    return any(choose_obs_encoder(leaf, obs_encoder) == "image" for leaf in leaf_spaces(space))


def check_observation_space(space: spaces.Space, path: str = "observation") -> None:
    """Raise UnsupportedSpaceError naming the offending (sub)space and what is supported."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            check_observation_space(sub, f"{path}[{key!r}]")
        return
    if isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            check_observation_space(sub, f"{path}[{i}]")
        return
    if isinstance(space, spaces.Box) and not np.issubdtype(space.dtype, np.number):
        raise UnsupportedSpaceError(f"{path} space {space} has non-numeric dtype {space.dtype}.")
    if isinstance(space, spaces.MultiDiscrete) and np.any(space.start != 0):
        raise UnsupportedSpaceError(
            f"{path} space {space} has a non-zero start; wrap the env to shift its values to start at 0.")
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise UnsupportedSpaceError(
            f"{path} space {type(space).__name__} ({space}) is not supported. "
            f"Supported: {SUPPORTED_OBSERVATION_SPACES}. Wrap the env (e.g. gymnasium.wrappers.FlattenObservation "
            f"or a custom ObservationWrapper) to convert it.")


# --------------------------------------------------------------------------- leaf encoders
class RunningMeanStd(nn.Module):
    """Running mean and variance (parallel Welford update), kept as buffers so they save with the model."""

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.tensor(0.0))
        self.clip, self.eps = clip, eps

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x: (N, size)."""
        x = x.double()
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        total = self.count + n
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


class BoxVectorEncoder(nn.Module):
    """(N, *shape) numbers -> (N, prod(shape)) floats, optionally normalised."""

    def __init__(self, space: spaces.Box, normalize: bool):
        super().__init__()
        self.out_features = int(np.prod(space.shape)) if space.shape else 1
        self.normalizer = RunningMeanStd(self.out_features) if normalize else None

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.out_features).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flat(x)
        return self.normalizer(x) if self.normalizer is not None else x


class ImageEncoder(nn.Module):
    """(N, H, W, C) or (N, C, H, W) uint8 -> (N, 256) features with a small CNN (inputs scaled to [0, 1])."""

    def __init__(self, space: spaces.Box, out_features: int = 256):
        super().__init__()
        self.channels_last, c, h, w = image_layout(space)
        # Small strides keep detail in the 32-64 px frames the built-in games use.
        self.conv = nn.Sequential(
            nn.Conv2d(c, 16, kernel_size=5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, kernel_size=3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, c, h, w)).shape[1]
        self.fc = nn.Sequential(nn.Linear(n_flat, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.fc(self.conv(x.float() / 255.0))


class GridEncoder(nn.Module):
    """(N, H, W, C) or (N, C, H, W) uint8 codes -> (N, 256) features: each cell's C codes are embedded (a
    learnt vector per code and channel, as one would one-hot them), then two 3x3 convolutions without strides
    keep every cell, and a linear layer reads the whole grid.

    Why not the image CNN: its inputs are brightness (codes / 255), so code 5 sits between codes 4 and 6 and
    all codes look nearly alike; its strides also merge a 7x7 view into a few cells.
    """

    def __init__(self, space: spaces.Box, out_features: int = 256, embed_dim: int = 8, channels: int = 32):
        super().__init__()
        self.channels_last, c, h, w = image_layout(space)
        self.num_codes = int(np.max(space.high)) + 1
        self.embed = nn.Embedding(c * self.num_codes, embed_dim)
        self.register_buffer("offsets", torch.arange(c) * self.num_codes)
        self.conv = nn.Sequential(
            nn.Conv2d(c * embed_dim, channels, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(channels * h * w, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:
            x = x.permute(0, 2, 3, 1)
        n, h, w, _ = x.shape
        codes = x.long().clamp(max=self.num_codes - 1) + self.offsets  # (N, H, W, C)
        cells = self.embed(codes).reshape(n, h, w, -1).permute(0, 3, 1, 2)  # (N, C * embed_dim, H, W)
        return self.fc(self.conv(cells))


class OneHotEncoder(nn.Module):
    """Discrete (N,) or MultiDiscrete (N, k) ints -> concatenated one-hots (N, sum(nvec))."""

    def __init__(self, space: spaces.Discrete | spaces.MultiDiscrete):
        super().__init__()
        if isinstance(space, spaces.Discrete):
            nvec, self.start = [int(space.n)], int(space.start)
        else:
            nvec, self.start = [int(n) for n in np.asarray(space.nvec).ravel()], 0
        self.register_buffer("offsets", torch.tensor(np.concatenate([[0], np.cumsum(nvec)[:-1]]), dtype=torch.long))
        self.out_features = int(sum(nvec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = (x.reshape(x.shape[0], -1).long() - self.start) + self.offsets
        out = torch.zeros(x.shape[0], self.out_features, device=x.device)
        return out.scatter_(1, idx, 1.0)


class MultiBinaryEncoder(nn.Module):
    """(N, *shape) 0/1 -> (N, prod(shape)) floats."""

    def __init__(self, space: spaces.MultiBinary):
        super().__init__()
        self.out_features = int(np.prod(space.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.out_features).float()


class TreeEncoder(nn.Module):
    """Dict / Tuple space: encode every part, concatenate in key (or index) order."""

    def __init__(self, space: spaces.Dict | spaces.Tuple, normalize: bool, obs_encoder: str = "auto"):
        super().__init__()
        self.is_dict = isinstance(space, spaces.Dict)
        items = space.spaces.items() if self.is_dict else enumerate(space.spaces)
        self.keys = [k for k, _ in items]
        self.parts = nn.ModuleList(make_leaf_encoder(sub, normalize, obs_encoder) for sub in
                                   (space.spaces.values() if self.is_dict else space.spaces))
        self.out_features = sum(p.out_features for p in self.parts)

    def forward(self, x: Tree) -> torch.Tensor:
        return torch.cat([part(x[k]) for k, part in zip(self.keys, self.parts, strict=True)], dim=1)


def make_leaf_encoder(space: spaces.Space, normalize: bool, obs_encoder: str = "auto") -> nn.Module:
    """The preprocessing module for one (possibly composite) observation space.

    ``obs_encoder`` (auto | image | grid | flat) chooses how 3-dim uint8 Boxes are read; see
    ``choose_obs_encoder``.
    """
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        return TreeEncoder(space, normalize, obs_encoder)
    kind = choose_obs_encoder(space, obs_encoder)
    if kind == "image":
        return ImageEncoder(space)
    if kind == "grid":
        return GridEncoder(space)
    if isinstance(space, spaces.Box):
        return BoxVectorEncoder(space, normalize)
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        return OneHotEncoder(space)
    if isinstance(space, spaces.MultiBinary):
        return MultiBinaryEncoder(space)
    check_observation_space(space)  # raises with the full message
    raise AssertionError("unreachable")


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


@torch.no_grad()
def update_normalizers(encoder: nn.Module, obs: Tree) -> None:
    """Feed a flat batch of observations (N, ...) to every normaliser inside ``encoder``."""
    if isinstance(encoder, TreeEncoder):
        for key, part in zip(encoder.keys, encoder.parts, strict=True):
            update_normalizers(part, obs[key])
    elif isinstance(encoder, BoxVectorEncoder) and encoder.normalizer is not None:
        encoder.normalizer.update(encoder.flat(obs))


# --------------------------------------------------------------------------- JSON
def space_to_json(space: spaces.Space) -> dict:
    """A JSON description that ``space_from_json`` turns back into an equal space."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "shape": list(space.shape), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist(),
                "start": np.asarray(space.start).tolist(), "dtype": str(space.dtype)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(v) for v in space.spaces]}
    raise UnsupportedSpaceError(f"Cannot describe space {space} as JSON.")


def space_from_json(data: dict) -> spaces.Space:
    """Inverse of ``space_to_json``."""
    kind = data.get("type")
    if kind == "Box":
        low = np.array(data["low"], dtype=data["dtype"])
        high = np.array(data["high"], dtype=data["dtype"])
        return spaces.Box(low.reshape(data["shape"]), high.reshape(data["shape"]), dtype=data["dtype"])
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data.get("start", 0))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"], dtype=data.get("dtype", "int64"), start=data.get("start"))
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(v) for k, v in data["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_json(v) for v in data["spaces"]])
    raise UnsupportedSpaceError(f"Unknown space description {data!r}.")
