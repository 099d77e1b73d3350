"""Making the vector env a local collector steps: env ids, ``--env-import`` modules, and guarding every env.

The vector env runs in ``SAME_STEP`` autoreset mode: when a sub-env's episode
ends, ``step`` returns the first observation of its next episode and the
last one in ``info["final_obs"]``. Every stored step is therefore a real
transition (no dummy reset steps as in ``NEXT_STEP`` mode), and the final
observation is at hand to bootstrap truncated episodes with V(final obs),
computed with the recurrent state that episode reached.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from agents.config import ConfigError
from agents.rollout.env_state import restore_env, snapshot_env


class EnvError(RuntimeError):
    """A sub-env raised inside ``reset`` or ``step``; the message names the env index and the original error.

    Raised in the process that runs the env (an AsyncVectorEnv worker re-raises it in the main
    process as ``EnvError(original)``, which keeps the message, index and traceback).
    """

    def __init__(self, message: str | EnvError, env_index: int | None = None, env_traceback: str = ""):
        # Re-raised from a worker (``EnvError(original)``): gymnasium has logged the traceback already.
        self.from_worker = isinstance(message, EnvError)
        if isinstance(message, EnvError):
            message, env_index, env_traceback = str(message), message.env_index, message.env_traceback
        super().__init__(message)
        self.env_index, self.env_traceback = env_index, env_traceback

    def __reduce__(self):
        return (type(self), (str(self), self.env_index, self.env_traceback))


def import_env_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import modules that register env ids (``--env-import``), with a clear error when one is missing.

    Names resolve as ``python -m`` resolves them: in the working directory and on the Python path
    (installed packages, ``PYTHONPATH``). ``python train.py`` puts the script's folder on ``sys.path``, not
    the working directory, so the working directory is appended here (after the installed packages, so it
    never shadows one): a user's ``my_game.py`` next to them just works, in AsyncVectorEnv workers too.

    Raises:
        ModuleNotFoundError: a module (or one it imports) cannot be found; the message says where it looked.
        ConfigError: importing the module raised.
    """
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.append(cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                top = exc.name.split(".")[0]
                raise ModuleNotFoundError(
                    f"--env-import {name}: no module {exc.name!r} in the working directory ({cwd}) or on the "
                    f"Python path; run from the folder that holds {top}.py (or the {top}/ package), add that "
                    f"folder to PYTHONPATH, or pip install the package that provides it.", name=exc.name) from exc
            raise ModuleNotFoundError(
                f"--env-import {name}: the module imports {exc.name!r}, which is not installed; "
                f"pip install the package that provides it.", name=exc.name) from exc
        except Exception as exc:
            raise ConfigError(f"--env-import {name}: importing the module failed with {type(exc).__name__}: "
                              f"{exc}. Fix the module (run `python -c 'import {name}'` to see the traceback).") from exc


class GuardedEnv(gym.Wrapper):
    """The outermost layer of every training env: names the env when it fails, and reads or writes its state.

    ``step`` / ``reset`` re-raise any exception as ``EnvError`` with the env's index (a vector env alone
    does not say which env failed). ``mnemo_snapshot_env`` / ``mnemo_restore_env`` reach the env
    through ``VectorEnv.call`` in-process and in AsyncVectorEnv workers alike; they return an error
    text instead of raising, because an exception inside a worker's ``call`` kills the worker.
    """

    def __init__(self, env: gym.Env, index: int, slot: int | None = None):
        super().__init__(env)
        # index: the env's number in the whole run (messages); slot: its place in this vector env (snapshots).
        self.index, self.slot = index, index if slot is None else slot

    def _fail(self, where: str, exc: Exception) -> EnvError:
        return EnvError(f"env {self.index} raised {type(exc).__name__} in {where}: {exc}", self.index,
                        traceback.format_exc())

    def step(self, action):
        try:
            return self.env.step(action)
        except Exception as exc:
            raise self._fail("step", exc) from exc

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        try:
            return self.env.reset(seed=seed, options=options)
        except Exception as exc:
            raise self._fail("reset", exc) from exc

    def mnemo_snapshot_env(self) -> dict:
        """``{"snapshot": ...}`` or ``{"error": why not}``."""
        try:
            return {"snapshot": snapshot_env(self.env)}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def mnemo_restore_env(self, snapshots: list[dict]) -> str | None:
        """Restore this env from ``snapshots[slot]``; None on success, else the reason."""
        try:
            restore_env(self.env, snapshots[self.slot])
            return None
        except Exception as exc:
            return f"env {self.index}: {type(exc).__name__}: {exc}"


def _guarded_factory(env_id: str, env_kwargs: dict, index: int, env_import: tuple[str, ...],
                     wrapper: Callable[[gym.Env], gym.Env] | None = None, slot: int | None = None
                     ) -> Callable[[], gym.Env]:
    creator = os.getpid()

    def make() -> gym.Env:
        if os.getpid() != creator:
            # An AsyncVectorEnv worker: Ctrl-C in a terminal reaches the whole process group, and the
            # trainer (not each worker) decides what it means. Workers end when the trainer closes them.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            import_env_modules(env_import)
        import envs  # noqa: F401  (registers the built-in ids in subprocesses too)

        env = gym.make(env_id, **env_kwargs)
        return GuardedEnv(env if wrapper is None else wrapper(env), index, slot)

    return make


def check_env_id(env_id: str) -> None:
    """Raise ConfigError for an unregistered id: the ``mnemo/`` id a bare name means, else Gymnasium's guess."""
    import envs  # (registers the built-in ids)

    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        built_in = envs.namespaced_id(env_id)
        if built_in is not None:
            raise ConfigError(f"--env-id {env_id} is not registered; the built-in env is {built_in}: "
                              f"pass --env-id {built_in}.") from exc
        raise ConfigError(
            f"--env-id {env_id}: {exc} If the env comes from another package, add --env-import MODULE "
            f"so that it registers its ids.") from exc


def make_vector_env(
    env_id: str, num_envs: int, env_kwargs: dict | None = None, asynchronous: bool = False,
    env_import: tuple[str, ...] | list[str] = (), wrapper: Callable[[gym.Env], gym.Env] | None = None,
    first_index: int = 0,
) -> VectorEnv:
    """N copies of ``env_id`` in SAME_STEP autoreset mode (see module docstring), each in a ``GuardedEnv``.

    ``wrapper`` (picklable, e.g. ``agents.rollout.previous_inputs.run_input_wrapper``) wraps each env inside its guard.
    ``first_index``: the run-wide number of the first env, for error messages (a Ray actor's envs are
    ``first_index .. first_index + N - 1`` of the run's).

    Raises:
        ConfigError: unknown id, or making the env failed (bad ``env_kwargs``, a broken constructor).
    """
    check_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    fns = [_guarded_factory(env_id, kwargs, first_index + i, tuple(env_import), wrapper, i) for i in range(num_envs)]
    try:
        if asynchronous:
            return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    except Exception as exc:
        if isinstance(exc, (gym.error.DependencyNotInstalled, ImportError)):
            fix = "The env needs a package that is not installed: install it as the message says, then run again."
        else:
            fix = "Check the env's arguments (its docstring lists them)."
        raise ConfigError(
            f"Making {env_id} with --env-kwargs {json.dumps(kwargs)} failed: {type(exc).__name__}: {exc}. {fix}"
        ) from exc
