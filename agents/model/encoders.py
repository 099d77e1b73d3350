"""Observation encoders: one per kind of leaf space, and a tree encoder for Dict / Tuple.

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

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.spaces import check_observation_space, choose_obs_encoder, image_layout
from agents.trees import Tree


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


@torch.no_grad()
def update_normalizers(encoder: nn.Module, obs: Tree) -> None:
    """Feed a flat batch of observations (N, ...) to every normaliser inside ``encoder``."""
    if isinstance(encoder, TreeEncoder):
        for key, part in zip(encoder.keys, encoder.parts, strict=True):
            update_normalizers(part, obs[key])
    elif isinstance(encoder, BoxVectorEncoder) and encoder.normalizer is not None:
        encoder.normalizer.update(encoder.flat(obs))

