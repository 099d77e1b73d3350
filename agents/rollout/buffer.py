"""Rollout storage, GAE, and cutting the rollout into sequences for truncated BPTT.

Layout: every per-step array is ``(T, N, ...)`` for T steps of N envs; the
recurrent state stored at step t is the state *before* obs_t (see policy.py),
kept as ``states: (T, S, L, N, H)`` so that a step's state is one slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium import spaces

from agents.trees import Tree, tree_map


def _empty_like_space(space: spaces.Space, lead: tuple[int, ...], device: torch.device) -> Tree:
    """Zero tensors (*lead, *shape) for every leaf of an observation space, in the leaf's dtype."""
    if isinstance(space, spaces.Dict):
        return {k: _empty_like_space(s, lead, device) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_empty_like_space(s, lead, device) for s in space.spaces)
    dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
    if dtype == torch.float64:
        dtype = torch.float32
    return torch.zeros(*lead, *(space.shape or ()), dtype=dtype, device=device)


@dataclass
class Rollout:
    """T steps of N envs as a collector hands them to the trainer: plain tensors, no live env or policy.

    Attributes:
        obs: leaves (T, N, *shape); ``obs[t]`` is what the policy saw at step t.
        actions: (T, N, *action_shape); logprobs, values: (T, N), as the acting policy computed them.
        rewards, terminated, truncated: (T, N) float, the env's answer to ``actions[t]``.
        truncation_values: (T, N) V(final obs) where step t ended in a truncation, computed with the
            state that episode reached; 0 elsewhere.
        episode_starts: (T, N) 1 where ``obs[t]`` begins an episode.
        states: (T, S, L, N, H) the recurrent state before ``obs[t]`` (sequence start states come from it).
        bootstrap_value: (N,) V(obs_T) of the observation after the rollout, with state_T.
        episode_returns, episode_lengths: the episodes that finished during the rollout.
        nonfinite_skips: env steps ended for NaN / inf output (``--on-nonfinite skip``).
        alive: (T, N) float, 1 where row n's agent acted at step t; None for single-agent envs (every step
            real). Multi-agent rows (``agents.rollout.multiagent_env``) are absent between an agent's end and
            its next spawn: those steps make no training row and enter no statistic.
        agent_inputs: multi-agent inputs beside the observation, leaves (T, N, ...) (``"agent_index"``, and with
            a central critic ``"global_state"``: agents/model/policy.py), as the policy got them at step t; None
            where the policy reads none.
        illegal_actions: for a masked env (docs/action_masks.md), the env actions of the rollout that the mask
            the env gave forbade (each checked on the host before the env saw it); 0 otherwise.
        checked_actions: how many env actions were checked against masks (every live row's, opponents' included
            with --self-play); 0 for an unmasked env.
        acting: (T, N) float for turn-based envs, 1 at each row's own turns whose transition is complete (its
            reward and next value known: GAE runs over these steps, ``compute_gae``); None otherwise. A
            turn-based rollout has T = num_steps + 1: step 0 holds the transitions carried from the previous
            rollout, whose reward was still arriving when it ended (docs/architecture.md).
        values_int: (T, N) the intrinsic value head's V_int(obs_t) as the acting policy computed it
            (``--exploration``, agents/train/exploration.py); None without it.
        bootstrap_value_int: (N,) V_int(obs_T), with state_T; None without ``--exploration``.
    """

    obs: Tree
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    truncation_values: torch.Tensor
    episode_starts: torch.Tensor
    states: torch.Tensor
    bootstrap_value: torch.Tensor
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    nonfinite_skips: int = 0
    alive: torch.Tensor | None = None
    agent_inputs: Tree | None = None
    illegal_actions: int = 0
    checked_actions: int = 0
    acting: torch.Tensor | None = None
    values_int: torch.Tensor | None = None
    bootstrap_value_int: torch.Tensor | None = None

    def to(self, device: torch.device) -> Rollout:
        """The rollout on ``device`` (the tensors themselves where they are there already)."""
        tensors = {name: getattr(self, name).to(device) for name in _ROLLOUT_TENSORS}
        alive = None if self.alive is None else self.alive.to(device)
        inputs = None if self.agent_inputs is None else tree_map(lambda x: x.to(device), self.agent_inputs)
        return Rollout(obs=tree_map(lambda x: x.to(device), self.obs), **tensors,
                       episode_returns=self.episode_returns, episode_lengths=self.episode_lengths,
                       nonfinite_skips=self.nonfinite_skips, alive=alive, agent_inputs=inputs,
                       illegal_actions=self.illegal_actions, checked_actions=self.checked_actions,
                       acting=None if self.acting is None else self.acting.to(device),
                       values_int=None if self.values_int is None else self.values_int.to(device),
                       bootstrap_value_int=(None if self.bootstrap_value_int is None
                                            else self.bootstrap_value_int.to(device)))


_ROLLOUT_TENSORS = ("actions", "logprobs", "values", "rewards", "terminated", "truncated", "truncation_values",
                    "episode_starts", "states", "bootstrap_value")


class RolloutBuffer:
    """T steps x N envs of transitions, with the recurrent state before each step: a local collector's storage.

    Filled one step at a time (``store_step``, ``store_outcome``), then handed out as a ``Rollout`` whose
    tensors are the buffer's own (valid until the buffer is filled again).
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        observation_space: spaces.Space,
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        state_shape: tuple[int, int, int],
        device: torch.device,
        agent_inputs_space: spaces.Dict | None = None,
        intrinsic: bool = False,
    ):
        t, n = num_steps, num_envs
        self.num_steps, self.num_envs, self.device = t, n, device
        self.obs = _empty_like_space(observation_space, (t, n), device)
        self.actions = torch.zeros(t, n, *action_shape, dtype=action_dtype, device=device)
        self.logprobs = torch.zeros(t, n, device=device)
        self.values = torch.zeros(t, n, device=device)
        self.rewards = torch.zeros(t, n, device=device)
        self.terminated = torch.zeros(t, n, device=device)
        self.truncated = torch.zeros(t, n, device=device)
        # V(final observation) for steps that ended in truncation, else 0.
        self.truncation_values = torch.zeros(t, n, device=device)
        self.episode_starts = torch.zeros(t, n, device=device)
        s, layers, hidden = state_shape
        self.states = torch.zeros(t, s, layers, n, hidden, device=device)
        # Multi-agent inputs beside the observation (a Dict space of them), stored as observations are.
        self.agent_inputs = (None if agent_inputs_space is None
                             else _empty_like_space(agent_inputs_space, (t, n), device))
        # --exploration: the intrinsic value head's outputs, stored as the values are.
        self.values_int = torch.zeros(t, n, device=device) if intrinsic else None

    def store_step(
        self, t: int, obs: Tree, episode_start: torch.Tensor, state: torch.Tensor,
        action: torch.Tensor, logprob: torch.Tensor, value: torch.Tensor, agent_inputs: Tree | None = None,
        value_int: torch.Tensor | None = None,
    ) -> None:
        """Record what the policy saw and did at step t (obs and ``agent_inputs`` leaves (N, ...), state
        (S, L, N, W); ``value_int`` (N,) where the buffer keeps intrinsic values)."""
        _copy_into(self.obs, obs, t)
        if self.agent_inputs is not None:
            _copy_into(self.agent_inputs, agent_inputs, t)
        self.episode_starts[t] = episode_start
        self.states[t] = state
        self.actions[t] = action
        self.logprobs[t] = logprob
        self.values[t] = value
        if self.values_int is not None:
            self.values_int[t] = value_int

    def store_outcome(self, t: int, reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor) -> None:
        """Record what the env answered to the step-t action."""
        self.rewards[t] = reward
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        self.truncation_values[t] = 0.0

    def rollout(self, bootstrap_value: torch.Tensor, episode_returns: list[float], episode_lengths: list[int],
                nonfinite_skips: int = 0, illegal_actions: int = 0, checked_actions: int = 0,
                bootstrap_value_int: torch.Tensor | None = None) -> Rollout:
        """The filled buffer as a ``Rollout`` (no copy)."""
        return Rollout(self.obs, self.actions, self.logprobs, self.values, self.rewards, self.terminated,
                       self.truncated, self.truncation_values, self.episode_starts, self.states, bootstrap_value,
                       episode_returns, episode_lengths, nonfinite_skips, agent_inputs=self.agent_inputs,
                       illegal_actions=illegal_actions, checked_actions=checked_actions,
                       values_int=self.values_int, bootstrap_value_int=bootstrap_value_int)


def _copy_into(storage: Tree, value: Tree, t: int) -> None:
    """storage leaves (T, N, ...)[t] <- value leaves (N, ...)."""
    if isinstance(storage, dict):
        for key in storage:
            _copy_into(storage[key], value[key], t)
    elif isinstance(storage, tuple):
        for dst, src in zip(storage, value, strict=True):
            _copy_into(dst, src, t)
    else:
        storage[t].copy_(value)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    truncation_values: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    alive: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation that tells terminations from truncations.

    Step t's reward came from acting on obs_t. If the episode ended there:
    terminated -> the next value is 0; truncated -> it is V(final obs), the
    value of the observation the episode stopped at (``truncation_values[t]``).
    Either way the advantage does not flow back across the episode boundary.

    Args:
        rewards, values, terminated, truncated, truncation_values: (T, N).
        last_value: (N,), V(obs_T) for the observation after the rollout.
        alive: (T, N) 1 at the steps where row n acted (turn-based rows: its own turns), or None (every step).
            Given, each row's sequence is its acting steps alone: the next value of an acting step is the
            value of the row's next acting step (carried back across the steps between, or ``last_value``),
            the advantage flows only between acting steps, and the discount is one per own turn. Steps not
            acting get advantage 0. Where every step before a non-acting one is an episode end (agents that
            only come and go), the result is bitwise the one without ``alive``, masked.

    Returns:
        advantages (T, N) and returns = advantages + values (T, N).
    """
    if alive is not None:
        return _gae_over_turns(rewards, values, terminated, truncated, truncation_values, last_value, gamma,
                               gae_lambda, alive)
    t_len = rewards.shape[0]
    done = torch.maximum(terminated, truncated)
    next_values = torch.cat((values[1:], last_value.unsqueeze(0)))
    # Episode ended at t: replace the next episode's value by the bootstrap target (0 if terminated).
    next_values = torch.where(done > 0, truncation_values * (1.0 - terminated), next_values)
    deltas = rewards + gamma * next_values - values
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(last_value)
    for t in reversed(range(t_len)):
        last_gae = deltas[t] + gamma * gae_lambda * (1.0 - done[t]) * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def _gae_over_turns(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                    truncation_values: torch.Tensor, last_value: torch.Tensor, gamma: float, gae_lambda: float,
                    alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``compute_gae`` over each row's acting steps (``alive`` (T, N)); the same arithmetic per acting step."""
    done = torch.maximum(terminated, truncated)
    acting = alive > 0
    advantages = torch.zeros_like(rewards)
    next_value = last_value  # (N,) the value of each row's next acting step
    last_gae = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        target = torch.where(done[t] > 0, truncation_values[t] * (1.0 - terminated[t]), next_value)
        delta = rewards[t] + gamma * target - values[t]
        gae = delta + gamma * gae_lambda * (1.0 - done[t]) * last_gae
        advantages[t] = torch.where(acting[t], gae, torch.zeros_like(gae))
        last_gae = torch.where(acting[t], gae, last_gae)
        next_value = torch.where(acting[t], values[t], next_value)
    return advantages, advantages + values


@dataclass
class Sequences:
    """Where the rollout's sequences lie: M sequences of at most L steps, padded at the end.

    Attributes:
        time_index, env_index: (L, M) int64 positions in the (T, N) rollout (0 where padded).
        mask: (L, M) float, 1 at real steps.
        start_time, start_env: (M,) where each sequence starts (its stored start state).
    """

    time_index: torch.Tensor
    env_index: torch.Tensor
    mask: torch.Tensor
    start_time: torch.Tensor
    start_env: torch.Tensor

    @property
    def num_sequences(self) -> int:
        return self.mask.shape[1]


def make_sequences(episode_starts: np.ndarray, bptt_len: int, cut_at_episode_starts: bool,
                   alive: np.ndarray | None = None) -> Sequences:
    """Cut each env's T steps into sequences of at most ``bptt_len`` steps.

    A sequence starts at the rollout start, at every episode start when
    ``cut_at_episode_starts`` (reset mode), and after ``bptt_len`` steps. Since
    sequences never contain an episode start after their first step in reset
    mode, the update runs each minibatch as one fused recurrent call.

    Args:
        episode_starts: (T, N) bool/0-1.
        alive: (T, N) bool/0-1 for multi-agent rows, or None (every step real). Steps not alive are dropped
            and each sequence's kept steps move to its front in time order (``_drop_absent``): an absent
            step lies at the tail of a sequence (after the agent's end) or fills whole sequences, a turn-based
            row's waiting steps lie between its turns, where its state is held, so the kept steps run as the
            collector ran them.
    """
    if alive is not None:
        return _drop_absent(make_sequences(episode_starts, bptt_len, cut_at_episode_starts), alive)
    t_len, n_envs = episode_starts.shape
    starts = np.zeros((t_len, n_envs), dtype=bool)
    starts[0] = True
    if cut_at_episode_starts:
        starts |= episode_starts.astype(bool)
    # Steps since the last forced start, then a new sequence every bptt_len steps after it.
    times = np.arange(t_len)[:, None]
    last_start = np.maximum.accumulate(np.where(starts, times, 0), axis=0)
    position = (times - last_start) % bptt_len
    # Enumerate sequences env by env, in time order: env-major flattening.
    position_flat = position.T.reshape(-1)
    seq_id = np.cumsum(position_flat == 0) - 1
    num_seq = int(seq_id[-1]) + 1
    seq_len = np.bincount(seq_id, minlength=num_seq)
    max_len = int(seq_len.max())
    time_flat = np.tile(np.arange(t_len), n_envs)
    env_flat = np.repeat(np.arange(n_envs), t_len)
    time_index = np.zeros((max_len, num_seq), dtype=np.int64)
    env_index = np.zeros((max_len, num_seq), dtype=np.int64)
    mask = np.zeros((max_len, num_seq), dtype=np.float32)
    time_index[position_flat, seq_id] = time_flat
    env_index[position_flat, seq_id] = env_flat
    mask[position_flat, seq_id] = 1.0
    first = position_flat == 0
    return Sequences(
        time_index=torch.from_numpy(time_index),
        env_index=torch.from_numpy(env_index),
        mask=torch.from_numpy(mask),
        start_time=torch.from_numpy(time_flat[first]),
        start_env=torch.from_numpy(env_flat[first]),
    )


def _drop_absent(seqs: Sequences, alive: np.ndarray) -> Sequences:
    """``seqs`` without the steps where ``alive`` (T, N) is 0, each sequence's kept steps moved to its front
    (stable, so in time order); sequences left empty are removed, and each sequence starts at its first kept step.

    Where the kept steps of every sequence are a prefix of it (agents that come and go), the result is the
    prefix itself. The recurrent state is held across the dropped steps (absent or waiting), so the stored state
    of the first kept step is the state the sequence starts from.
    """
    keep = alive.astype(bool)[seqs.time_index.numpy(), seqs.env_index.numpy()] & (seqs.mask.numpy() > 0)
    kept = keep.any(axis=0)
    keep = keep[:, kept]
    # Stable sort of "not kept" puts each column's kept steps first, in their order.
    order = np.argsort(~keep, axis=0, kind="stable")
    time_index = np.take_along_axis(seqs.time_index.numpy()[:, kept], order, axis=0)
    env_index = np.take_along_axis(seqs.env_index.numpy()[:, kept], order, axis=0)
    front = np.take_along_axis(keep, order, axis=0)
    time_index, env_index = time_index * front, env_index * front  # padding points at step (0, 0), as before
    return Sequences(
        time_index=torch.from_numpy(np.ascontiguousarray(time_index)),
        env_index=torch.from_numpy(np.ascontiguousarray(env_index)),
        mask=torch.from_numpy(front.astype(np.float32)),
        start_time=torch.from_numpy(np.ascontiguousarray(time_index[0])),
        start_env=torch.from_numpy(np.ascontiguousarray(env_index[0])),
    )


@dataclass
class SequenceBatch:
    """Rollout data laid out as padded sequences: every tensor is (L, M, ...) except start_states.

    ``start_states`` is (S, L, M, W) (the core's layout, agents/model/cores.py): the stored state before each
    sequence's first step.
    ``start_time``, ``start_env`` (M,): where each sequence starts in the rollout (for recomputing its
    start state, ``ppo.refresh_start_states``); None where unknown.
    ``agent_inputs``: the rollout's multi-agent inputs (leaves (L, M, ...)), or None.
    ``values_int``, ``returns_int``: the stored intrinsic values and their GAE targets (L, M) with
    ``--exploration``; None without it.
    """

    obs: Tree
    actions: torch.Tensor
    episode_starts: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    start_states: torch.Tensor
    start_time: torch.Tensor | None = None
    start_env: torch.Tensor | None = None
    agent_inputs: Tree | None = None
    values_int: torch.Tensor | None = None
    returns_int: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """(M,) real steps per sequence."""
        return self.mask.sum(0).long()

    def select(self, ids: torch.Tensor, max_len: int | None = None) -> SequenceBatch:
        """The sequences ``ids``, trimmed to their first ``max_len`` steps (default: all)."""
        t = slice(0, max_len)
        return SequenceBatch(
            obs=tree_map(lambda x: x[t, ids], self.obs),
            actions=self.actions[t, ids],
            episode_starts=self.episode_starts[t, ids],
            logprobs=self.logprobs[t, ids],
            values=self.values[t, ids],
            advantages=self.advantages[t, ids],
            returns=self.returns[t, ids],
            mask=self.mask[t, ids],
            start_states=self.start_states[:, :, ids],
            start_time=None if self.start_time is None else self.start_time[ids],
            start_env=None if self.start_env is None else self.start_env[ids],
            agent_inputs=None if self.agent_inputs is None else tree_map(lambda x: x[t, ids], self.agent_inputs),
            values_int=None if self.values_int is None else self.values_int[t, ids],
            returns_int=None if self.returns_int is None else self.returns_int[t, ids],
        )


def length_buckets(lengths: np.ndarray, max_buckets: int = 4, call_cost: float = 64.0) -> list[np.ndarray]:
    """Group sequences by length so that padding costs little, as few groups as pay off.

    A fused recurrent call over M sequences padded to length L computes L * M
    steps whatever the real lengths: with short episodes most of that is
    padding. The recurrent kernels on CPU are compute bound at these sizes, so
    splitting a minibatch into a few length groups, each padded only to its own
    longest sequence, does less work at the price of one more call per group.
    The groups minimise ``sum(max_len * count) + call_cost * groups`` exactly
    (dynamic programming over the distinct lengths, at most ``max_buckets``).

    Args:
        lengths: (M,) real steps per sequence.
        call_cost: the fixed cost of one more fused call, in padded steps.

    Returns:
        Index arrays into ``lengths``, one per group, each sorted by length.
    """
    order = np.argsort(lengths, kind="stable")
    values, counts = np.unique(lengths[order], return_counts=True)
    k = len(values)
    prefix = np.concatenate([[0], np.cumsum(counts)])
    inf = float("inf")
    # best[b][j]: least cost covering the j shortest distinct lengths with b groups.
    best = np.full((max_buckets + 1, k + 1), inf)
    cut = np.zeros((max_buckets + 1, k + 1), dtype=np.int64)
    best[0][0] = 0.0
    for b in range(1, max_buckets + 1):
        for j in range(1, k + 1):
            for i in range(j):  # group covers distinct lengths i..j-1
                cost = best[b - 1][i] + values[j - 1] * (prefix[j] - prefix[i]) + call_cost
                if cost < best[b][j]:
                    best[b][j], cut[b][j] = cost, i
    b = int(np.argmin(best[:, k]))
    groups, j = [], k
    while j > 0:
        i = cut[b][j]
        groups.append(order[prefix[i]:prefix[j]])
        j, b = i, b - 1
    return groups[::-1]


def gather_sequences(
    buffer: Rollout | RolloutBuffer, seqs: Sequences, advantages: torch.Tensor, returns: torch.Tensor,
    returns_int: torch.Tensor | None = None,
) -> SequenceBatch:
    """Lay the rollout out as padded sequences, once per update (minibatches then only slice).

    ``returns_int`` (T, N): the intrinsic value targets with ``--exploration`` (the stored ``values_int`` travel
    with them); None without it."""
    device = buffer.states.device
    ti, ei = seqs.time_index.to(device), seqs.env_index.to(device)

    def take(x: torch.Tensor) -> torch.Tensor:
        return x[ti, ei]

    start_time, start_env = seqs.start_time.to(device), seqs.start_env.to(device)
    states = buffer.states[start_time, :, :, start_env]  # (M, S, L, H)
    return SequenceBatch(
        obs=tree_map(take, buffer.obs),
        actions=take(buffer.actions),
        # Padding copies step (0, 0); its episode start must not split the fused recurrent call.
        episode_starts=take(buffer.episode_starts) * seqs.mask.to(device),
        logprobs=take(buffer.logprobs),
        values=take(buffer.values),
        advantages=take(advantages),
        returns=take(returns),
        mask=seqs.mask.to(device),
        start_states=states.permute(1, 2, 0, 3).contiguous(),
        start_time=start_time,
        start_env=start_env,
        agent_inputs=None if buffer.agent_inputs is None else tree_map(take, buffer.agent_inputs),
        values_int=None if returns_int is None else take(buffer.values_int),
        returns_int=None if returns_int is None else take(returns_int),
    )
