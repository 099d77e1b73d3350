"""Collectors: what steps envs with the policy and hands the trainer rollouts, behind one interface.

The trainer sees only ``Collector``: ``collect() -> Rollout`` (plain tensors,
with the bootstrap values), the envs' spaces, ``set_weights`` once per
iteration, ``state_dict`` / ``load_state_dict`` for an exact resume, and
``close``. ``VectorCollector`` implements it over a Gymnasium vector env in
this process (``agents.rollout.vector_env``); a distributed collector (actors that each
own some envs and a CPU copy of the policy, and return rollout fragments)
implements the same methods, so the PPO math never changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, VectorEnv

from agents.config import TrainConfig
from agents.model.noise import CorrelatedNoise
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import Rollout, RolloutBuffer
from agents.rollout.env_state import decode, encode
from agents.rollout.previous_inputs import run_input_wrapper
from agents.rollout.vector_env import EnvError, import_env_modules, make_vector_env
from agents.spaces import action_mask_start, check_action_mask_rows, illegal_action_rows, split_action_mask
from agents.trees import Tree, obs_to_tensor, tree_map, tree_map2, tree_stack

__all__ = ["Collector", "CollectorFactory", "EnvError", "NonFiniteError", "VectorCollector", "import_env_modules",
           "local_collector", "make_vector_env"]


@dataclass
class IllegalActionCount:
    """A masked env's env actions checked against the mask the env gave with the observation they answer, and
    how many of them it forbade (training and evaluation count them; the count must stay 0)."""

    checked: int = 0
    illegal: int = 0

    def __iadd__(self, other: IllegalActionCount) -> IllegalActionCount:
        self.checked += other.checked
        self.illegal += other.illegal
        return self


def count_illegal_actions(policy: RecurrentActorCritic, obs: Tree, env_actions: np.ndarray,
                          rows: np.ndarray | None = None, where: str = "env", first: int = 0) -> IllegalActionCount:
    """The env actions (N, ...) checked against the masks in ``obs`` (the numpy observations they answer, leaves
    (N, ...)) over ``rows`` (bool (N,), default all: a multi-agent run checks its live rows only), and how many
    the masks forbid; nothing checked for an unmasked policy. Vectorised numpy, once per step.

    Raises:
        ActionMaskError: some checked row's mask leaves an action dimension with no legal action (named as
            ``where`` and its index plus ``first``).
    """
    if not policy.masked:
        return IllegalActionCount()
    mask = np.asarray(split_action_mask(obs)[1])
    actions = np.asarray(env_actions)
    index = np.arange(len(mask))
    if rows is not None:
        index = np.flatnonzero(rows)
        mask, actions = mask[index], actions[index]
    sizes = policy.action_mask_sizes
    check_action_mask_rows(mask, sizes, where, index + first)
    illegal = int(illegal_action_rows(mask, actions, sizes, action_mask_start(policy.action_space)).sum())
    return IllegalActionCount(checked=len(index), illegal=illegal)


class NonFiniteError(RuntimeError):
    """A sub-env returned a NaN or infinite observation or reward."""

    def __init__(self, message: str, env_index: int, rollout_step: int):
        super().__init__(message)
        self.env_index, self.rollout_step = env_index, rollout_step


class Collector(Protocol):
    """What the trainer needs from whatever runs the envs. Made by a ``CollectorFactory`` with the envs
    built (spaces known) and nothing reset; ``start`` begins the episodes.

    ``state_dict`` is ``{"tensors": {name: tensor}, "generator": sampler state, "resume": JSON-ready or
    None}``: ``tensors`` holds the per-env recurrent state (``"state"``, (S, L, N, W)) and episode starts
    (``"next_episode_start"``, (N,)); ``resume`` the next observations, the running episodes and each env's
    state where it can be snapshotted (``"envs"`` None and ``"reason"`` otherwise). Collection and the
    update alternate, so ``state_dict`` between two ``collect`` calls captures everything a resume needs.

    Optional: ``use_noise(correlation)``, draw the next rollouts' actions with correlated sampling noise
    (``agents.model.noise``), which the ``--sparse-noise`` rule calls mid-run; the noise's state then goes in
    ``tensors`` as ``"sampling_noise"``. A collector without it runs without the rule.
    """

    num_envs: int
    observation_space: gym.Space  # one env's
    action_space: gym.Space

    def start(self, policy: RecurrentActorCritic, device: torch.device, sample_seed: int, env_seed: int) -> None:
        """Reset the envs with ``env_seed``, seed action sampling with ``sample_seed``, zero the states.

        ``policy`` is the one to act with: a local collector acts with this very object (no copy); a remote
        one builds its copies from the spaces and ``policy.config`` and loads ``policy.state_dict()``.
        """

    def collect(self) -> Rollout:
        """One rollout on ``device``, continuing every env's episode and recurrent state from the last."""

    def set_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Act with these policy weights from now on (``policy.state_dict()``: obs-normaliser statistics too)."""

    def state_dict(self, snapshot_envs: bool = True) -> dict:
        """The state above; ``snapshot_envs=False`` leaves ``resume`` None (cheap: no env is asked)."""

    def load_state_dict(self, state: dict) -> str | None:
        """Continue from ``state_dict()``'s output; None when exact, else why every env restarts its episode."""

    def close(self) -> None:
        """Release the envs (and workers)."""


CollectorFactory = Callable[[TrainConfig], Collector]


def local_collector(config: TrainConfig) -> VectorCollector:
    """The default ``CollectorFactory``: ``config.env``'s vector env in this process (``agents.rollout.vector_env``)."""
    env = config.env
    import_env_modules(env.env_import)
    envs = make_vector_env(env.env_id, env.num_envs, env.env_kwargs, env.async_envs, env.env_import,
                           wrapper=run_input_wrapper(config.policy))
    return VectorCollector(envs, config.ppo.num_steps, config.run.on_nonfinite, config.ppo.noise_correlation)


def final_values(policy: RecurrentActorCritic, cut: np.ndarray, final_obs: Sequence, state: torch.Tensor,
                 agent_inputs: dict | None, device: torch.device) -> torch.Tensor:
    """V(final obs) of the rows in ``cut`` ((R,) bool; ``final_obs[i]`` the last observation of row i) with the
    state their episode reached (``state`` (S, L, R, W)) and their multi-agent inputs as at their end (leaves
    (R, ...), or None); 0 elsewhere: (R,). A truncation's bootstrap value."""
    out = torch.zeros(len(cut), device=device)
    idx = np.flatnonzero(cut)
    if idx.size == 0:
        return out
    obs = obs_to_tensor(tree_stack([final_obs[i] for i in idx]), device)
    idx_t = torch.as_tensor(idx, device=device)
    inputs = None if agent_inputs is None else tree_map(lambda x: x[idx_t], agent_inputs)
    with torch.inference_mode():
        out[idx_t] = policy.value(obs, state[:, :, idx_t], torch.zeros(len(idx), device=device), inputs)
    return out


class VectorCollector:
    """The local ``Collector``: steps a vector env with the policy, carrying obs, episode starts and recurrent
    state across rollouts, into its own RolloutBuffer.

    Args:
        envs: a vector env in SAME_STEP autoreset mode (``make_vector_env``); the collector closes it.
        num_steps: vector steps per rollout.
        on_nonfinite: a NaN / inf observation or reward either stops collection (``"stop"``: raises
            NonFiniteError naming the env and step) or ends that env's episode as a truncation
            bootstrapped with V(obs_t), with reward 0, and resets the env (``"skip"``).
        noise_correlation: correlation of each env's sampling noise from one step to the next
            (``agents.model.noise``); 0 draws every action independently.
        first_env: the run-wide number of ``envs``' first env, for error messages (a Ray actor's share).
    """

    def __init__(self, envs: VectorEnv, num_steps: int, on_nonfinite: str = "stop", noise_correlation: float = 0.0,
                 first_env: int = 0):
        if envs.metadata.get("autoreset_mode") not in (AutoresetMode.SAME_STEP, "SameStep"):
            raise ValueError("VectorCollector needs a vector env in AutoresetMode.SAME_STEP; use make_vector_env.")
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        self.envs, self.num_steps, self.on_nonfinite = envs, num_steps, on_nonfinite
        self.num_envs = envs.num_envs
        self.observation_space, self.action_space = envs.single_observation_space, envs.single_action_space
        self.noise = CorrelatedNoise(noise_correlation) if noise_correlation > 0 else None
        self.first_env = first_env

    def start(self, policy: RecurrentActorCritic, device: torch.device, sample_seed: int, env_seed: int) -> None:
        self.policy, self.device, self.seed = policy, device, env_seed
        self.generator = torch.Generator(device).manual_seed(sample_seed)
        self.buffer = RolloutBuffer(self.num_steps, self.num_envs, self.observation_space, policy.action_shape,
                                    policy.action_dtype, policy.state_shape, device,
                                    intrinsic=policy.has_intrinsic_value)
        obs, _ = self.envs.reset(seed=env_seed)
        self._check_reset_obs(obs, np.ones(self.num_envs, dtype=bool))
        self.next_obs = obs
        self.next_episode_start = torch.ones(self.num_envs, device=device)
        self.state = policy.initial_state(self.num_envs, device)
        self._episode_return = np.zeros(self.num_envs)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)

    def use_noise(self, correlation: float) -> None:
        """Draw the following rollouts' actions with correlated sampling noise (``--sparse-noise`` switches it on
        mid-run); the first step after this starts a fresh noise process."""
        self.noise = CorrelatedNoise(correlation)

    def set_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        """The trainer's own policy's weights are the ones this collector acts with already; others are loaded
        into that shared policy."""
        own = self.policy.state_dict()
        if all(weights[name].data_ptr() == tensor.data_ptr() for name, tensor in own.items()):
            return
        self.policy.load_state_dict(weights)

    def collect(self) -> Rollout:
        """Run ``num_steps`` vector steps; leaves ``state`` at the rollout's end. The rollout's tensors are the
        buffer's: valid until the next ``collect``."""
        policy, buffer = self.policy, self.buffer
        returns, lengths, skips, masks = [], [], 0, IllegalActionCount()
        for t in range(self.num_steps):
            obs_t = obs_to_tensor(self.next_obs, self.device)
            with torch.inference_mode():
                out = policy.step(obs_t, self.state, self.next_episode_start, generator=self.generator,
                                  noise=self.noise, intrinsic=policy.has_intrinsic_value)
            buffer.store_step(t, obs_t, self.next_episode_start, self.state, out.action, out.logprob, out.value,
                              value_int=out.value_int)

            env_action = policy.env_action(out.action)
            if policy.masked:
                masks += count_illegal_actions(policy, self.next_obs, env_action, first=self.first_env)
            next_obs, reward, terminated, truncated, infos = self.envs.step(env_action)
            done, cut = terminated | truncated, truncated & ~terminated
            bad = self._nonfinite(next_obs, reward, infos, cut)
            if bad is not None:
                if self.on_nonfinite == "stop":
                    raise self._nonfinite_error(bad, reward, infos, cut, t)
                next_obs, reward, terminated, truncated = self._skip(bad, next_obs, reward, terminated, truncated)
                skips += int(bad.sum())
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
                    returns.append(float(self._episode_return[i]))
                    lengths.append(int(self._episode_length[i]))
                self._episode_return[done] = 0.0
                self._episode_length[done] = 0
            self.next_obs = next_obs
            self.state = out.state
            self.next_episode_start = torch.as_tensor(done, dtype=torch.float32, device=self.device)
        return buffer.rollout(self._bootstrap_value(), returns, lengths, skips, masks.illegal, masks.checked,
                              self._bootstrap_value_int())

    def _truncation_values(self, cut: np.ndarray, infos: dict, state: torch.Tensor,
                           agent_inputs: dict | None = None) -> torch.Tensor:
        """V(final obs) for the envs in ``cut``, with the state their episode reached (and multi-agent inputs
        ``agent_inputs``, leaves (N, ...), as at their end); 0 elsewhere: (N,)."""
        # A step where no env ended may have no "final_obs" at all; final_values reads it only for rows in cut.
        return final_values(self.policy, cut, infos.get("final_obs", ()), state, agent_inputs, self.device)

    def _bootstrap_value(self, agent_inputs: dict | None = None) -> torch.Tensor:
        """V(obs_T) for the observation after the rollout, with state_T (and multi-agent inputs, leaves (N, ...)):
        (N,). Advances no state."""
        with torch.inference_mode():
            obs = obs_to_tensor(self.next_obs, self.device)
            return self.policy.value(obs, self.state, self.next_episode_start, agent_inputs)

    def _bootstrap_value_int(self) -> torch.Tensor | None:
        """V_int(obs_T) with state_T (N,) where the policy has an intrinsic value head (``--exploration``), else
        None. Advances no state."""
        if not self.policy.has_intrinsic_value:
            return None
        with torch.inference_mode():
            obs = obs_to_tensor(self.next_obs, self.device)
            return self.policy.intrinsic_value(obs, self.state, self.next_episode_start)

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
        step = int(self._episode_length[i]) + 1
        return NonFiniteError(
            f"env {self.first_env + i}{others} returned a non-finite {what} at step {step} of its "
            f"episode (step {t} of this rollout). Fix the env, or pass --on-nonfinite skip to end such "
            f"episodes, reset the env and continue.", self.first_env + i, t)

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
                    f"env {self.first_env + i} returned a non-finite observation from reset; no episode can "
                    f"start. Fix the env's reset.", self.first_env + i, -1)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self, snapshot_envs: bool = True) -> dict:
        """Recurrent state, episode starts and correlated sampling noise (``tensors``, cloned), the sampler's
        state, and with ``snapshot_envs`` the JSON-ready ``resume`` part (see ``Collector``)."""
        tensors = {"state": self.state.clone(), "next_episode_start": self.next_episode_start.clone()}
        if self.noise is not None and self.noise.last is not None:
            tensors["sampling_noise"] = self.noise.last.clone()
        return {"tensors": tensors, "generator": self.generator.get_state(),
                "resume": self._resume_state() if snapshot_envs else None}

    def _resume_state(self) -> dict:
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

    def _restore_sampler_and_state(self, state: dict) -> dict | None:
        """The first part of ``load_state_dict``: the sampler, the recurrent state and the sampling noise.

        Returns:
            The saved tensors (``state["tensors"]``), or None when the checkpoint holds no collector state.

        Raises:
            ValueError: the saved recurrent state does not fit this policy and number of envs.
        """
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"].cpu())
        data = state.get("tensors")
        if data is None:
            return None
        if data["state"].shape != self.state.shape:
            raise ValueError(f"Saved recurrent state has shape {tuple(data['state'].shape)}, this run needs "
                             f"{tuple(self.state.shape)}; were --num-envs or the core changed?")
        self.state = data["state"].to(self.device)
        if self.noise is not None:
            noise = data.get("sampling_noise")
            self.noise.last = None if noise is None else noise.to(self.device)
        return data

    def load_state_dict(self, state: dict) -> str | None:
        """Restore the sampler, the recurrent state and, when ``state["resume"]`` holds env snapshots, every
        env exactly. Missing parts (``None``) are left as ``start`` made them.

        Returns:
            None when the run continues exactly; otherwise why every env begins a new episode instead.

        Raises:
            ValueError: the saved recurrent state does not fit this policy and number of envs.
        """
        data, resume = self._restore_sampler_and_state(state), state.get("resume")
        if data is None:
            return "the checkpoint holds no collector state"
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
