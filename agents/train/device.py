"""Which device a run trains on (``--device``)."""

from __future__ import annotations

import gymnasium as gym
import torch

from agents.config import ConfigError, PolicyConfig
from agents.spaces import has_image

# --device auto takes the GPU from this recurrent size on, for vector observations (docs/benchmarks.md#gpu-against-cpu).
AUTO_CUDA_HIDDEN_SIZE = 512


def resolve_device(name: str, observation_space: gym.Space, policy: PolicyConfig) -> tuple[torch.device, str | None]:
    """The device to train on, and for 'auto' one line saying what it chose and why (None otherwise).

    'auto' takes CUDA only where it pays: for image observations (the CNN encoder) or a recurrent core of at
    least ``AUTO_CUDA_HIDDEN_SIZE`` units. Small vector networks run faster on one CPU thread, because
    their kernels are too small to hide a GPU's per-call latency. 'cuda' without a GPU is an error that says so.
    """
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise ConfigError("--device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto.")
    if name != "auto":
        return torch.device(name), None
    if not cuda:
        return torch.device("cpu"), "--device auto: cpu (torch sees no CUDA GPU)."
    if has_image(observation_space, policy.obs_encoder):
        return torch.device("cuda"), "--device auto: cuda (image observations: the CNN encoder runs faster there)."
    if policy.hidden_size >= AUTO_CUDA_HIDDEN_SIZE:
        return torch.device("cuda"), (f"--device auto: cuda (--hidden-size {policy.hidden_size} >= "
                                      f"{AUTO_CUDA_HIDDEN_SIZE}: a large network runs faster there).")
    return torch.device("cpu"), (
        f"--device auto: cpu, although a CUDA GPU is present (vector observations and --hidden-size "
        f"{policy.hidden_size} < {AUTO_CUDA_HIDDEN_SIZE}: a small network runs faster on the CPU); pass "
        f"--device cuda to use the GPU anyway.")
