"""The local collector for multi-agent envs: agent slots as rows, with alive and spawn bookkeeping.

``MultiAgentCollector`` is a ``VectorCollector`` over a ``MultiAgentVectorEnv``
(``agents.rollout.multiagent_env``): the policy, the buffer and PPO see R = N x S rows. Per step it

- zeroes the state of every row whose agent spawns (in carry mode too: a new agent never inherits a slot's
  memory), so the stored state of a spawn step is zero;
- runs one batched policy call over all R rows (absent rows included; their outputs are discarded: a cost of
  (absent rows / R) of the inference, accepted for one fused call);
- holds the state of absent rows (an absent row's state is the one its agent left, until a spawn zeroes it);
- stores ``alive`` (T, R) in the rollout, which the trainer uses to drop absent steps from every loss term
  and statistic;
- where the policy reads them, passes and stores each row's multi-agent inputs (``Rollout.agent_inputs``): its
  slot among its policy's agents (``"agent_index"``; ``MultiAgentVectorEnv.policy_slot``) and, for a central
  critic, its env copy's global state (``"global_state"``); the truncation value of an agent whose episode is
  cut reads the state at its end, before the autoreset.

For a turn-based env (``MultiAgentVectorEnv.turn_based``) it also credits each waiting row's rewards and ends to
its last acting step (its *pending* step), stores ``Rollout.acting`` (the acting steps, for GAE over each agent's
own turns), and carries the pending steps of rows still waiting at the rollout's end into the next rollout's
extra leading step 0 (T + 1 steps; docs/architecture.md, "Agents that come and go").

The single-agent ``VectorCollector.collect`` loop is untouched.

``MultiPolicyCollector`` is the same collection with several policies (``--policy-map``): each policy owns a
block of rows (``PolicyRows``), and each step makes one batched call per policy over its rows, into one buffer
per policy; ``collect`` returns one ``Rollout`` per policy. Each policy reads its own multi-agent inputs (its
agents' slots among its own agents; with a central critic, the same global states as every other policy).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.config import ConfigError, TrainConfig
from agents.model.noise import CorrelatedNoise
from agents.model.policy import RecurrentActorCritic, StepOutput
from agents.rollout.buffer import Rollout, RolloutBuffer
from agents.rollout.collector import (
    IllegalActionCount,
    NonFiniteError,
    VectorCollector,
    _float_leaves,
    count_illegal_actions,
    final_values,
)
from agents.rollout.env_state import decode, encode
from agents.rollout.multiagent_env import (
    MultiAgentVectorEnv,
    PolicyRows,
    is_multiagent,
    make_multiagent_vector_env,
)
from agents.trees import obs_to_tensor, tree_map, tree_map2

# What a carried pending step keeps besides its observation, inputs and state (``MultiAgentCollector._carry``).
_CARRIED = ("actions", "logprobs", "values", "rewards", "terminated", "truncated", "truncation_values",
            "episode_starts")

# The backends that collect multi-agent envs: this process, or Ray actors that each wrap this module's collectors
# over their share of the env copies (agents.rollout.ray_collector).
MULTIAGENT_BACKENDS = ("local", "ray")


def refuse_unsupported(config: TrainConfig) -> None:
    """Raise ConfigError (one line, naming what is supported) for settings a multi-agent run does not have."""
    env, run, ppo, pol = config.env, config.run, config.ppo, config.policy
    refused = [
        (run.backend not in MULTIAGENT_BACKENDS, f"--backend {run.backend}", "--backend local or --backend ray"),
        (env.async_envs, "--async-envs", "in-process envs (drop --async-envs)"),
        (ppo.refresh_start_states, "--refresh-start-states", "stored start states (drop --refresh-start-states)"),
        (run.on_nonfinite != "stop", f"--on-nonfinite {run.on_nonfinite}", "--on-nonfinite stop"),
        (pol.prev_action_reward, "--prev-action-reward", "observations as the env gives them"),
    ]
    for bad, what, supported in refused:
        if bad:
            raise ConfigError(f"{what} is not supported with the multi-agent env {env.env_id}; multi-agent runs "
                              f"support {supported} (docs/multiagent.md).")


def multiagent_collector(config: TrainConfig,
                         num_copies: int | None = None) -> MultiAgentCollector | MultiPolicyCollector:
    """The local ``CollectorFactory`` for a multi-agent ``config.env.env_id`` (``make_collector`` picks it), over
    ``num_copies`` env copies (default ``--num-envs``; a Ray actor passes its share)."""
    refuse_unsupported(config)
    env = config.env
    copies = env.num_envs if num_copies is None else num_copies
    envs = make_multiagent_vector_env(env.env_id, copies, env.env_kwargs, env.env_import, env.policy_map,
                                      with_state=config.policy.central_critic)
    if env.policy_map is not None:
        return MultiPolicyCollector(envs, config.ppo.num_steps, config.ppo.noise_correlation)
    return MultiAgentCollector(envs, config.ppo.num_steps, config.ppo.noise_correlation)


@dataclass
class BlockStep:
    """One policy's part of ``act_by_policy``: its observations (tensors), its rows' state before the step
    (S, L, R_p, W, spawns zeroed), their episode starts (R_p,) and the policy's output; for a masked env, its
    live rows' env actions checked against the env's masks and the illegal ones (``mask_count``)."""

    block: PolicyRows
    obs: Any
    state: torch.Tensor
    start: torch.Tensor
    out: StepOutput
    mask_count: IllegalActionCount


def act_by_policy(policies: dict[str, RecurrentActorCritic], envs: MultiAgentVectorEnv, obs: Any,
                  state: torch.Tensor, spawn: np.ndarray, deterministic: bool, generator: torch.Generator | None,
                  device: torch.device | str = "cpu") -> tuple[Any, torch.Tensor, list[BlockStep]]:
    """One step of every policy over its rows outside training (evaluation, watch), by ``collect``'s rules: a
    spawn starts from zero state, an absent row's state is held; the actor alone acts (a central critic's
    env.state() is not read).

    Args:
        policies: by block name (``envs.policies``); one entry without ``--policy-map``.
        obs: ``envs``'s observations (one tree, or one per policy with named policies).
        state: (S, L, R, W) every row's state after the last step; spawn (R,) bool.

    Returns:
        The actions for ``envs.step``, the state after this step (S, L, R, W), and each policy's ``BlockStep``.
    """
    start = torch.as_tensor(spawn, dtype=torch.float32, device=device)
    alive = torch.as_tensor(envs.alive, device=device)
    state = state * (1.0 - start).view(1, 1, -1, 1)
    # Each row's slot among its policy's agents, for a policy with an agent-index input.
    slots = torch.as_tensor(envs.policy_slot, device=device)
    actions, next_states, steps = [], [], []
    for block, block_obs in zip(envs.policies, obs if envs.per_policy else [obs], strict=True):
        policy, rows = policies[block.name], block.rows
        obs_t = obs_to_tensor(block_obs, device)
        block_state, block_start = state[:, :, rows], start[rows]
        agent_inputs = {"agent_index": slots[rows]}
        out = policy.step(obs_t, block_state, block_start, deterministic, generator, agent_inputs=agent_inputs)
        next_states.append(torch.where(alive[rows].view(1, 1, -1, 1), out.state, block_state))
        env_action = policy.env_action(out.action)
        actions.append(env_action)
        # Absent rows' (zero) masks are not the env's: only live rows are checked.
        mask_count = count_illegal_actions(policy, block_obs, env_action, envs.alive[rows], "agent row")
        steps.append(BlockStep(block, obs_t, block_state, block_start, out, mask_count))
    return actions if envs.per_policy else actions[0], torch.cat(next_states, dim=2), steps


class MultiAgentCollector(VectorCollector):
    """A ``Collector`` over a ``MultiAgentVectorEnv``: ``num_envs`` is R, the rows (agent slots) the policy sees.

    ``state_dict`` adds ``"alive"`` (R,) to the tensors and the envs' snapshots (their plain attributes, or
    their ``mnemo_get_state``) to ``resume``, so a resume with agents mid-episode is exact.

    ``agent_names`` (the env's ``possible_agents``) and ``state_space`` (its global state's, where the envs read
    it) are what the policy's multi-agent inputs are built from.
    """

    def __init__(self, envs: MultiAgentVectorEnv, num_steps: int, noise_correlation: float = 0.0):
        self.envs, self.num_steps, self.on_nonfinite = envs, num_steps, "stop"
        self.num_envs = envs.num_envs
        self.observation_space, self.action_space = envs.single_observation_space, envs.single_action_space
        self.noise = CorrelatedNoise(noise_correlation) if noise_correlation > 0 else None
        self.first_env = 0
        self.env_id = envs.env_id
        self.agent_names, self.state_space = tuple(envs.agent_names), envs.state_space
        # Turn-based envs: the buffer's step 0 holds the transitions carried from the last rollout (``_carry``).
        self.turn_based = envs.turn_based
        self._first = 1 if self.turn_based else 0
        self._pending = np.full(self.num_envs, -1, dtype=np.int64)  # each row's last acting step, while waiting
        self._carry: dict | None = None

    def start(self, policy: RecurrentActorCritic, device: torch.device, sample_seed: int, env_seed: int) -> None:
        self.policy, self.device, self.seed = policy, device, env_seed
        self.generator = torch.Generator(device).manual_seed(sample_seed)
        # The multi-agent inputs the policy reads (None: none, and the buffer stores none).
        self._inputs_space = self._inputs_space_of(policy)
        self._agent_index = torch.as_tensor(self.envs.policy_slot, device=device)
        slots = self._first + self.num_steps
        self.buffer = RolloutBuffer(slots, self.num_envs, self.observation_space, policy.action_shape,
                                    policy.action_dtype, policy.state_shape, device, self._inputs_space)
        self.alive_steps = torch.zeros(slots, self.num_envs, device=device)
        self.acting_steps = torch.zeros(slots, self.num_envs, device=device) if self.turn_based else None
        self._reset_envs(env_seed)
        self.state = policy.initial_state(self.num_envs, device)

    def _reset_envs(self, seed: int) -> None:
        obs, spawn = self.envs.reset(seed=seed)
        self._check_obs(obs, -1)
        self.next_obs = obs
        self.next_episode_start = torch.as_tensor(spawn, dtype=torch.float32, device=self.device)
        self.alive = torch.as_tensor(self.envs.alive, dtype=torch.float32, device=self.device)
        self._episode_return = np.zeros(self.num_envs)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self._pending[:] = -1  # a reset ends every episode: nothing is pending or carried
        self._carry = None

    def _inputs_space_of(self, policy: RecurrentActorCritic) -> spaces.Dict | None:
        """The multi-agent inputs ``policy`` reads, as a space (None: none): its agent's slot among the policy's
        agents where it has them, the global state where it has a central critic."""
        inputs_space = {}
        if policy.agents:
            inputs_space["agent_index"] = spaces.Discrete(len(policy.agents))
        if policy.central_critic:
            if not self.envs.with_state:
                raise ValueError("a policy with a central critic needs envs that read the global state: make them "
                                 "with make_multiagent_vector_env(..., with_state=True)")
            inputs_space["global_state"] = policy.state_space
        return spaces.Dict(inputs_space) if inputs_space else None

    def _agent_inputs(self, global_state=None) -> dict | None:
        """The rows' multi-agent inputs the policy reads, leaves (R, ...): each row's slot and its env copy's
        global state (``global_state`` (N, ...), default: the copies' state now); None when it reads none."""
        if self._inputs_space is None:
            return None
        inputs = {}
        if "agent_index" in self._inputs_space.spaces:
            inputs["agent_index"] = self._agent_index
        if "global_state" in self._inputs_space.spaces:
            per_copy = self.envs.global_state if global_state is None else global_state
            inputs["global_state"] = obs_to_tensor(self.envs.copies_to_rows(per_copy), self.device)
        return inputs

    def collect(self) -> Rollout:
        """``num_steps`` steps of every env copy; returns the rollout with ``alive`` (T, R). Each agent's episode
        (spawn to its end) is one entry of ``episode_returns``."""
        policy, buffer = self.policy, self.buffer
        returns, lengths, masks = [], [], IllegalActionCount()
        if self.turn_based:
            self._place_carry(buffer, slice(0, self.num_envs), self._carry)
        for step in range(self.num_steps):
            t = step + self._first  # the buffer index (turn-based: after the carried step 0)
            obs_t = obs_to_tensor(self.next_obs, self.device)
            inputs_t = self._agent_inputs()
            alive = self.alive
            acting = self.envs.alive.copy()  # the rows acting now, on the host
            with torch.inference_mode():
                # A spawned agent starts from zero state, in carry mode too (the stored state is that zero).
                state = self.state * (1.0 - self.next_episode_start).view(1, 1, -1, 1)
                out, action, next_state = self._act(obs_t, state, inputs_t, alive)
            buffer.store_step(t, obs_t, self.next_episode_start, state, out.action, out.logprob, out.value, inputs_t)
            self.alive_steps[t] = self._training_steps(alive)
            if self.turn_based:
                self.acting_steps[t] = alive
            self._episode_length += acting  # (no device copy)

            env_action = policy.env_action(action)
            if policy.masked:  # live rows only: an absent row's zero mask is not the env's
                masks += count_illegal_actions(policy, self.next_obs, env_action, acting, "agent row")
            next_obs, reward, terminated, truncated, spawn, infos = self.envs.step(env_action)
            self._check_obs(next_obs, step, reward)
            if self.turn_based:
                self._store_turn_outcome(t, acting, reward, terminated, truncated, infos, next_state, inputs_t)
            else:
                buffer.store_outcome(
                    t,
                    torch.as_tensor(reward, dtype=torch.float32, device=self.device),
                    torch.as_tensor(terminated, dtype=torch.float32, device=self.device),
                    torch.as_tensor(truncated, dtype=torch.float32, device=self.device),
                )
                cut = truncated & ~terminated
                if cut.any():
                    # A cut agent's value reads the global state at its end, before its env copy's autoreset.
                    final_inputs = None if inputs_t is None else self._agent_inputs(infos.get("final_state"))
                    buffer.truncation_values[t] = self._truncation_values(cut, infos, out.state, final_inputs)

            self._episode_return += reward
            done = terminated | truncated
            for i in np.flatnonzero(self._reported_episodes(done)):
                returns.append(float(self._episode_return[i]))
                lengths.append(int(self._episode_length[i]))
            self._episode_return[done] = 0.0
            self._episode_length[done] = 0
            self.next_obs = next_obs
            self.state = next_state
            self.next_episode_start = torch.as_tensor(spawn, dtype=torch.float32, device=self.device)
            self.alive = torch.as_tensor(self.envs.alive, dtype=torch.float32, device=self.device)
            self._after_step(reward, infos["env_done"])
        bootstrap = self._bootstrap_value(self._agent_inputs())
        if self.turn_based:
            bootstrap, self._carry = self._hang_pending(buffer, slice(0, self.num_envs), bootstrap)
        rollout = buffer.rollout(bootstrap, returns, lengths, illegal_actions=masks.illegal,
                                 checked_actions=masks.checked)
        rollout.alive = self.alive_steps
        rollout.acting = self.acting_steps
        return rollout

    # ---------------------------------------------------------------- turn-based rows
    def _store_turn_outcome(self, t: int, acting: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
                            truncated: np.ndarray, infos: dict, next_state: torch.Tensor,
                            inputs_t: dict | None) -> None:
        """Step ``t``'s outcome for a turn-based env over all rows (``_credit_turns``). A truncated row's value
        reads its final observation with its state now (``next_state`` (S, L, R, W): an acting row's advanced
        state, a waiting row's held one) and its env copy's global state at its end."""

        def truncation_values(cut: np.ndarray) -> torch.Tensor:
            final_inputs = None if inputs_t is None else self._agent_inputs(infos.get("final_state"))
            return self._truncation_values(cut, infos, next_state, final_inputs)

        self._credit_turns(self.buffer, slice(0, self.num_envs), t, acting, reward, terminated, truncated,
                           truncation_values)

    def _credit_turns(self, buffer: RolloutBuffer, block: slice, t: int, acting: np.ndarray, reward: np.ndarray,
                      terminated: np.ndarray, truncated: np.ndarray,
                      truncation_values: Callable[[np.ndarray], torch.Tensor]) -> None:
        """Step ``t``'s outcome for the rows ``block`` of a turn-based env (arrays (R_b,), ``buffer`` over those
        rows): the acting rows' rewards and ends go to step t; a waiting row's go to its pending step (its last
        action, ``_pending``), as PettingZoo's cumulative rewards credit them. ``truncation_values(cut)`` gives
        V(final obs) (R_b,) of the rows in ``cut``. Rewards of a row that has not acted in its episode yet credit
        no action (they count in its episode return only)."""
        device, pending = self.device, self._pending[block]  # a view: the updates below are the collector's
        act = torch.as_tensor(acting, device=device)
        zero = torch.zeros((), device=device)

        def as_f(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        reward_t, term_t, trunc_t = as_f(reward), as_f(terminated), as_f(truncated)
        buffer.store_outcome(t, torch.where(act, reward_t, zero), torch.where(act, term_t, zero),
                             torch.where(act, trunc_t, zero))
        credit = np.flatnonzero(~acting & (pending >= 0))
        if credit.size:
            at, rows = torch.as_tensor(pending[credit], device=device), torch.as_tensor(credit, device=device)
            buffer.rewards[at, rows] += reward_t[rows]
            buffer.terminated[at, rows] = term_t[rows]
            buffer.truncated[at, rows] = trunc_t[rows]
        cut = truncated & ~terminated
        if cut.any():
            values = truncation_values(cut)
            buffer.truncation_values[t] = torch.where(act, values, zero)
            if credit.size:
                buffer.truncation_values[at, rows] = values[rows]
        ended = terminated | truncated
        pending[acting & ~ended] = t
        pending[ended] = -1

    def _hang_pending(self, buffer: RolloutBuffer, block: slice, bootstrap: torch.Tensor
                      ) -> tuple[torch.Tensor, dict | None]:
        """At the rollout's end, for the rows ``block`` (``buffer`` over them): the rows waiting with a pending step
        (its reward may still arrive) leave it out of this rollout's training and GAE, and bootstrap from its
        stored value (V of the agent's next turn); the step is carried into the next rollout's step 0.

        Returns:
            The bootstrap values (R_b,), and the carried steps (``_place_carry`` writes them back), or None.
        """
        pending, acting_now = self._pending[block], self.envs.alive[block]
        rows_np = np.flatnonzero(~acting_now & (pending >= 0))
        at_np = pending[rows_np]
        pending[:] = -1  # an acting row's last transition is complete: its next value is the bootstrap
        if rows_np.size == 0:
            return bootstrap, None
        device = self.device
        at, rows = torch.as_tensor(at_np, device=device), torch.as_tensor(rows_np, device=device)
        alive_steps, acting_steps = self.alive_steps[:, block], self.acting_steps[:, block]  # views

        def take(x: torch.Tensor) -> torch.Tensor:
            return x[at, rows].clone()

        carry = {
            "rows": rows.clone(),
            "obs": tree_map(take, buffer.obs),
            "agent_inputs": None if buffer.agent_inputs is None else tree_map(take, buffer.agent_inputs),
            "states": buffer.states[at, :, :, rows].clone(),  # (K, S, L, W)
            **{name: take(getattr(buffer, name)) for name in _CARRIED},
            "training": take(alive_steps),
        }
        alive_steps[at, rows] = 0.0
        acting_steps[at, rows] = 0.0
        pending[rows_np] = 0  # where the next rollout holds them
        bootstrap = bootstrap.clone()
        bootstrap[rows] = buffer.values[at, rows]
        return bootstrap, carry

    def _place_carry(self, buffer: RolloutBuffer, block: slice, carry: dict | None) -> None:
        """Write the carried pending steps of the rows ``block`` (``_hang_pending``) into ``buffer``'s step 0;
        the other rows' step 0 is empty (zero, not acting, not training)."""
        tree_map(lambda x: x[0].zero_(), buffer.obs)
        if buffer.agent_inputs is not None:
            tree_map(lambda x: x[0].zero_(), buffer.agent_inputs)
        buffer.states[0].zero_()
        for name in _CARRIED:
            getattr(buffer, name)[0].zero_()
        alive_steps, acting_steps = self.alive_steps[:, block], self.acting_steps[:, block]
        alive_steps[0] = 0.0
        acting_steps[0] = 0.0
        if carry is None:
            return
        rows = carry["rows"]

        def put(dst: torch.Tensor, src: torch.Tensor) -> None:
            dst[0, rows] = src

        tree_map2(put, buffer.obs, carry["obs"])
        if buffer.agent_inputs is not None:
            tree_map2(put, buffer.agent_inputs, carry["agent_inputs"])
        buffer.states[0][:, :, rows] = carry["states"].permute(1, 2, 0, 3)
        for name in _CARRIED:
            put(getattr(buffer, name), carry[name])
        alive_steps[0, rows] = carry["training"]
        acting_steps[0, rows] = 1.0

    # ---------------------------------------------------------------- what a subclass changes (self-play)
    def _act(self, obs_t: Any, state: torch.Tensor, inputs_t: dict | None,
             alive: torch.Tensor) -> tuple[StepOutput, torch.Tensor, torch.Tensor]:
        """One batched policy step over all R rows (inside inference mode).

        Args:
            obs_t: observation leaves (R, ...); state (S, L, R, W) with spawns zeroed; alive (R,) float.

        Returns:
            The policy's output (stored in the rollout), the actions the rows take (R, *action_shape), and the
            state after the step (S, L, R, W): an absent row's state is held, it does not advance on the zero
            observation.
        """
        out = self.policy.step(obs_t, state, self.next_episode_start, generator=self.generator, noise=self.noise,
                               agent_inputs=inputs_t)
        return out, out.action, torch.where(alive.view(1, 1, -1, 1) > 0, out.state, state)

    def _training_steps(self, alive: torch.Tensor) -> torch.Tensor:
        """The rows (R,) whose step now is a training step (``Rollout.alive``): every live row."""
        return alive

    def _reported_episodes(self, done: np.ndarray) -> np.ndarray:
        """Which ended agent episodes (R,) bool enter ``episode_returns``: all of them."""
        return done

    def _after_step(self, reward: np.ndarray, env_done: np.ndarray) -> None:
        """Called at the end of every step with its rewards (R,) and which env copies' episodes ended (N,)."""

    def _check_obs(self, obs, t: int, reward: np.ndarray | None = None) -> None:
        """Raise NonFiniteError for a NaN / inf reward or observation (multi-agent runs stop on them)."""
        bad_reward = reward is not None and not math.isfinite(float(reward.sum()))
        bad_obs = any(not np.isfinite(leaf).all() for leaf in _float_leaves(obs))
        if not (bad_reward or bad_obs):
            return
        what = "reward" if bad_reward else "observation"
        raise NonFiniteError(f"a multi-agent env returned a non-finite {what} at step {t} of this rollout"
                             f"{' (reset)' if t < 0 else ''}; fix the env.", 0, t)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self, snapshot_envs: bool = True) -> dict:
        state = super().state_dict(snapshot_envs=False)
        state["tensors"]["alive"] = self.alive.clone()
        if self.turn_based:  # the pending steps carried into the next rollout, for an exact resume
            state["tensors"]["turns"] = {"pending": torch.as_tensor(self._pending.copy()), "carry": self._carry}
        if snapshot_envs:
            state["resume"] = self._resume_state()
        return state

    def _resume_state(self) -> dict:
        snap = self.envs.snapshot()
        error = snap.get("error")
        return {
            "next_obs": encode(self.next_obs, "next_obs"),
            "episode_return": encode(self._episode_return),
            "episode_length": encode(self._episode_length),
            "envs": None if error else snap,
            "reason": f"the env cannot be snapshotted: {error}" if error else None,
        }

    def load_state_dict(self, state: dict) -> str | None:
        """As ``VectorCollector.load_state_dict``; an inexact resume resets every env copy (all agents spawn)."""
        data, resume = self._restore_sampler_and_state(state), state.get("resume")
        if data is None:
            return "the checkpoint holds no collector state"
        reason = "the checkpoint holds no env state" if resume is None else resume.get("reason")
        if resume is not None and resume.get("envs") is not None:
            error = self.envs.restore(resume["envs"])
            if error is None:
                self.next_obs = decode(resume["next_obs"], None, "next_obs")
                self._episode_return = decode(resume["episode_return"])
                self._episode_length = decode(resume["episode_length"])
                self.next_episode_start = data["next_episode_start"].to(self.device)
                self.alive = data["alive"].to(self.device)
                if self.turn_based:
                    turns = data["turns"]
                    self._pending = turns["pending"].numpy().copy()
                    self._carry = None if turns["carry"] is None else tree_map(
                        lambda x: None if x is None else x.to(self.device), turns["carry"])
                return None
            reason = f"restoring the envs failed ({error})"
        self._reset_envs(self.seed)
        return reason or "unknown"


class MultiPolicyCollector(MultiAgentCollector):
    """A ``MultiAgentCollector`` with one policy per block of rows (``envs.policies``, from ``--policy-map``).

    Every step runs one batched call per policy over that policy's rows (absent rows included, as with one
    policy) and stores it in that policy's buffer; the hidden-state rules are those of ``MultiAgentCollector``,
    row by row. ``start`` takes the policies by name, ``collect`` returns ``{name: Rollout}`` (each with its own
    ``alive``), and the actions are sampled from one generator, policy after policy.

    The policies share one recurrent state tensor over all R rows (``state``, (S, L, R, W)), each owning its
    block, so ``state_dict`` and resume read as with one policy; ``state_dict`` keeps each policy's correlated
    sampling noise as ``"sampling_noise/<name>"``.
    """

    def __init__(self, envs: MultiAgentVectorEnv, num_steps: int, noise_correlation: float = 0.0):
        super().__init__(envs, num_steps, noise_correlation)
        self.policy_rows: list[PolicyRows] = envs.policies
        self.noises = {block.name: CorrelatedNoise(noise_correlation) if noise_correlation > 0 else None
                       for block in self.policy_rows}
        self.noise = None  # each policy draws from its own noise (``noises``)

    def use_noise(self, correlation: float) -> None:
        """Correlated sampling noise from now on, each policy its own (as ``VectorCollector.use_noise``)."""
        self.noises = {block.name: CorrelatedNoise(correlation) for block in self.policy_rows}

    def start(self, policies: dict[str, RecurrentActorCritic], device: torch.device, sample_seed: int,
              env_seed: int) -> None:
        shapes = {name: tuple(policy.state_shape) for name, policy in policies.items()}
        if len(set(shapes.values())) > 1:
            raise ConfigError(f"The policies' recurrent states differ in shape ({shapes}): with --core stack and no "
                              f"--encoder-sizes the state holds raw observations; give --encoder-sizes.")
        for block in self.policy_rows:
            agents = policies[block.name].agents
            if agents and tuple(agents) != block.agents:
                raise ValueError(f"policy {block.name!r} reads the slots of the agents {agents}, but drives "
                                 f"{block.agents}; build it with agents=block.agents")
        self.policies, self.device, self.seed = policies, device, env_seed
        self.policy = next(iter(policies.values()))  # the shared state's shape and dtype
        self.generator = torch.Generator(device).manual_seed(sample_seed)
        # Each policy's multi-agent inputs (``_block_inputs``): its agents' slots among its own agents, and with a
        # central critic the global state of each row's env copy.
        self._inputs_spaces = {block.name: self._inputs_space_of(policies[block.name]) for block in self.policy_rows}
        self._agent_index = torch.as_tensor(self.envs.policy_slot, device=device)
        self._reads_state = any(space is not None and "global_state" in space.spaces
                                for space in self._inputs_spaces.values())
        slots = self._first + self.num_steps  # turn-based: step 0 holds the carried pending steps
        self.buffers = {block.name: RolloutBuffer(slots, block.num_rows, block.observation_space,
                                                  policies[block.name].action_shape, policies[block.name].action_dtype,
                                                  policies[block.name].state_shape, device,
                                                  self._inputs_spaces[block.name])
                        for block in self.policy_rows}
        self.alive_steps = torch.zeros(slots, self.num_envs, device=device)
        self.acting_steps = torch.zeros(slots, self.num_envs, device=device) if self.turn_based else None
        self._reset_envs(env_seed)
        self.state = self.policy.initial_state(self.num_envs, device)

    def _rows_state(self, global_state=None) -> Any:
        """Every row's env copy's global state, leaves (R, ...) (``global_state`` (N, ...), default: the copies'
        state now); None when no policy reads it."""
        if not self._reads_state:
            return None
        per_copy = self.envs.global_state if global_state is None else global_state
        return obs_to_tensor(self.envs.copies_to_rows(per_copy), self.device)

    def _block_inputs(self, block: PolicyRows, rows_state: Any) -> dict | None:
        """The multi-agent inputs policy ``block.name`` reads over its rows, leaves (R_p, ...): each row's slot among
        the policy's agents and (``rows_state``, leaves (R, ...), from ``_rows_state``) its copy's global state;
        None when it reads none."""
        space = self._inputs_spaces[block.name]
        if space is None:
            return None
        inputs = {}
        if "agent_index" in space.spaces:
            inputs["agent_index"] = self._agent_index[block.rows]
        if "global_state" in space.spaces:
            inputs["global_state"] = tree_map(lambda x: x[block.rows], rows_state)
        return inputs

    def set_weights(self, weights: dict[str, Mapping[str, torch.Tensor]]) -> None:
        """Act with these weights from now on, by policy name (``{name: policy.state_dict()}``); the trainer's own
        policies' weights are the ones this collector acts with already."""
        for name, policy_weights in weights.items():
            own = self.policies[name].state_dict()
            if any(policy_weights[key].data_ptr() != tensor.data_ptr() for key, tensor in own.items()):
                self.policies[name].load_state_dict(policy_weights)

    def collect(self) -> dict[str, Rollout]:
        """``num_steps`` steps of every env copy; returns ``{policy name: Rollout}`` over that policy's rows, each
        with its ``alive`` (T, R_p) and its agents' episodes."""
        returns: dict[str, list[float]] = {block.name: [] for block in self.policy_rows}
        lengths: dict[str, list[int]] = {block.name: [] for block in self.policy_rows}
        masks = {block.name: IllegalActionCount() for block in self.policy_rows}
        if self.turn_based:
            carries = self._carry or {}
            for block in self.policy_rows:
                self._place_carry(self.buffers[block.name], block.rows, carries.get(block.name))
        for step in range(self.num_steps):
            t = step + self._first  # the buffer index (turn-based: after the carried step 0)
            acting = self.envs.alive.copy()  # the rows acting now, on the host
            actions, outs, next_states = [], [], []
            rows_state = self._rows_state()
            for block, obs in zip(self.policy_rows, self.next_obs, strict=True):
                policy, buffer, rows = self.policies[block.name], self.buffers[block.name], block.rows
                obs_t = obs_to_tensor(obs, self.device)
                inputs_t = self._block_inputs(block, rows_state)
                start, alive = self.next_episode_start[rows], self.alive[rows]
                with torch.inference_mode():
                    # The rules of MultiAgentCollector.collect, on this policy's rows: a spawn starts from zero
                    # state, in carry mode too; an absent row's state is held.
                    state = self.state[:, :, rows] * (1.0 - start).view(1, 1, -1, 1)
                    out = policy.step(obs_t, state, start, generator=self.generator, noise=self.noises[block.name],
                                      agent_inputs=inputs_t)
                    next_states.append(torch.where(alive.view(1, 1, -1, 1) > 0, out.state, state))
                buffer.store_step(t, obs_t, start, state, out.action, out.logprob, out.value, inputs_t)
                env_action = policy.env_action(out.action)
                if policy.masked:
                    masks[block.name] += count_illegal_actions(policy, obs, env_action, acting[rows], "agent row")
                actions.append(env_action)
                outs.append(out)
            self.alive_steps[t] = self.alive
            if self.turn_based:
                self.acting_steps[t] = self.alive
            self._episode_length += acting

            next_obs, reward, terminated, truncated, spawn, infos = self.envs.step(actions)
            self._check_obs(next_obs, step, reward)
            cut = truncated & ~terminated
            # A cut agent's value reads the global state at its end, before its env copy's autoreset (read once,
            # for every policy, where some row is cut).
            final_state = cache(partial(self._rows_state, infos.get("final_state")))
            for block, out, next_state in zip(self.policy_rows, outs, next_states, strict=True):
                buffer, rows = self.buffers[block.name], block.rows
                if self.turn_based:
                    # A waiting row's truncation value reads its held state (next_state), as with one policy.
                    truncation_values = partial(self._policy_truncation_values, block,
                                                final_obs=infos["final_obs"][rows], state=next_state,
                                                final_state=final_state)
                    self._credit_turns(buffer, rows, t, acting[rows], reward[rows], terminated[rows],
                                       truncated[rows], truncation_values)
                    continue
                buffer.store_outcome(
                    t,
                    torch.as_tensor(reward[rows], dtype=torch.float32, device=self.device),
                    torch.as_tensor(terminated[rows], dtype=torch.float32, device=self.device),
                    torch.as_tensor(truncated[rows], dtype=torch.float32, device=self.device),
                )
                if cut[rows].any():
                    buffer.truncation_values[t] = self._policy_truncation_values(
                        block, cut[rows], infos["final_obs"][rows], out.state, final_state)

            self._episode_return += reward
            done = terminated | truncated
            for i in np.flatnonzero(done):
                name = self.policy_rows[self.envs.policy_of_row[i]].name
                returns[name].append(float(self._episode_return[i]))
                lengths[name].append(int(self._episode_length[i]))
            self._episode_return[done] = 0.0
            self._episode_length[done] = 0
            self.next_obs = next_obs
            self.state = torch.cat(next_states, dim=2)
            self.next_episode_start = torch.as_tensor(spawn, dtype=torch.float32, device=self.device)
            self.alive = torch.as_tensor(self.envs.alive, dtype=torch.float32, device=self.device)
        rollouts, carries = {}, {}
        rows_state = self._rows_state()
        for block, obs in zip(self.policy_rows, self.next_obs, strict=True):
            policy, rows = self.policies[block.name], block.rows
            with torch.inference_mode():  # V(obs_T) with state_T, as _bootstrap_value
                bootstrap = policy.value(obs_to_tensor(obs, self.device), self.state[:, :, rows],
                                         self.next_episode_start[rows], self._block_inputs(block, rows_state))
            if self.turn_based:
                bootstrap, carries[block.name] = self._hang_pending(self.buffers[block.name], rows, bootstrap)
            rollout = self.buffers[block.name].rollout(bootstrap, returns[block.name], lengths[block.name],
                                                       illegal_actions=masks[block.name].illegal,
                                                       checked_actions=masks[block.name].checked)
            rollout.alive = self.alive_steps[:, rows]
            rollout.acting = None if self.acting_steps is None else self.acting_steps[:, rows]
            rollouts[block.name] = rollout
        if self.turn_based:
            self._carry = carries
        return rollouts

    def _policy_truncation_values(self, block: PolicyRows, cut: np.ndarray, final_obs: list,
                                  state: torch.Tensor, final_state: Callable[[], Any]) -> torch.Tensor:
        """``final_values`` for ``block``'s rows in ``cut`` (R_p,), with the state their episode reached ``state``
        (S, L, R_p, W) and the multi-agent inputs at their end (``final_state()``: every row's copy's global state
        before its autoreset, leaves (R, ...), or None): (R_p,)."""
        return final_values(self.policies[block.name], cut, final_obs, state,
                            self._block_inputs(block, final_state()), self.device)

    def _check_obs(self, obs, t: int, reward: np.ndarray | None = None) -> None:
        """``MultiAgentCollector._check_obs`` over every policy's observations."""
        for k, policy_obs in enumerate(obs):
            super()._check_obs(policy_obs, t, reward if k == 0 else None)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self, snapshot_envs: bool = True) -> dict:
        state = super().state_dict(snapshot_envs)
        for name, noise in self.noises.items():
            if noise is not None and noise.last is not None:
                state["tensors"][f"sampling_noise/{name}"] = noise.last.clone()
        return state

    def load_state_dict(self, state: dict) -> str | None:
        data = state.get("tensors") or {}
        for name, noise in self.noises.items():
            if noise is not None:
                saved = data.get(f"sampling_noise/{name}")
                noise.last = None if saved is None else saved.to(self.device)
        return super().load_state_dict(state)


__all__ = ["MULTIAGENT_BACKENDS", "BlockStep", "MultiAgentCollector", "MultiPolicyCollector", "act_by_policy",
           "is_multiagent", "multiagent_collector", "refuse_unsupported"]
