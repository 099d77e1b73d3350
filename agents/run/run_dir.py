"""The run directory: what a training run writes there, refusing one that holds something else, and its lock.

Layout::

    RUN_DIR/
      config.json              resolved config (rewritten atomically on every resume)
      events.out.tfevents.*    TensorBoard: charts/*, losses/*, perf/*, hyperparameters
      checkpoints/latest.pt    written at the start, every --checkpoint-every steps, at the end, and on a stop
      checkpoints/previous.pt  the checkpoint before latest (a resume falls back to it)
      checkpoints/best.pt      best recent training return so far
      summary.json             final figures (eval return, steps, wall time, SPS)
      .lock                    held while a process trains in the directory
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from agents.config import ConfigError, TrainConfig
from agents.run.checkpoint import CHECKPOINT_DIR, remove_stale_temp_files

# Files a training run writes; --overwrite deletes these and refuses to touch anything else.
RUN_FILES = ("config.json", "summary.json", CHECKPOINT_DIR, ".lock")
LOCK_FILE = ".lock"


def default_run_dir(config: TrainConfig) -> Path:
    env_name = config.env.env_id.replace("/", "_")
    return Path("runs") / f"{env_name}__{config.run.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def is_run_file(name: str) -> bool:
    return name in RUN_FILES or name.startswith("events.out.tfevents.")


class RunDirLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock`` for as long as a process trains there.

    Two processes writing one run directory would interleave checkpoints and event files. The OS
    releases the lock when the holder exits, even on SIGKILL, so a crashed run never blocks its resume.
    Where ``fcntl`` does not exist (Windows) the lock is a no-op.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._file = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            import fcntl
        except ImportError:
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise ConfigError(
                f"Run directory {run_dir} is in use by another training process (pid {holder}); wait for it "
                f"to finish or stop it (Ctrl-C saves a checkpoint), then resume.") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()  # closing the descriptor drops the flock


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse, before any work, a run directory that does not fit the request. Writes nothing."""
    if resume:
        if not (run_dir / "config.json").exists() and not (run_dir / CHECKPOINT_DIR).is_dir():
            raise ConfigError(f"--resume {run_dir}: no training run there (config.json missing).")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory; choose another --run-dir.")
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            f"Run directory {run_dir} already exists and is not empty; pass --resume {run_dir} to continue "
            f"it, --overwrite to replace it, or choose another --run-dir.")
    foreign = sorted(p.name for p in run_dir.iterdir() if not is_run_file(p.name))
    if foreign:
        raise ConfigError(
            f"--overwrite refuses to clear {run_dir}: it holds files a training run does not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}). Choose another --run-dir.")


def claim_run_dir(run_dir: Path, overwrite: bool, lock: RunDirLock | None) -> RunDirLock:
    """Once everything else has worked: lock a fresh run's directory (``lock`` None: created, or cleared with
    ``overwrite``; a resume passes the lock it holds), and clear the temporary files an interrupted write
    left behind."""
    if lock is None and overwrite and run_dir.exists():
        lock = RunDirLock(run_dir)
        for entry in run_dir.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    elif lock is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunDirLock(run_dir)
    remove_stale_temp_files(run_dir / CHECKPOINT_DIR)
    remove_stale_temp_files(run_dir)
    return lock


def refuse_finished_run(run_dir: Path, global_step: int, iteration: int, config: TrainConfig) -> None:
    """A resume of a run that reached its budget and wrote its summary would only evaluate again and
    overwrite summary.json with a run of zero steps; refuse it, naming the flag that extends the run."""
    if iteration < config.num_iterations or not (run_dir / "summary.json").exists():
        return
    raise ConfigError(
        f"--resume {run_dir}: the run is finished ({global_step} steps done of --total-steps "
        f"{config.ppo.total_steps}; its summary.json is written). To train it further, pass a larger "
        f"budget: --resume {run_dir} --total-steps N with N > {global_step}.")
