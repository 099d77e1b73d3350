"""Save, load and resume: checkpoints are tensors plus JSON, written atomically, loaded without unpickling code.

A checkpoint file holds one dict, saved with ``torch.save``:

| key | content |
| --- | --- |
| ``format`` | ``"mnemo-checkpoint"`` |
| ``version`` | format version (int) |
| ``meta`` | JSON string: config, spaces, counters, RNG states, the envs' state and next observations |
| ``policy`` | the policy's ``state_dict`` (tensors; includes observation normalisers) |
| ``optimizer`` | the optimizer's ``state_dict`` (tensors and numbers) |
| ``collector`` | per-env recurrent state, episode starts and correlated sampling noise (tensors) |
| ``reward_scaler`` | with ``--normalize-reward``: per-env discounted returns and their running variance |
| ``generator`` | the action-sampling torch generator's state (uint8 tensor) |
| ``digest`` | BLAKE2b of everything above (version 2 on) |

A multi-agent policy that reads an agent-index one-hot or a global state also has ``agents`` (the slots'
names) and ``state_space`` (the central critic's input) in ``meta``; a named policy (``--policy-map``) has its
own in ``meta["policies"][name]`` (its agents only).

Safety: loading uses ``torch.load(weights_only=True)``, which refuses any
pickled object other than tensors and plain containers, so a crafted file
cannot run code. Env state travels as JSON (``agents/rollout/env_state.py``), never
as pickles.

Integrity: writing goes to a temporary file in the same directory, is flushed
and fsynced, then renamed over the target, so a crash never leaves a
half-written checkpoint under the real name. Before ``latest.pt`` is replaced,
the old one becomes ``previous.pt`` (a hard link, so ``latest.pt`` exists at
every instant). ``torch.load`` does not check the zip's CRCs, so a flipped
byte would load as a silently wrong weight: the digest catches it. A resume
whose ``latest.pt`` is unreadable falls back to ``previous.pt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.config import TrainConfig, env_label, flag_name
from agents.model.policy import RecurrentActorCritic
from agents.rollout.multiagent_env import SHARED_POLICY
from agents.rollout.self_play import saved_snapshots
from agents.spaces import space_from_json, space_to_json

FORMAT = "mnemo-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
LATEST = "latest.pt"
PREVIOUS = "previous.pt"
BEST = "best.pt"
CHECKPOINT_DIR = "checkpoints"
DAMAGED = "is damaged (truncated or corrupted)"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, unsafe, or does not fit the run.

    Attributes:
        problem: what is wrong with the file in a few words ("is damaged (truncated or corrupted)"), for messages
            that name several files; the message itself says it in full.
    """

    def __init__(self, message: str, problem: str | None = None):
        super().__init__(message)
        self.problem = problem or message


# --------------------------------------------------------------------------- writing
def _fsync_dir(directory: Path) -> None:
    """Persist renames in ``directory`` (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _atomic_write(path: Path, write: Any, before_replace: Any = None) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, flush, fsync, rename over ``path``.

    ``before_replace()``, if given, runs after the new file is safely on disk and
    just before the rename (the checkpoint rotation hooks in here).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(payload: dict, path: str | Path, keep_previous: str | None = None) -> None:
    """torch.save to ``path`` via temp file + flush + fsync + rename (readers see the old or the new file).

    Args:
        keep_previous: a file name in the same directory; the file at ``path`` (if any) becomes it
            just before the new one replaces it, so one older checkpoint always survives.
    """
    path = Path(path)
    rotate = None
    if keep_previous is not None and path.exists():
        previous = path.parent / keep_previous
        link_tmp = path.parent / f".{keep_previous}.{os.getpid()}.link.tmp"

        def rotate() -> None:
            # The new file is written first: a kill at any point leaves latest (old or new) and previous.
            try:
                link_tmp.unlink(missing_ok=True)
                try:
                    os.link(path, link_tmp)  # latest stays in place while previous is replaced
                except OSError:  # no hard links on this file system: copy instead
                    import shutil

                    shutil.copyfile(path, link_tmp)
                os.replace(link_tmp, previous)
            except BaseException:
                link_tmp.unlink(missing_ok=True)
                raise

    _atomic_write(path, lambda f: torch.save(payload, f), rotate)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (config.json, summary.json)."""
    _atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def remove_stale_temp_files(directory: str | Path) -> list[Path]:
    """Delete temp files that a killed writer left behind (call only while holding the run's lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


def payload_digest(payload: dict) -> str:
    """BLAKE2b over every entry but ``digest``: tensors by dtype, shape and bytes; plain data by repr."""
    h = hashlib.blake2b(digest_size=32)
    _feed(h, {k: v for k, v in payload.items() if k != "digest"})
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(np.ascontiguousarray(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{type(value).__name__}:{value!r};".encode())


def build_payload(
    config: TrainConfig,
    policy: RecurrentActorCritic | None,
    optimizer: torch.optim.Optimizer | None,
    counters: dict[str, Any],
    collector_state: dict[str, torch.Tensor] | None = None,
    generator_state: torch.Tensor | None = None,
    numpy_rng_state: dict | None = None,
    resume: dict | None = None,
    reward_scaler_state: dict[str, torch.Tensor] | None = None,
    collector: dict | None = None,
    policies: dict[str, tuple[RecurrentActorCritic, torch.optim.Optimizer, dict | None]] | None = None,
    exploration: dict | None = None,
) -> dict:
    """Everything needed to act with the policy, and to resume training exactly where it stopped.

    A run with named policies (``--policy-map``) passes ``policy``, ``optimizer`` and ``reward_scaler_state``
    as None and ``policies`` as ``{name: (policy, optimizer, reward scaler state or None)}``: the payload then
    holds ``policies`` / ``optimizers`` / ``reward_scalers`` by name, and the metadata each policy's spaces
    under ``"policies"`` (the top-level spaces are the first policy's).

    Args:
        resume: the ``resume`` part of the collector's ``state_dict`` (next observations, env states), plus
            ``exact`` (bool) and ``reason`` (why a resume would restart episodes, or None).
        collector: for a collector other than the config's own env, ``{"factory", "env_id"}``
            (``agents.train.trainer.collector_env``); ``env_id`` None says that ``config.env`` is not its env.
        exploration: the exploration bonus's state (``--exploration``: ``IntrinsicBonus.state_dict``), saved as
            ``payload["exploration"]``; None (no key) without it.
    """
    first = policy if policies is None else next(iter(policies.values()))[0]
    meta = {
        "config": config.to_dict(),
        "observation_space": space_to_json(first.observation_space),
        "action_space": space_to_json(first.action_space),
        "state_shape": list(first.state_shape),
        "counters": counters,
        "numpy_rng": numpy_rng_state,
        "resume": resume,
    }
    if policy is not None:  # one policy: its agents and state space beside its spaces (named ones: "policies")
        meta.update(_policy_meta(policy))
    if first.masked:
        # Informational: the saved observation space's "action_mask" entry is what makes a loaded policy masked
        # (agents/model/policy.py), so load, watch and export need nothing else.
        meta["action_mask"] = {"sizes": list(first.action_mask_sizes)}
    if collector is not None:
        meta["collector"] = collector
    if policies is not None:
        meta["policies"] = {name: _policy_meta(net) for name, (net, _, _) in policies.items()}
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION, "meta": json.dumps(meta)}
    if policies is None:
        payload["policy"] = policy.state_dict()
    else:
        payload["policies"] = {name: net.state_dict() for name, (net, _, _) in policies.items()}
        if all(opt is not None for _, opt, _ in policies.values()):
            payload["optimizers"] = {name: opt.state_dict() for name, (_, opt, _) in policies.items()}
        scalers = {name: scaler for name, (_, _, scaler) in policies.items() if scaler is not None}
        if scalers:
            payload["reward_scalers"] = scalers
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if collector_state is not None:
        payload["collector"] = collector_state
    if generator_state is not None:
        payload["generator"] = generator_state
    if reward_scaler_state is not None:
        payload["reward_scaler"] = reward_scaler_state
    if exploration is not None:
        payload["exploration"] = exploration
    payload["digest"] = payload_digest(payload)
    return payload


def _policy_meta(policy: RecurrentActorCritic) -> dict:
    """A policy's spaces, and where it reads them its agents (the agent-index one-hot's slots, among its own
    agents) and the central critic's ``state_space``: a named policy's entry of ``meta["policies"]``, and for a
    run of one policy the top level of ``meta``."""
    entry = {"observation_space": space_to_json(policy.observation_space),
             "action_space": space_to_json(policy.action_space)}
    if policy.agents:
        entry["agents"] = list(policy.agents)
    if policy.state_space is not None:
        entry["state_space"] = space_to_json(policy.state_space)
    return entry


# --------------------------------------------------------------------------- reading
def check_device_available(device: str | torch.device) -> None:
    """Raise CheckpointError, before any file is read, when ``device`` is a CUDA GPU that torch cannot use.

    Otherwise ``torch.load`` fails inside its unpickler, which would read as a damaged file.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise CheckpointError(f"Cannot load onto device={str(device)!r}: CUDA is not available (torch sees no GPU); "
                              f"load with device=\"cpu\".")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise CheckpointError(f"Cannot load onto device={str(device)!r}: torch sees {torch.cuda.device_count()} "
                              f"GPU(s), numbered from 0; load with device=\"cuda:0\" or device=\"cpu\".")


def load_payload(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """Read a checkpoint safely; returns (payload, meta). Raises CheckpointError with the cause and the fix."""
    check_device_available(map_location)
    path = Path(path)
    if not path.is_file():
        what = "it is not a file" if path.exists() else "no such file or directory"
        raise CheckpointError(f"No checkpoint at {path} ({what}). Pass a run directory written by train.py "
                              f"(its --run-dir) or a .pt file from its {CHECKPOINT_DIR}/.", "is missing")
    try:
        with warnings.catch_warnings():
            # torch.save writes protocol 2; any other protocol means a file from elsewhere, which torch flags
            # before the refusal below explains it. That refusal is the message worth reading.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refusing to load {path}: it contains pickled objects other than tensors and plain data, which "
            f"could run code when loaded. Only load checkpoints written by this framework. ({exc})",
            "was refused (it holds pickled objects other than tensors, which could run code)") from exc
    except Exception as exc:  # a damaged zip or pickle stream fails in many ways (IndexError, KeyError, ...)
        # torch's own text (a zip reader's, often hundreds of characters) stays on the chained exception.
        raise CheckpointError(f"Checkpoint {path} is damaged (truncated or corrupted) and cannot be read.",
                              DAMAGED) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file.", f"is not a {FORMAT} file")
    if payload.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has format version {payload.get('version')}; this code reads "
                              f"{', '.join(map(str, READABLE_VERSIONS))}. Update mnemo to read it.",
                              f"has format version {payload.get('version')}, newer than this code reads")
    if payload["version"] >= 2 and payload.get("digest") != payload_digest(payload):
        raise CheckpointError(f"Checkpoint {path} is damaged (corrupted): its contents do not match the digest "
                              f"written with it (a damaged disk or an edited file).", DAMAGED)
    try:
        meta = json.loads(payload["meta"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Checkpoint {path} has damaged metadata ({exc}).", DAMAGED) from exc
    return payload, meta


def load_latest(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict, Path, list[str]]:
    """The newest readable checkpoint of a run: ``latest.pt``, else ``previous.pt``.

    Returns:
        (payload, meta, the file read, what was wrong with each file skipped: ``["latest.pt is damaged ..."]``).

    Raises:
        NoIntactCheckpoint: neither file is readable; it says what is wrong with each and whether best.pt is intact.
    """
    check_device_available(map_location)  # once for the run, not as a problem of each file
    directory = Path(run_dir) / CHECKPOINT_DIR
    problems: list[str] = []
    for name in (LATEST, PREVIOUS):
        try:
            payload, meta = load_payload(directory / name, map_location)
        except CheckpointError as exc:
            problems.append(f"{name} {exc.problem}")
            continue
        return payload, meta, directory / name, problems
    if not (directory / LATEST).exists() and not (directory / PREVIOUS).exists():
        raise CheckpointError(f"Run directory {run_dir} has no {CHECKPOINT_DIR}/{LATEST}; is it a training run?")
    raise NoIntactCheckpoint(directory, problems, _readable_step(directory / BEST, map_location))


class NoIntactCheckpoint(CheckpointError):
    """Neither ``latest.pt`` nor ``previous.pt`` of a run can be read.

    Attributes:
        best_step: the step of an intact ``best.pt`` (None: missing or damaged too), which keeps the most.
    """

    def __init__(self, directory: Path, problems: list[str], best_step: int | None):
        self.directory, self.best_step = directory, best_step
        self.damage = join_problems(problems)
        best = f"; {BEST} (step {best_step:,}) is intact" if best_step is not None else ""
        super().__init__(f"No readable checkpoint in {directory}: {self.damage}{best}.")

    def fix_for_loading(self) -> str:
        """What keeps the most for watching or exporting: the best checkpoint."""
        if self.best_step is None:
            return f"No readable checkpoint in {self.directory}: {self.damage}, and {BEST} is missing or damaged."
        return (f"{self.damage} in {self.directory}, but {BEST} (step {self.best_step:,}) is intact: load it with "
                f"--which {BEST}.")

    def fix_for_resuming(self, run_dir: Path) -> str:
        """What keeps the most for training on: continuing from best.pt, the only intact checkpoint."""
        if self.best_step is None:
            return (f"--resume {run_dir}: {self.damage}, and {BEST} is missing or damaged, so nothing is left to "
                    f"resume from; start again with --overwrite, or choose another --run-dir.")
        best, latest = self.directory / BEST, self.directory / LATEST
        return (f"--resume {run_dir}: {self.damage}, but {BEST} (step {self.best_step:,}) is intact; to continue "
                f"from it: cp {best} {latest} and --resume again (--overwrite would delete it).")


def join_problems(problems: list[str]) -> str:
    """'latest.pt and previous.pt are both damaged (...)' when the files share their problem, else each one's."""
    names = [p.split(" ", 1)[0] for p in problems]
    whats = {p.split(" ", 1)[1] for p in problems}
    if len(problems) == 2 and len(whats) == 1:
        what = whats.pop()
        plural = what.replace("is ", "are both ", 1) if what.startswith("is ") else what
        return f"{names[0]} and {names[1]} {plural}"
    return " and ".join(problems)


def _readable_step(path: Path, map_location: str | torch.device) -> int | None:
    """The step a readable checkpoint was saved at, or None if it is missing or unreadable."""
    try:
        _, meta = load_payload(path, map_location)
        return int(meta["counters"]["global_step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def load_for_resume(run_dir: str | Path, config: TrainConfig,
                    map_location: str | torch.device = "cpu") -> tuple[dict, dict, Path, str | None]:
    """The checkpoint a resume starts from: ``latest.pt``, else ``previous.pt`` with a note of what was lost.

    An unreadable ``latest.pt`` is renamed ``latest.pt.corrupt`` when ``previous.pt`` is used: kept for
    inspection, out of the rotation (the next save would otherwise make it ``previous.pt``).

    Returns:
        (payload, meta, the file read, one line on the fallback for the user, or None).

    Raises:
        CheckpointError: no checkpoint can be read; one line naming the damage and the command that keeps the most.
    """
    run_dir = Path(run_dir)
    try:
        payload, meta, path, problems = load_latest(run_dir, map_location)
    except NoIntactCheckpoint as exc:
        raise CheckpointError(exc.fix_for_resuming(run_dir)) from exc
    except CheckpointError as exc:
        raise CheckpointError(f"--resume {run_dir}: {exc} Start the run again with --overwrite, or choose another "
                              f"--run-dir.") from exc
    if not problems:
        return payload, meta, path, None
    latest = path.with_name(LATEST)
    kept = ""
    if latest.exists():
        os.replace(latest, latest.with_name(LATEST + ".corrupt"))
        kept = f" (kept as {LATEST}.corrupt)"
    step = int(meta["counters"]["global_step"])
    budget = config.step_budget
    # latest.pt is written once at least --checkpoint-every steps have run since the one before it.
    gap = -(-config.run.checkpoint_every // config.batch_size) * config.batch_size
    note = (f"{problems[0]}{kept}: resuming from {PREVIOUS} at step {step:,} of {budget:,}; the training after it "
            f"(at most {gap:,} steps, --checkpoint-every) is lost and runs again.")
    return payload, meta, path, note


def resolve_checkpoint(path_or_run_dir: str | Path, which: str = LATEST) -> Path:
    """A checkpoint file, or the ``checkpoints/<which>`` file of a run directory."""
    p = Path(path_or_run_dir)
    if p.is_dir():
        candidate = p / CHECKPOINT_DIR / which
        if not candidate.is_file():
            if which == LATEST and (p / CHECKPOINT_DIR / PREVIOUS).is_file():
                return p / CHECKPOINT_DIR / PREVIOUS
            raise CheckpointError(f"Run directory {p} has no {CHECKPOINT_DIR}/{which}; is it a training run?")
        return candidate
    return p


def policy_names(meta: dict) -> list[str] | None:
    """The names of a checkpoint's policies (``--policy-map``), in the map's order; None for a run of one policy."""
    named = meta.get("policies")
    return None if named is None else list(named)


def load_policy(path_or_run_dir: str | Path, device: str | torch.device = "cpu",
                which: str = LATEST, need_env: bool = False,
                policy: str | None = None) -> tuple[RecurrentActorCritic, TrainConfig]:
    """Rebuild the trained policy (in eval mode) and its config from a checkpoint or run directory.

    For a run directory's latest checkpoint, an unreadable ``latest.pt`` falls back to ``previous.pt``
    with a warning.

    Args:
        need_env: the caller will make the run's env from ``config.env`` (evaluation, watching): refuse a run
            whose collector ran envs that have no id, for which ``config.env`` is not the env it trained on.
        policy: which policy of a run with several (``--policy-map``); a run of one policy takes None.

    Raises:
        CheckpointError: unreadable; or ``policy`` is not one of the run's policies (the message lists them).
    """
    payload, meta, path, config = _read_for_loading(path_or_run_dir, device, which, need_env)
    return _build_policy(payload, meta, path, config, policy).to(device).eval(), config


def load_policies(path_or_run_dir: str | Path, device: str | torch.device = "cpu", which: str = LATEST,
                  need_env: bool = False) -> tuple[dict[str, RecurrentActorCritic], TrainConfig]:
    """Every policy of a checkpoint, read once: ``({name: policy in eval mode}, config)``, in ``--policy-map``
    order; a run of one policy gives ``{SHARED_POLICY: policy}`` (see ``load_policy``)."""
    payload, meta, path, config = _read_for_loading(path_or_run_dir, device, which, need_env)
    names = policy_names(meta)
    if names is None:
        return {SHARED_POLICY: _build_policy(payload, meta, path, config, None).to(device).eval()}, config
    return {name: _build_policy(payload, meta, path, config, name).to(device).eval() for name in names}, config


SNAPSHOT_ENDS = ("first", "last")


def load_snapshot(path_or_run_dir: str | Path, snapshot: str, device: str | torch.device = "cpu",
                  which: str = LATEST) -> tuple[RecurrentActorCritic, TrainConfig, int]:
    """A self-play run's pool snapshot (``agents.rollout.self_play``) as a policy of the run's architecture, in
    eval mode: ``(policy, config, the env step it was taken at)``.

    Args:
        snapshot: the step it was taken at, exactly (a number), or ``first`` / ``last`` (the oldest / newest
            snapshot the checkpoint holds).

    Raises:
        CheckpointError: unreadable; the run has no self-play; ``snapshot`` is not a step the checkpoint holds
            (the message lists those it does: only the last ``--pool-size`` are kept).
    """
    payload, meta, path, config = _read_for_loading(path_or_run_dir, device, which, need_env=False)
    saved = saved_snapshots(payload.get("collector"))
    if saved is None:
        raise CheckpointError(f"{path} was not trained with --self-play, so it holds no snapshots; drop "
                              f"'@snapshot:{snapshot}' to play the run's own policy.")
    by_step, taken = saved
    steps = sorted(by_step)
    if snapshot in SNAPSHOT_ENDS:
        step = steps[0] if snapshot == "first" else steps[-1]
    else:
        try:
            step = int(snapshot)
        except ValueError:
            step = None
        if step not in by_step:
            asked = f"no snapshot taken at step {snapshot}" if step is not None else f"no snapshot {snapshot!r}"
            raise CheckpointError(
                f"{path} holds {asked}: it holds the snapshots of steps {', '.join(map(str, steps))} (the pool keeps "
                f"the last --pool-size {config.opponents.pool_size} of the {taken} taken; older ones are gone); "
                f"name one of those steps, 'first' or 'last'.")
    policy = _build_policy(payload, meta, path, config, None)
    try:
        policy.load_state_dict(by_step[step])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}'s snapshot of step {step} does not match the run's network ({exc}).") from exc
    return policy.to(device).eval(), config, step


def _read_for_loading(path_or_run_dir: str | Path, device: str | torch.device, which: str,
                      need_env: bool) -> tuple[dict, dict, Path, TrainConfig]:
    p = Path(path_or_run_dir)
    if p.is_dir() and which == LATEST:
        try:
            payload, meta, path, problems = load_latest(p, map_location=device)
        except NoIntactCheckpoint as exc:
            raise CheckpointError(exc.fix_for_loading()) from exc
        if problems:
            step = meta["counters"]["global_step"]
            warnings.warn(f"{problems[0]}: loaded {PREVIOUS} (step {step:,}) instead; --which {BEST} loads the "
                          f"best checkpoint.", stacklevel=3)
    else:
        path = resolve_checkpoint(p, which)
        payload, meta = load_payload(path, map_location=device)
    collector = meta.get("collector")
    if need_env and collector is not None and collector.get("env_id") is None:
        raise CheckpointError(
            f"{path} was trained with the collector made by {collector.get('factory')}, whose env has no id, so its "
            f"config does not say which env to make; load it with need_env=False and play it in that env yourself.")
    return payload, meta, path, TrainConfig.from_dict(meta["config"])


def _build_policy(payload: dict, meta: dict, path: Path, config: TrainConfig,
                  name: str | None) -> RecurrentActorCritic:
    """The network of policy ``name`` (None: the run's only policy) with its weights."""
    names = policy_names(meta)
    if names is None:
        if name is not None and name != SHARED_POLICY:
            raise CheckpointError(f"{path} holds one policy (the run had no --policy-map), not {name!r}; drop the "
                                  f"policy name.")
        spaces_meta, state = meta, payload["policy"]
    else:
        if name not in names:
            asked = "no policy name was given" if name is None else f"it has no policy {name!r}"
            raise CheckpointError(f"{path} holds the policies {names} (--policy-map), and {asked}; name one of "
                                  f"them (e.g. policy={names[0]!r}, --policy {names[0]}).")
        spaces_meta, state = meta["policies"][name], payload["policies"][name]
    # The agent-index slots and the central critic's state space (multi-agent runs with them): the run's, or with
    # named policies the policy's own.
    state_space = space_from_json(spaces_meta["state_space"]) if "state_space" in spaces_meta else None
    policy = RecurrentActorCritic(
        space_from_json(spaces_meta["observation_space"]), space_from_json(spaces_meta["action_space"]),
        config.policy, agents=spaces_meta.get("agents", ()), state_space=state_space)
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} does not match the network its config describes ({exc}).") from exc
    return policy


# --------------------------------------------------------------------------- fit checks
def check_spaces_match(meta: dict, observation_space: spaces.Space, action_space: spaces.Space,
                       env_name: str, path: str | Path) -> None:
    """Raise CheckpointError naming the space that differs between a checkpoint and an env, and the env it was
    trained on."""
    env = meta.get("config", {}).get("env", {})
    trained = env_label(env.get("env_id"), env.get("env_kwargs"))
    for kind, space in (("observation", observation_space), ("action", action_space)):
        saved = space_from_json(meta[f"{kind}_space"])
        if saved != space:
            raise CheckpointError(
                f"The checkpoint {path} was trained on {trained}, whose {kind} space is {saved}, but {env_name} "
                f"has {space}; use --env-id {env.get('env_id')} (and the --env-kwargs it was trained with).")


def describe_differences(saved: Any, requested: Any) -> str:
    """'hidden_size: checkpoint 64, requested 7; core: ...' for two dataclasses of one type."""
    parts = []
    for name, old in vars(saved).items():
        new = getattr(requested, name)
        if old != new:
            parts.append(f"--{flag_name(name)}: checkpoint {old!r}, requested {new!r}")
    return "; ".join(parts)
