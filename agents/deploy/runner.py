"""PolicyRunner: stateful inference for a game loop, one recurrent state per agent.

```python
from agents import PolicyRunner

runner = PolicyRunner.load("runs/tmaze")              # a run directory or a checkpoint file
obs, _ = env.reset(seed=0)
runner.reset()                                         # new episode
while True:
    action = runner.act(obs)                           # keeps its own recurrent state
    obs, reward, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        break

actions = runner.act(batch_obs, agent_ids=[3, 7, 9])   # many agents, one state per id (a list: a batch)
runner.reset(agent_ids=[7])                            # agent 7 starts a new episode
runner.remove([9])                                     # agent 9 left the game
runner.act(obs, agent_ids=("red", 2))                  # a tuple is ONE id, e.g. (team, slot)
```

Semantics (docs/architecture.md, "Hidden-state rules"): an agent's first ``act()``
after it joined or was ``reset()`` is an episode start and runs from the zero
state, exactly as ``policy.step(..., episode_start=1)`` does in reset mode.
The runner zeroes the state when ``reset()`` is called instead of at the next
step, which is the same thing and costs nothing per step. In carry mode
(``carry_across_episodes``) the trained policy kept its memory across episode
ends: do not call ``reset()`` between the episodes of one series; ``reset()``
still gives a fresh zero state (the start of a new series, as at the start of
training).

Multi-agent runs: a policy trained with ``--agent-index-input`` takes the one-hot of the agent's slot among
the env's ``possible_agents`` (a named policy of ``--policy-map``: among its own agents); the runner builds it
from the agent's id, which must then be its name there (``act(obs, agent_ids=["agent_0", ...])``). A policy
trained with ``--central-critic`` runs actor-only here: its critic needs the env's global state, so
``ActInfo.value`` is NaN and ``get_state`` holds the actor's state.

Speed: ``act()`` calls the network's pieces directly (each core's
``step_in_place``: ``torch.lstm_cell`` / ``torch.gru_cell`` per layer instead of
``nn.LSTM``, whose CPU path goes through oneDNN and costs ~50 us of setup per
call at one step, writing the new state into the storage), keeps every
agent's state in one preallocated tensor, and takes ``torch.from_numpy`` views
of float observations. The figures are in docs/runtime.md
(``benchmarks/runner_latency.py``). Results equal ``policy.step`` to float
rounding (~1e-7); actions are identical.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from agents.config import TrainConfig
from agents.deploy.agent_ids import (
    SINGLE_AGENT_ID,
    ActInfo,
    UnknownAgentError,
    as_id_list,
    check_distinct,
    check_hashable,
    is_id_batch,
)
from agents.deploy.obs_input import ObservationError, to_tensor_tree
from agents.model.cores import passes_through
from agents.model.policy import RecurrentActorCritic
from agents.run.checkpoint import LATEST, load_policy
from agents.spaces import is_image_space
from agents.trees import Tree, tree_stack


class PolicyRunner:
    """Stateful inference for a trained recurrent policy: observation in, action out, memory kept per agent.

    Args:
        policy: the trained policy (moved to ``device`` and put in eval mode).
        config: the run's config, kept for reference (``PolicyRunner.load`` fills it in).
        device: where the network runs ("cpu" is fastest for one agent and small nets).
        deterministic: default for ``act``: the most likely action (True) or a sampled one (False).
        seed: seeds the torch.Generator that sampled actions are drawn from (None: a random seed).
    """

    def __init__(
        self,
        policy: RecurrentActorCritic,
        config: TrainConfig | None = None,
        device: torch.device | str = "cpu",
        deterministic: bool = True,
        seed: int | None = None,
    ):
        self.device = torch.device(device)
        self.policy = policy.to(self.device).eval()
        self.config = config
        self.deterministic = deterministic
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.observation_space = policy.observation_space
        self.action_space = policy.action_space

        # A central critic reads env.state(), which a game loop does not give: the runner keeps the actor alone.
        self._actor_only = policy.central_critic
        cores = [policy.actor_core] if self._actor_only else policy.cores
        self._cores = [core for core in cores if not passes_through(core)]
        self._index_input = policy.config.agent_index_input
        self._encoder = _fast_mlp(policy.encoder)
        self._actor_mlp = _fast_mlp(policy.actor_mlp)
        self._critic_mlp = _fast_mlp(policy.critic_mlp)
        self._head_linear = _fast_mlp(policy.action_head.linear)
        self._shared_critic = policy.critic_core is None
        self._view_counts = [core.num_state_tensors * policy.state_shape[1] for core in self._cores]
        self._state_shape = policy.actor_state_shape if self._actor_only else policy.state_shape  # (S, L, W)
        self._slots: dict[Hashable, int] = {}
        self._free: list[int] = []  # a heap, so that agents joining together get neighbouring slots
        self._fresh: set[int] = set()  # slots whose next act() is an episode start
        self._views: dict[tuple[int, int], list[torch.Tensor]] = {}
        with torch.inference_mode():
            s, layers, hidden = self._state_shape
            self._storage = torch.zeros(s, layers, 0, hidden, device=self.device)
        # Fast path: one Box (non-image) observation as a numpy array of exactly the space's shape and dtype.
        space = self.observation_space
        self._fast_obs = isinstance(space, spaces.Box) and not is_image_space(space)
        self._obs_shape = tuple(space.shape) if self._fast_obs else None
        self._obs_dtype = np.dtype(space.dtype) if self._fast_obs else None

    @classmethod
    def load(
        cls,
        path_or_run_dir: str | Path,
        device: torch.device | str = "cpu",
        which: str = LATEST,
        deterministic: bool = True,
        seed: int | None = None,
        policy: str | None = None,
    ) -> PolicyRunner:
        """A runner for a checkpoint file or a run directory (its ``checkpoints/<which>``), loaded safely.

        ``policy`` names one policy of a run with named policies (``--policy-map``); without it such a run is
        refused with the names it has (a run of one policy takes None).
        """
        network, config = load_policy(path_or_run_dir, device=device, which=which, policy=policy)
        return cls(network, config, device=device, deterministic=deterministic, seed=seed)

    # ------------------------------------------------------------------ agents
    @property
    def agent_ids(self) -> tuple[Hashable, ...]:
        """The ids of the agents the runner keeps a state for, in the order they joined."""
        return tuple(self._slots)

    @property
    def carry_across_episodes(self) -> bool:
        """True when the policy was trained to keep its memory across episode ends (see module docstring)."""
        return bool(self.policy.config.carry_across_episodes)

    def reset(self, agent_ids: Hashable | Iterable[Hashable] | None = None) -> None:
        """Start a new episode: the next ``act()`` runs from the zero state (in reset and carry mode).

        An id the runner does not know (not yet acted, or removed) is skipped: its first ``act()`` starts
        from the zero state anyway, so a game may reset every agent at an episode start without tracking
        which of them have acted.

        Args:
            agent_ids: one id (a tuple such as ``(team, slot)`` is one id), or a list / range / array of
                ids; None resets every known agent.
        """
        if agent_ids is None:
            slots = list(self._slots.values())
        else:
            slots = [self._slots[i] for i in as_id_list(agent_ids) if i in self._slots]
        with torch.inference_mode():
            for slot in slots:
                self._storage[:, :, slot].zero_()
        self._fresh.update(slots)

    def remove(self, agent_ids: Hashable | Iterable[Hashable] | None = None) -> None:
        """Forget agents (they left the game); an id that comes back later starts fresh. None removes all."""
        ids = list(self._slots) if agent_ids is None else as_id_list(agent_ids)
        slots = self._known_slots(ids, "remove")
        with torch.inference_mode():
            for agent_id, slot in zip(ids, slots, strict=True):
                del self._slots[agent_id]
                self._storage[:, :, slot].zero_()
                self._fresh.discard(slot)
                heapq.heappush(self._free, slot)

    def starts_episode(self, agent_id: Hashable = SINGLE_AGENT_ID) -> bool:
        """Whether the agent's next ``act()`` is an episode start from the zero state (it has not acted since it
        joined, was ``reset()`` or ``remove()``d, or it is unknown)."""
        slot = self._slots.get(agent_id)
        return slot is None or slot in self._fresh

    def get_state(self, agent_id: Hashable = SINGLE_AGENT_ID) -> torch.Tensor:
        """A copy of one agent's recurrent state ``(S, L, W)`` (see agents/model/cores.py for the layout)."""
        (slot,) = self._known_slots([agent_id], "get_state")
        return self._storage[:, :, slot].clone()

    def set_state(self, agent_id: Hashable, state: torch.Tensor) -> None:
        """Overwrite one agent's recurrent state ``(S, L, W)``; an unknown id joins with this state."""
        state = torch.as_tensor(state)
        if tuple(state.shape) != tuple(self._state_shape):
            raise ValueError(f"set_state: expected a state of shape (S, L, H) = {tuple(self._state_shape)}, "
                             f"got {tuple(state.shape)}.")
        slot = self._slots.get(agent_id)
        if slot is None:
            slot = self._join(agent_id)
        with torch.inference_mode():
            self._storage[:, :, slot].copy_(state)
        self._fresh.discard(slot)

    # ------------------------------------------------------------------ acting
    def act(
        self,
        obs: Tree,
        agent_ids: Hashable | Sequence[Hashable] | np.ndarray | None = None,
        deterministic: bool | None = None,
        return_info: bool = False,
    ) -> Any:
        """Actions for one or many agents; advances each agent's recurrent state by one step.

        Args:
            obs: without ``agent_ids`` (or with a single id): ONE observation in the env's format.
                With a sequence of ``agent_ids``: a batch, as a vector env returns it (every leaf has a
                leading dim of ``len(agent_ids)``), or a list of single observations.
            agent_ids: None (agent ``SINGLE_AGENT_ID``), one hashable id (a tuple such as ``(team, slot)``
                is ONE id), or a list / range / array of distinct ids, one per observation. A new id joins
                with a fresh state.
            deterministic: the most likely action (True) or a sampled one; None uses the runner's default.
            return_info: also return an ``ActInfo`` (value estimate, log-probability, episode start).

        Returns:
            The action in the env's action-space format (numpy; Box actions clipped to the bounds), or for a
            batch an array with a leading dim ``B``; with ``return_info`` a tuple ``(action, ActInfo)``.

        Raises:
            ObservationError: wrong observation structure, shape, dtype or value, or a batch whose size
                differs from the number of ids.
            ValueError: duplicate ids in one call.
        """
        single = not is_id_batch(agent_ids)
        with torch.inference_mode():
            if single:
                x = self._single_obs(obs)
                ids = [SINGLE_AGENT_ID if agent_ids is None else agent_ids]
            else:
                ids = as_id_list(agent_ids)
                check_distinct(ids)
                x = self._batch_obs(obs, len(ids))
            agent_index = self._agent_index(ids) if self._index_input else None
            slots = [self._slots.get(i) for i in ids]
            slots = [self._join(i) if s is None else s for i, s in zip(ids, slots, strict=True)]

            actor_hidden, critic_hidden = self._advance(x, slots, agent_index)
            head = self.policy.action_head
            out = self._head_linear(self._actor_mlp(actor_hidden))
            legal = self.policy.legal_actions(x)  # a masked env's mask, from the observation as the env gave it
            det = self.deterministic if deterministic is None else deterministic
            if det and not return_info:
                dist, raw = None, head.greedy(out, legal)  # a categorical head skips building the distribution
            else:
                dist = head.distribution(out, legal)
                raw = dist.mode() if det else dist.sample(self.generator)
            action = head.to_env(head.shape_actions(raw))
            if self._fresh:
                starts = np.array([s in self._fresh for s in slots])
                self._fresh.difference_update(slots)
            else:
                starts = np.zeros(len(slots), dtype=bool)
            if not return_info:
                return action[0] if single else action
            if self._actor_only:
                value = np.full(len(slots), np.nan, dtype=np.float32)
            else:
                hidden = actor_hidden if self._shared_critic else critic_hidden
                value = self.policy.value_head(self._critic_mlp(hidden)).squeeze(-1).cpu().numpy()
            logprob = dist.log_prob(raw).cpu().numpy()
        if single:
            return action[0], ActInfo(float(value[0]), float(logprob[0]), bool(starts[0]))
        return action, ActInfo(value, logprob, starts)

    __call__ = act

    # ------------------------------------------------------------------ internals
    def _agent_index(self, ids: list[Hashable]) -> torch.Tensor:
        """The agents' slots (B,) among the policy's agents (``policy.agents``), from their names."""
        try:
            return torch.as_tensor([self.policy.slot_of(i) for i in ids], device=self.device)
        except KeyError as exc:
            raise UnknownAgentError(exc.args[0]) from None

    def _advance(self, obs: Tree, slots: list[int],
                 agent_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode obs (B, ...) (with the slot one-hot of ``agent_index`` (B,) where the policy reads it), run every
        core one step from the agents' states, store the new states.

        Returns the actor core's output (B, O) (the features for a core-less policy) and the critic core's.
        """
        pre = self.policy.preprocess(self.policy.encoder_obs(obs))
        if agent_index is not None:
            pre = torch.cat((pre, self.policy.agent_one_hot(agent_index)), dim=-1)
        x = self._encoder(pre)
        if not self._cores:
            return x, None
        batch = len(slots)
        start = slots[0]
        if slots[-1] - start == batch - 1 and (batch == 1 or slots == list(range(start, start + batch))):
            views, gathered, index = self._contiguous_views(start, batch), None, None
        else:  # agents scattered in storage: gather a copy, update it, scatter it back
            index = torch.as_tensor(slots, device=self.device)
            gathered = self._storage.index_select(2, index)
            s, layers = self._state_shape[:2]
            views = [gathered[i, layer] for i in range(s) for layer in range(layers)]
        outputs = []
        offset = 0  # index into views: state tensor i, slot l -> (i * L + l)
        for core, size in zip(self._cores, self._view_counts, strict=True):
            outputs.append(core.step_in_place(x, views[offset:offset + size]))
            offset += size
        if gathered is not None:
            self._storage.index_copy_(2, index, gathered)
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def _contiguous_views(self, start: int, batch: int) -> list[torch.Tensor]:
        """Views (B, W) into the storage for slots start..start+B, one per (state tensor, layer); cached."""
        views = self._views.get((start, batch))
        if views is None:
            s, layers = self._state_shape[:2]
            block = self._storage[:, :, start:start + batch]
            views = [block[i, layer] for i in range(s) for layer in range(layers)]
            self._views[(start, batch)] = views
        return views

    def _join(self, agent_id: Hashable) -> int:
        check_hashable(agent_id)
        if not self._free:
            self._grow()
        slot = heapq.heappop(self._free)
        self._slots[agent_id] = slot
        self._fresh.add(slot)  # its storage is zero: freed slots are zeroed, new ones are born zero
        return slot

    def _grow(self) -> None:
        with torch.inference_mode():
            s, layers, cap, hidden = self._storage.shape
            new_cap = max(8, 2 * cap)
            storage = torch.zeros(s, layers, new_cap, hidden, device=self.device)
            storage[:, :, :cap] = self._storage
        self._storage = storage
        self._views.clear()
        for slot in range(cap, new_cap):
            heapq.heappush(self._free, slot)

    def _known_slots(self, agent_ids: Hashable | Iterable[Hashable], what: str) -> list[int]:
        ids = as_id_list(agent_ids)
        unknown = [i for i in ids if i not in self._slots]
        if unknown:
            known = ", ".join(repr(i) for i in self._slots) or "none"
            raise UnknownAgentError(
                f"{what}: unknown agent id(s) {', '.join(repr(i) for i in unknown)}; known ids: {known}. "
                f"An agent becomes known at its first act().")
        return [self._slots[i] for i in ids]

    def _single_obs(self, obs: Tree) -> Tree:
        """One observation -> tensors with a batch dim of 1."""
        if (self._fast_obs and type(obs) is np.ndarray and obs.shape == self._obs_shape
                and obs.dtype == self._obs_dtype and obs.flags.writeable):
            return torch.from_numpy(obs).to(self.device).unsqueeze(0)
        return to_tensor_tree(obs, self.observation_space, None, self.device, "observation")

    def _batch_obs(self, obs: Tree, batch: int) -> Tree:
        if isinstance(obs, list):  # a list of single observations, one per agent
            if len(obs) != batch:
                raise ObservationError(f"observation: got {batch} agent_ids but a list of {len(obs)} observations; "
                                       f"expected one observation per id.")
            try:
                obs = tree_stack(obs) if obs else obs
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise ObservationError(f"Cannot stack the list of observations into a batch ({exc}).") from exc
        return to_tensor_tree(obs, self.observation_space, batch, self.device, "observation")


# --------------------------------------------------------------------------- helpers
def _fast_mlp(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same function as ``module`` (an MLP from ``agents.model.policy.mlp``) without nn.Module call overhead.

    Linear / Tanh / ReLU become direct functional calls on the module's own parameters (a per-layer
    saving of ~2 us at batch 1); anything else is called as the module itself.
    """
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []

    def add(m: nn.Module) -> None:
        if isinstance(m, nn.Sequential):
            for child in m:
                add(child)
        elif isinstance(m, nn.Linear):
            steps.append(partial(F.linear, weight=m.weight, bias=m.bias))
        elif isinstance(m, nn.Tanh):
            steps.append(torch.tanh)
        elif isinstance(m, nn.ReLU):
            steps.append(torch.relu)
        elif not isinstance(m, nn.Identity):
            steps.append(m)

    add(module)
    if len(steps) == 1:
        return steps[0]

    def run(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return run
