"""Recurrent actor-critic agents (LSTM, GRU, frame stack or memoryless) trained with PPO and truncated BPTT.

The packages follow the data flow (docs/architecture.md has the module map):

- ``agents.model``: the network: encoders, memory cores, action heads, value normalisation, sampling noise
- ``agents.rollout``: collectors and their backends, envs, the rollout buffer, env snapshots
- ``agents.train``: the trainer, the PPO loss and update, schedules, evaluation, the command line
- ``agents.run``: the run directory, checkpoints, logs
- ``agents.deploy``: ``PolicyRunner``, ONNX / TorchScript export and its check, ``OnnxRunner``
- ``agents.watch``: rendered play, recording, the memory probe and its panel

Beside them: ``agents.config`` (every setting), ``agents.spaces`` (supported spaces, spaces as JSON),
``agents.trees`` (observation trees) and ``agents.cli`` (the ``mnemo`` command).

The names below load on first use, so that ``agents.deploy.onnx_runner`` (numpy + onnxruntime) can be
imported on a machine without torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConfigError": "agents.config",
    "TrainConfig": "agents.config",
    "RecurrentActorCritic": "agents.model.policy",
    "Trainer": "agents.train.trainer",
    "PolicyRunner": "agents.deploy.runner",
    "OnnxRunner": "agents.deploy.onnx_runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
