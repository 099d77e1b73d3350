"""Steps a Gymnasium vector env with the policy and keeps each env's recurrent state.

The vector env runs in ``SAME_STEP`` autoreset mode: when a sub-env's episode
ends, ``step`` returns the first observation of its next episode and the
last one in ``info["final_obs"]``. Every stored step is therefore a real
transition (no dummy reset steps as in ``NEXT_STEP`` mode), and the final
observation is at hand to bootstrap truncated episodes with V(final obs),
computed with the recurrent state that episode reached.

A Ray-based collector can replace ``VectorCollector``: anything with
``collect(policy, buffer) -> RolloutInfo`` plus the state accessors serves.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from agents.buffer import RolloutBuffer
from agents.config import ConfigError
from agents.env_state import decode, encode, restore_env, snapshot_env
from agents.noise import CorrelatedNoise
from agents.policy import RecurrentActorCritic
from agents.spaces import obs_to_tensor, tree_map, tree_map2, tree_stack


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


class NonFiniteError(RuntimeError):
    """A sub-env returned a NaN or infinite observation or reward."""

    def __init__(self, message: str, env_index: int, rollout_step: int):
        super().__init__(message)
        self.env_index, self.rollout_step = env_index, rollout_step


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


def env_factory(env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None) -> Callable[[], gym.Env]:
    """A picklable-enough thunk that makes one env (AsyncVectorEnv calls it in a subprocess)."""
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode

    def make() -> gym.Env:
        import envs  # noqa: F401  (registers the built-in ids in subprocesses too)

        return gym.make(env_id, **kwargs)

    return make


class GuardedEnv(gym.Wrapper):
    """The outermost layer of every training env: names the env when it fails, and reads or writes its state.

    ``step`` / ``reset`` re-raise any exception as ``EnvError`` with the env's index (a vector env alone
    does not say which env failed). ``mnemo_snapshot_env`` / ``mnemo_restore_env`` reach the env
    through ``VectorEnv.call`` in-process and in AsyncVectorEnv workers alike; they return an error
    text instead of raising, because an exception inside a worker's ``call`` kills the worker.
    """

    def __init__(self, env: gym.Env, index: int):
        super().__init__(env)
        self.index = index

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
        """Restore this env from ``snapshots[index]``; None on success, else the reason."""
        try:
            restore_env(self.env, snapshots[self.index])
            return None
        except Exception as exc:
            return f"env {self.index}: {type(exc).__name__}: {exc}"


def _guarded_factory(env_id: str, env_kwargs: dict, index: int, env_import: tuple[str, ...],
                     wrapper: Callable[[gym.Env], gym.Env] | None = None) -> Callable[[], gym.Env]:
    creator = os.getpid()

    def make() -> gym.Env:
        if os.getpid() != creator:
            # An AsyncVectorEnv worker: Ctrl-C in a terminal reaches the whole process group, and the
            # trainer (not each worker) decides what it means. Workers end when the trainer closes them.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            import_env_modules(env_import)
        import envs  # noqa: F401  (registers the built-in ids in subprocesses too)

        env = gym.make(env_id, **env_kwargs)
        return GuardedEnv(env if wrapper is None else wrapper(env), index)

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
) -> VectorEnv:
    """N copies of ``env_id`` in SAME_STEP autoreset mode (see module docstring), each in a ``GuardedEnv``.

    ``wrapper`` (picklable, e.g. ``agents.previous_inputs.run_input_wrapper``) wraps each env inside its guard.

    Raises:
        ConfigError: unknown id, or making the env failed (bad ``env_kwargs``, a broken constructor).
    """
    check_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    fns = [_guarded_factory(env_id, kwargs, i, tuple(env_import), wrapper) for i in range(num_envs)]
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


@dataclass
class RolloutInfo:
    """Episodes that finished during one rollout, and steps skipped for non-finite env output."""

    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    nonfinite_skips: int = 0


class VectorCollector:
    """Fills a RolloutBuffer from a vector env, carrying obs, episode starts and recurrent state across rollouts.

    Args:
        envs: a vector env in SAME_STEP autoreset mode (``make_vector_env``).
        policy: the agent (its ``step`` runs under inference mode).
        device: where the policy lives.
        generator: draws the sampled actions (seeded: same seed, same run).
        seed: seeds the envs' first reset.
        on_nonfinite: a NaN / inf observation or reward either stops collection (``"stop"``: raises
            NonFiniteError naming the env and step) or ends that env's episode as a truncation
            bootstrapped with V(obs_t), with reward 0, and resets the env (``"skip"``).
        noise_correlation: correlation of each env's sampling noise from one step to the next
            (``agents.noise``); 0 draws every action independently.
    """

    def __init__(self, envs: VectorEnv, policy: RecurrentActorCritic, device: torch.device,
                 generator: torch.Generator, seed: int, on_nonfinite: str = "stop", noise_correlation: float = 0.0):
        if envs.metadata.get("autoreset_mode") not in (AutoresetMode.SAME_STEP, "SameStep"):
            raise ValueError("VectorCollector needs a vector env in AutoresetMode.SAME_STEP; use make_vector_env.")
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        self.envs, self.policy, self.device, self.generator = envs, policy, device, generator
        self.num_envs = envs.num_envs
        self.on_nonfinite = on_nonfinite
        self.seed = seed
        self.noise = CorrelatedNoise(noise_correlation) if noise_correlation > 0 else None
        obs, _ = envs.reset(seed=seed)
        self._check_reset_obs(obs, np.ones(self.num_envs, dtype=bool))
        self.next_obs = obs
        self.next_episode_start = torch.ones(self.num_envs, device=device)
        self.state = policy.initial_state(self.num_envs, device)
        self._episode_return = np.zeros(self.num_envs)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)

    def collect(self, buffer: RolloutBuffer) -> RolloutInfo:
        """Run ``buffer.num_steps`` vector steps; leaves the buffer full and ``state`` at the rollout's end."""
        policy, info_out = self.policy, RolloutInfo()
        for t in range(buffer.num_steps):
            obs_t = obs_to_tensor(self.next_obs, self.device)
            with torch.inference_mode():
                out = policy.step(obs_t, self.state, self.next_episode_start, generator=self.generator,
                                  noise=self.noise)
            buffer.store_step(t, obs_t, self.next_episode_start, self.state, out.action, out.logprob, out.value)

            next_obs, reward, terminated, truncated, infos = self.envs.step(policy.action_head.to_env(out.action))
            done, cut = terminated | truncated, truncated & ~terminated
            bad = self._nonfinite(next_obs, reward, infos, cut)
            if bad is not None:
                if self.on_nonfinite == "stop":
                    raise self._nonfinite_error(bad, reward, infos, cut, t)
                next_obs, reward, terminated, truncated = self._skip(bad, next_obs, reward, terminated, truncated)
                info_out.nonfinite_skips += int(bad.sum())
                done, cut = terminated | truncated, truncated & ~terminated
            buffer.store_outcome(
                t,
                torch.as_tensor(reward, dtype=torch.float32, device=self.device),
                torch.as_tensor(terminated, dtype=torch.float32, device=self.device),
                torch.as_tensor(truncated, dtype=torch.float32, device=self.device),
            )
            if cut.any():
                natural = cut if bad is None else cut & ~bad
                values = self._truncation_values(natural, infos, out.state)
                if bad is not None:
                    # A skipped step has no usable next observation: bootstrap with V(obs_t).
                    bad_t = torch.as_tensor(bad, device=self.device)
                    values = torch.where(bad_t, out.value, values)
                buffer.truncation_values[t] = values

            self._episode_return += reward
            self._episode_length += 1
            if done.any():
                finished = done if bad is None else done & ~bad
                for i in np.flatnonzero(finished):
                    info_out.episode_returns.append(float(self._episode_return[i]))
                    info_out.episode_lengths.append(int(self._episode_length[i]))
                self._episode_return[done] = 0.0
                self._episode_length[done] = 0
            self.next_obs = next_obs
            self.state = out.state
            self.next_episode_start = torch.as_tensor(done, dtype=torch.float32, device=self.device)
        return info_out

    def _truncation_values(self, cut: np.ndarray, infos: dict, state: torch.Tensor) -> torch.Tensor:
        """V(final obs) for the envs in ``cut``, with the state their episode reached; 0 elsewhere: (N,)."""
        out = torch.zeros(self.num_envs, device=self.device)
        idx = np.flatnonzero(cut)
        if idx.size == 0:
            return out
        final_obs = tree_stack([infos["final_obs"][i] for i in idx])
        obs = obs_to_tensor(final_obs, self.device)
        idx_t = torch.as_tensor(idx, device=self.device)
        with torch.inference_mode():
            values = self.policy.value(obs, state[:, :, idx_t], torch.zeros(len(idx), device=self.device))
        out[idx_t] = values
        return out

    def bootstrap_value(self) -> torch.Tensor:
        """V(obs_T) for the observation after the rollout, with state_T: (N,). Advances no state."""
        with torch.inference_mode():
            obs = obs_to_tensor(self.next_obs, self.device)
            return self.policy.value(obs, self.state, self.next_episode_start)

    # ---------------------------------------------------------------- non-finite env output
    def _nonfinite(self, next_obs, reward: np.ndarray, infos: dict, cut: np.ndarray) -> np.ndarray | None:
        """(N,) bool mask of envs whose reward, observation, or final observation of a truncated episode (the
        one that is bootstrapped from) is NaN / inf; None if all fine.

        Runs every step, so the common case is one reduction per array: a sum is finite exactly when
        no entry is NaN / inf (or the sum overflows, which the exact check below then clears).
        """
        any_cut = cut.any()
        if isinstance(next_obs, np.ndarray) and not any_cut:  # the common case, in as few numpy calls as possible
            total = reward.sum() + next_obs.sum() if next_obs.dtype.kind in "fc" else reward.sum()
            if math.isfinite(total):
                return None
        leaves = [next_obs] if isinstance(next_obs, np.ndarray) else _float_leaves(next_obs)
        finals = [infos["final_obs"][i] for i in np.flatnonzero(cut)] if any_cut else []
        if math.isfinite(reward.sum()) and all(
                leaf.dtype.kind not in "fc" or math.isfinite(leaf.sum()) for leaf in leaves) and all(
                math.isfinite(leaf.sum()) for final in finals for leaf in _float_leaves(final)):
            return None
        bad = ~np.isfinite(reward)
        for leaf in leaves:
            if leaf.dtype.kind in "fc":
                bad |= ~np.isfinite(leaf.reshape(self.num_envs, -1)).all(axis=1)
        for i in np.flatnonzero(cut):
            if any(not np.isfinite(leaf).all() for leaf in _float_leaves(infos["final_obs"][i])):
                bad[i] = True
        return bad if bad.any() else None

    def _nonfinite_error(self, bad, reward, infos, cut, t: int) -> NonFiniteError:
        i = int(np.flatnonzero(bad)[0])
        if not np.isfinite(reward[i]):
            what = f"reward {reward[i]}"
        elif cut[i] and any(not np.isfinite(x).all() for x in _float_leaves(infos["final_obs"][i])):
            what = "final observation (of a truncated episode, before its autoreset)"
        else:
            what = "observation"
        others = f" (and {int(bad.sum()) - 1} other envs)" if bad.sum() > 1 else ""
        return NonFiniteError(
            f"env {i}{others} returned a non-finite {what} at step {int(self._episode_length[i]) + 1} of its "
            f"episode (step {t} of this rollout). Fix the env, or pass --on-nonfinite skip to end such "
            f"episodes, reset the env and continue.", i, t)

    def _skip(self, bad: np.ndarray, next_obs, reward, terminated, truncated):
        """End the bad envs' episodes as truncations with reward 0, and reset those envs."""
        reward = np.where(bad & ~np.isfinite(reward), 0.0, reward)
        terminated, truncated = terminated & ~bad, truncated | bad
        reset_obs, _ = self.envs.reset(options={"reset_mask": bad.copy()})
        self._check_reset_obs(reset_obs, bad)

        def take(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            out = np.array(old, copy=True)
            out[bad] = new[bad]
            return out

        return tree_map2(take, next_obs, reset_obs), reward, terminated, truncated

    def _check_reset_obs(self, obs, mask: np.ndarray) -> None:
        for leaf in _float_leaves(obs):
            finite = np.isfinite(leaf.reshape(self.num_envs, -1)).all(axis=1)
            if (mask & ~finite).any():
                i = int(np.flatnonzero(mask & ~finite)[0])
                raise NonFiniteError(
                    f"env {i} returned a non-finite observation from reset; no episode can start. Fix the env's "
                    f"reset.", i, -1)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict:
        """Per-env recurrent state, episode starts and correlated sampling noise (tensors only)."""
        data = {"state": self.state.clone(), "next_episode_start": self.next_episode_start.clone()}
        if self.noise is not None and self.noise.last is not None:
            data["sampling_noise"] = self.noise.last.clone()
        return data

    def resume_state(self) -> dict:
        """JSON-ready: the next observations, episode accumulators and every env's state, for an exact resume.

        ``envs`` is None (and ``reason`` says why) when some env cannot be snapshotted; a resume then
        restarts episodes.
        """
        results = self.envs.call("mnemo_snapshot_env")
        errors = [r["error"] for r in results if "error" in r]
        return {
            "next_obs": encode(self.next_obs, "next_obs"),
            "episode_return": encode(self._episode_return),
            "episode_length": encode(self._episode_length),
            "envs": None if errors else [r["snapshot"] for r in results],
            "reason": f"the env cannot be snapshotted: {errors[0]}" if errors else None,
        }

    def load_state_dict(self, data: dict, resume: dict | None = None) -> str | None:
        """Restore the recurrent state and, when ``resume`` holds env snapshots, every env exactly.

        Returns:
            None when the run continues exactly; otherwise why every env begins a new episode instead.
        """
        if data["state"].shape != self.state.shape:
            raise ValueError(f"Saved recurrent state has shape {tuple(data['state'].shape)}, this run needs "
                             f"{tuple(self.state.shape)}; were --num-envs or the core changed?")
        self.state = data["state"].to(self.device)
        if self.noise is not None:
            noise = data.get("sampling_noise")
            self.noise.last = None if noise is None else noise.to(self.device)
        reason = "the checkpoint holds no env state" if resume is None else resume.get("reason")
        if resume is not None and resume.get("envs") is not None:
            errors = [e for e in self.envs.call("mnemo_restore_env", resume["envs"]) if e is not None]
            if not errors:
                self.next_obs = decode(resume["next_obs"], None, "next_obs")
                self._episode_return = decode(resume["episode_return"])
                self._episode_length = decode(resume["episode_length"])
                self.next_episode_start = data["next_episode_start"].to(self.device)
                return None
            reason = f"restoring the envs failed ({errors[0]})"
            obs, _ = self.envs.reset(seed=self.seed)  # some envs may be half restored: start all afresh
            self.next_obs = obs
        self.next_episode_start = torch.ones(self.num_envs, device=self.device)
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        return reason or "unknown"

    def close(self) -> None:
        """Close the envs; AsyncVectorEnv workers are terminated if they do not stop cleanly."""
        try:
            self.envs.close()
        except Exception:
            if isinstance(self.envs, AsyncVectorEnv):
                self.envs.close(terminate=True)
            else:
                raise


def _float_leaves(tree) -> list[np.ndarray]:
    """The floating-point leaves of a numpy observation tree (integer leaves cannot be NaN)."""
    leaves: list[np.ndarray] = []
    tree_map(lambda x: leaves.append(x) if np.asarray(x).dtype.kind in "fc" else None, tree)
    return [np.asarray(x) for x in leaves]
