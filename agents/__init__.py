"""Recurrent actor-critic agents (LSTM / GRU / memoryless) trained with PPO and truncated BPTT.

The names below load on first use, so that ``agents.onnx_runner`` (numpy + onnxruntime) can be
imported on a machine without torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConfigError": "agents.config",
    "TrainConfig": "agents.config",
    "RecurrentActorCritic": "agents.policy",
    "PolicyRunner": "agents.runner",
    "OnnxRunner": "agents.onnx_runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
