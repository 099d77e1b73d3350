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
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from agents.buffer import RolloutBuffer
from agents.config import ConfigError
from agents.policy import RecurrentActorCritic
from agents.spaces import obs_to_tensor, tree_stack


def import_env_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import modules that register env ids (``--env-import``), with a clear error when one is missing."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"--env-import {name}: module {exc.name!r} is not installed or not on the Python path; "
                f"install the package that provides it (pip install ...) or fix the module name.") from exc


def env_factory(env_id: str, env_kwargs: dict | None = None, render_mode: str | None = None) -> Callable[[], gym.Env]:
    """A picklable-enough thunk that makes one env (AsyncVectorEnv calls it in a subprocess)."""
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode

    def make() -> gym.Env:
        import envs  # noqa: F401  (registers the built-in ids in subprocesses too)

        return gym.make(env_id, **kwargs)

    return make


def check_env_id(env_id: str) -> None:
    """Raise ConfigError for an unregistered id, with Gymnasium's close-name suggestion."""
    import envs  # noqa: F401  (built-in ids)

    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(
            f"--env-id {env_id}: {exc} If the env comes from another package, add --env-import MODULE "
            f"so that it registers its ids.") from exc


def make_vector_env(
    env_id: str, num_envs: int, env_kwargs: dict | None = None, asynchronous: bool = False
) -> VectorEnv:
    """N copies of ``env_id`` in SAME_STEP autoreset mode (see module docstring)."""
    check_env_id(env_id)
    fns = [env_factory(env_id, env_kwargs) for _ in range(num_envs)]
    if asynchronous:
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


@dataclass
class RolloutInfo:
    """Episodes that finished during one rollout."""

    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)


class VectorCollector:
    """Fills a RolloutBuffer from a vector env, carrying obs, episode starts and recurrent state across rollouts.

    Args:
        envs: a vector env in SAME_STEP autoreset mode.
        policy: the agent (its ``step`` runs under inference mode).
        device: where the policy lives.
        generator: draws the sampled actions (seeded: same seed, same run).
        seed: seeds the envs' first reset.
    """

    def __init__(self, envs: VectorEnv, policy: RecurrentActorCritic, device: torch.device,
                 generator: torch.Generator, seed: int):
        if envs.metadata.get("autoreset_mode") not in (AutoresetMode.SAME_STEP, "SameStep"):
            raise ValueError("VectorCollector needs a vector env in AutoresetMode.SAME_STEP; use make_vector_env.")
        self.envs, self.policy, self.device, self.generator = envs, policy, device, generator
        self.num_envs = envs.num_envs
        obs, _ = envs.reset(seed=seed)
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
                out = policy.step(obs_t, self.state, self.next_episode_start, generator=self.generator)
            buffer.store_step(t, obs_t, self.next_episode_start, self.state, out.action, out.logprob, out.value)

            next_obs, reward, terminated, truncated, infos = self.envs.step(policy.action_head.to_env(out.action))
            buffer.store_outcome(
                t,
                torch.as_tensor(reward, dtype=torch.float32, device=self.device),
                torch.as_tensor(terminated, dtype=torch.float32, device=self.device),
                torch.as_tensor(truncated, dtype=torch.float32, device=self.device),
            )
            cut = truncated & ~terminated
            if cut.any():
                buffer.truncation_values[t] = self._truncation_values(cut, infos, out.state)

            done = terminated | truncated
            self._episode_return += reward
            self._episode_length += 1
            if done.any():
                for i in np.flatnonzero(done):
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
        idx = np.flatnonzero(cut)
        final_obs = tree_stack([infos["final_obs"][i] for i in idx])
        obs = obs_to_tensor(final_obs, self.device)
        idx_t = torch.as_tensor(idx, device=self.device)
        with torch.inference_mode():
            values = self.policy.value(obs, state[:, :, idx_t], torch.zeros(len(idx), device=self.device))
        out = torch.zeros(self.num_envs, device=self.device)
        out[idx_t] = values
        return out

    def bootstrap_value(self) -> torch.Tensor:
        """V(obs_T) for the observation after the rollout, with state_T: (N,). Advances no state."""
        with torch.inference_mode():
            obs = obs_to_tensor(self.next_obs, self.device)
            return self.policy.value(obs, self.state, self.next_episode_start)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict:
        """Per-env recurrent state and episode bookkeeping (tensors only)."""
        return {"state": self.state.clone(), "next_episode_start": self.next_episode_start.clone()}

    def load_state_dict(self, data: dict) -> None:
        """Restore per-env recurrent state. Envs restart their episodes, so every env begins a new one."""
        if data["state"].shape != self.state.shape:
            raise ValueError(f"Saved recurrent state has shape {tuple(data['state'].shape)}, this run needs "
                             f"{tuple(self.state.shape)}; were --num-envs or the core changed?")
        self.state = data["state"].to(self.device)
        self.next_episode_start = torch.ones(self.num_envs, device=self.device)

    def close(self) -> None:
        self.envs.close()

