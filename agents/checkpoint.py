"""Save, load and resume: checkpoints are tensors plus JSON, written atomically, loaded without unpickling code.

A checkpoint file holds one dict, saved with ``torch.save``:

| key | content |
| --- | --- |
| ``format`` | ``"mnemo-checkpoint"`` |
| ``version`` | format version (int) |
| ``meta`` | JSON string: config, spaces, counters, RNG states |
| ``policy`` | the policy's ``state_dict`` (tensors; includes observation normalisers) |
| ``optimizer`` | the optimizer's ``state_dict`` (tensors and numbers) |
| ``collector`` | per-env recurrent state (tensors) |
| ``generator`` | the action-sampling torch generator's state (uint8 tensor) |

Loading uses ``torch.load(weights_only=True)``, which refuses any pickled
object other than tensors and plain containers, so a crafted file cannot run
code. Writing goes to a temporary file in the same directory, is flushed and
fsynced, then renamed over the target, so a crash never leaves a half-written
checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from agents.config import TrainConfig
from agents.policy import RecurrentActorCritic
from agents.spaces import space_from_json, space_to_json

FORMAT = "mnemo-checkpoint"
VERSION = 1
LATEST = "latest.pt"
BEST = "best.pt"
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, unsafe, or does not fit the run."""


def atomic_torch_save(payload: dict, path: str | Path) -> None:
    """torch.save to ``path`` via temp file + flush + fsync + rename (readers see the old or the new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # Persist the rename itself.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_payload(
    config: TrainConfig,
    policy: RecurrentActorCritic,
    optimizer: torch.optim.Optimizer | None,
    counters: dict[str, Any],
    collector_state: dict[str, torch.Tensor] | None = None,
    generator_state: torch.Tensor | None = None,
    numpy_rng_state: dict | None = None,
) -> dict:
    """Everything needed to act with the policy, and to resume training exactly where it stopped."""
    meta = {
        "config": config.to_dict(),
        "observation_space": space_to_json(policy.observation_space),
        "action_space": space_to_json(policy.action_space),
        "state_shape": list(policy.state_shape),
        "counters": counters,
        "numpy_rng": numpy_rng_state,
    }
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta),
                               "policy": policy.state_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if collector_state is not None:
        payload["collector"] = collector_state
    if generator_state is not None:
        payload["generator"] = generator_state
    return payload


def load_payload(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Read a checkpoint safely; returns (payload, meta). Raises CheckpointError with the cause and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refusing to load {path}: it contains pickled objects other than tensors and plain data, which "
            f"could run code when loaded. Only load checkpoints written by this framework. ({exc})") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {path} is truncated or corrupted and cannot be read ({exc}).") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file.")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has format version {payload.get('version')}; this code reads {VERSION}.")
    try:
        meta = json.loads(payload["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Checkpoint {path} has damaged metadata ({exc}).") from exc
    return payload, meta


def resolve_checkpoint(path_or_run_dir: str | Path, which: str = LATEST) -> Path:
    """A checkpoint file, or the ``checkpoints/<which>`` file of a run directory."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        candidate = p / CHECKPOINT_DIR / which
        if not candidate.is_file():
            raise CheckpointError(f"Run directory {p} has no {CHECKPOINT_DIR}/{which}; is it a training run?")
        return candidate
    return p


def load_policy(path_or_run_dir: str | Path, device: str | torch.device = "cpu",
                which: str = LATEST) -> tuple[RecurrentActorCritic, TrainConfig]:
    """Rebuild the trained policy (in eval mode) and its config from a checkpoint or run directory."""
    path = resolve_checkpoint(path_or_run_dir, which)
    payload, meta = load_payload(path, map_location=device)
    config = TrainConfig.from_dict(meta["config"])
    policy = RecurrentActorCritic(
        space_from_json(meta["observation_space"]), space_from_json(meta["action_space"]), config.policy)
    try:
        policy.load_state_dict(payload["policy"])
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} does not match the network its config describes ({exc}).") from exc
    return policy.to(device).eval(), config
