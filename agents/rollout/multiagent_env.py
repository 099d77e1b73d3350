"""Multi-agent envs (PettingZoo's Parallel API) as rows of a vector env: one row per agent slot.

Each of the N env copies has S = ``len(possible_agents)`` slots, one per possible agent name, so the policy,
the buffer and PPO see R = N x S rows, exactly as they see N single-agent envs. Row ``i * S + k`` is agent
``possible_agents[k]`` of env ``i``; with named policies (``--policy-map``) the rows are laid out policy by
policy instead, each policy's agents in every env copy as one block (``PolicyRows``). At each step a row is
*alive* (its agent is in ``env.agents``) or *absent*: an absent row has a zero observation, reward 0 and is
neither terminated nor truncated, and the collector holds its recurrent state (docs/architecture.md, "Agents
that come and go").

Episodes are per agent:

- An agent that appears (at reset, or again after it left) *spawns*: its row's ``spawn`` is 1.
- An agent whose step returns terminated / truncated, or that leaves ``env.agents``, ends its episode there
  (leaving without either flag counts as terminated). Its last observation is ``info["final_obs"][row]``, so a
  truncation bootstraps from V(final observation) with that agent's own state.
- When every agent is gone, or every live agent's episode ended, the env's episode ends: every live agent's
  episode ends with it (as a truncation where the env gave no flag), and the env is reset at once (SAME_STEP
  autoreset, as ``agents.rollout.vector_env``): the returned observations are the new episode's, whose agents
  spawn.

Turn-based envs (``metadata["turn_based"] = True``; AEC envs through ``agents.rollout.turns.AECTurns``) observe
only the agents that act next: a row whose agent is in ``env.agents`` without an observation is *waiting*
(``waiting`` (R,)); ``alive`` means acting now. A waiting row gets a zero observation (its state is held, as an
absent row's), but its rewards, terminations and truncations are reported at the step they arrive (a
truncation with ``final_obs``); it spawns at its first acting step of an episode, not at reset. An env without
the flag that leaves out a listed agent's observation is refused (``ConfigError``).

With ``with_state`` (a central critic) the env copies' global states (PettingZoo's ``state()`` over
``state_space``) are read after every reset and step: ``global_state`` is each copy's state now (it goes with the
next observations), and ``info["final_state"]`` each copy's state at the end of the step, before an autoreset (the
state a truncated agent's bootstrap value reads). ``copies_to_rows`` spreads a per-copy array over the copy's
rows, whatever policy owns them.

PettingZoo is the optional extra ``[multiagent]``; it is imported only here, only when a multi-agent env is made.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from agents.config import ConfigError, first_match, parse_policy_map
from agents.rollout.env_state import restore_env, snapshot_env
from agents.rollout.vector_env import import_env_modules
from agents.trees import tree_map, tree_stack

INSTALL_HINT = 'pip install -e ".[multiagent]"'


def _registered(env_id: str) -> str | None:
    """The ``"module:callable"`` that ``envs.multiagent.MULTIAGENT_ENVS`` gives ``env_id``, or None."""
    try:
        from envs.multiagent import MULTIAGENT_ENVS
    except ImportError:
        return None
    return MULTIAGENT_ENVS.get(env_id)


def multiagent_target(env_id: str) -> str | None:
    """``"module:callable"`` when ``env_id`` names a multi-agent env, else None (a Gymnasium id).

    A built-in multi-agent id (``envs.multiagent.MULTIAGENT_ENVS``), or ``module:callable`` where ``callable``
    is a Python name. Gymnasium's own ``module:EnvName-v0`` ids keep their meaning: their version suffix is not
    a Python name. Imports nothing but ``envs.multiagent``.
    """
    target = _registered(env_id)
    if target is not None:
        return target
    module, sep, name = env_id.partition(":")
    if sep and module and name.isidentifier() and all(part.isidentifier() for part in module.split(".")):
        return env_id
    return None


def is_multiagent(env_id: str) -> bool:
    """Whether ``env_id`` names a multi-agent env (``multiagent_target``)."""
    return multiagent_target(env_id) is not None


def resolve_factory(env_id: str, env_import: tuple[str, ...] | list[str] = ()) -> Callable[..., Any]:
    """The callable that makes ``env_id``'s ParallelEnv; its module is found as ``--env-import`` finds modules.

    Raises:
        ConfigError: pettingzoo is missing, or the module has no such callable.
        ModuleNotFoundError: the module cannot be found (the message says where it looked).
    """
    target = multiagent_target(env_id)
    if target is None:
        raise ConfigError(f"--env-id {env_id} is not a multi-agent env; pass a MODULE:CALLABLE that returns a "
                          f"pettingzoo ParallelEnv.")
    _require_pettingzoo(env_id)
    module_name, _, name = target.partition(":")
    import_env_modules([*env_import, module_name])
    factory = getattr(importlib.import_module(module_name), name, None)
    if not callable(factory):
        raise ConfigError(f"--env-id {env_id}: module {module_name} has no callable {name!r}; name a function or "
                          f"class that returns a pettingzoo ParallelEnv.")
    return factory


def _require_pettingzoo(env_id: str) -> None:
    try:
        import pettingzoo  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--env-id {env_id} is a multi-agent env, which needs pettingzoo: {INSTALL_HINT}.") from exc


def make_parallel_env(env_id: str, env_kwargs: dict | None = None, env_import: tuple[str, ...] | list[str] = (),
                      policy_map: str | None = None, check_policies: bool = True):
    """One ParallelEnv of ``env_id`` made with ``env_kwargs``, checked: a ParallelEnv whose agents of one policy
    (``policy_map``, ``assign_policies``; None: one policy for all) share one observation and one action space.
    ``check_policies=False`` skips that last check, for a caller that checks each agent's spaces against the
    policy that plays it itself (``mnemo match``: two players, each of its own policies).

    Raises:
        ConfigError: making it failed, it is not a ParallelEnv, an agent has no policy, or the agents of one
            policy have different spaces.
    """
    factory = resolve_factory(env_id, env_import)  # first: it says how to install pettingzoo when it is missing
    from pettingzoo import AECEnv, ParallelEnv

    from agents.rollout.turns import AECTurns

    kwargs = dict(env_kwargs or {})
    try:
        env = factory(**kwargs)
    except Exception as exc:
        raise ConfigError(f"Making {env_id} with --env-kwargs {json.dumps(kwargs)} failed: {type(exc).__name__}: "
                          f"{exc}. Check the env's arguments (its docstring lists them).") from exc
    if isinstance(env, AECEnv):
        env = AECTurns(env)  # turn by turn: only agent_selection acts (docs/multiagent.md, "Turn-based games")
    if not isinstance(env, ParallelEnv):
        raise ConfigError(f"--env-id {env_id} returned a {type(env).__name__}, not a pettingzoo ParallelEnv or "
                          f"AECEnv; make the callable return one of them.")
    agents = list(env.possible_agents)
    if not agents:
        raise ConfigError(f"--env-id {env_id}: the env lists no possible_agents; set possible_agents to every "
                          f"agent name that can ever act.")
    if check_policies:
        assign_policies(env, policy_map, env_id)  # agents of one policy share its spaces
    return env


@dataclass(frozen=True)
class PolicyRows:
    """One policy's share of a ``MultiAgentVectorEnv``'s rows: its agents' slots in every env copy, as one block.

    Rows are laid out policy by policy: the policy's rows are ``first_row .. first_row + num_copies x
    len(agents)``, env copy by env copy, so row ``first_row + i * len(agents) + j`` is ``agents[j]`` of env
    ``i``. With one policy, ``first_row`` is 0 and the layout is the single-policy ``i * S + k``.
    """

    name: str
    agents: tuple[str, ...]
    first_row: int
    num_rows: int
    observation_space: gym.Space
    action_space: gym.Space

    @property
    def rows(self) -> slice:
        """This policy's rows of an (R, ...) array."""
        return slice(self.first_row, self.first_row + self.num_rows)


SHARED_POLICY = "policy"  # the name of the one policy of a run without --policy-map


def assign_policies(env, policy_map: str | None, env_id: str = "") -> list[tuple[str, list[str]]]:
    """Which agents of ``env.possible_agents`` each policy drives: ``[(policy name, [agent, ...]), ...]``, the
    policies in the order ``policy_map`` first names them, the agents in ``possible_agents`` order.

    ``policy_map`` (``--policy-map``) patterns are tried in order and the first match wins; None gives every
    agent the one policy ``SHARED_POLICY``.

    Raises:
        ConfigError: an agent that no pattern matches, a policy that no agent gets, or agents of one policy whose
            observation or action spaces differ.
    """
    agents = list(env.possible_agents)
    if policy_map is None:
        groups = {SHARED_POLICY: agents}
        fix = "give them the same spaces (pad the smaller ones), or give them different policies (--policy-map)"
    else:
        mapping = parse_policy_map(policy_map)
        groups = {name: [] for _, name in mapping}
        for agent in agents:
            name = first_match(mapping, agent)
            if name is None:
                raise ConfigError(f"--env-id {env_id}: no --policy-map pattern matches agent {agent!r}; add a "
                                  f"pattern for it (e.g. '{agent}={mapping[0][1]}' or '*=NAME' last).")
            groups[name].append(agent)
        for name, members in groups.items():
            if not members:
                raise ConfigError(f"--env-id {env_id}: --policy-map gives policy {name!r} no agent (agents: "
                                  f"{agents}); fix its pattern or drop it.")
        fix = "give them the same spaces (pad the smaller ones), or map them to different policies in --policy-map"
    for name, members in groups.items():
        obs_space, act_space = env.observation_space(members[0]), env.action_space(members[0])
        for agent in members[1:]:
            if env.observation_space(agent) != obs_space or env.action_space(agent) != act_space:
                which = "observation" if env.observation_space(agent) != obs_space else "action"
                raise ConfigError(f"--env-id {env_id}: agents {members[0]!r} and {agent!r} share policy {name!r} but "
                                  f"have different {which} spaces; {fix}.")
    return list(groups.items())


def is_turn_based(env) -> bool:
    """Whether ``env`` declares the turn-based convention (``metadata["turn_based"]``, docs/multiagent.md)."""
    return bool((getattr(env, "metadata", None) or {}).get("turn_based", False))


def _zeros_like_space(space: gym.Space) -> Any:
    """A zero observation of ``space`` (the observation an absent row gets)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: _zeros_like_space(s) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_zeros_like_space(s) for s in space.spaces)
    return np.zeros(space.shape or (), dtype=space.dtype)


class MultiAgentVectorEnv:
    """N ParallelEnvs as R = N x S rows, in SAME_STEP autoreset (see the module docstring).

    ``reset`` and ``step`` return numpy arrays over rows; ``alive`` (R,) bool says which rows' agents are in
    their env now (``next_obs`` is theirs), ``spawn`` (R,) bool which of them begin an episode with it.

    ``policies`` holds each policy's rows (``PolicyRows``; one block covering every row without a
    ``policy_map``). With named policies (``policy_map``) their observations can differ in space, so ``reset``
    / ``step`` return the observations as a list with one tree per policy, and ``step`` takes the actions as a
    list with one array per policy; without, both are a single tree / array over all R rows.

    Args:
        envs: N ParallelEnvs made the same way (``make_parallel_env``); closed by ``close``.
        policy_map: ``--policy-map`` (``assign_policies``); None: one policy for every agent.
        with_state: read every copy's global state (``state()``) after each reset and step (see the module
            docstring); each copy's state goes to all its rows, whatever their policy.

    Raises:
        ConfigError: ``with_state`` and the env has no ``state()`` or ``state_space``.
    """

    def __init__(self, envs: list, env_id: str = "", policy_map: str | None = None, with_state: bool = False):
        self.envs, self.env_id, self.with_state = envs, env_id, with_state
        self.num_copies = len(envs)
        self.agent_names = list(envs[0].possible_agents)
        self.slots = len(self.agent_names)
        self.num_envs = self.num_copies * self.slots
        self.policies: list[PolicyRows] = []
        self._slot: dict[str, tuple[int, int, int]] = {}  # agent -> (first row, agents of its policy, index there)
        first = 0
        for name, agents in assign_policies(envs[0], policy_map, env_id):
            block = PolicyRows(name, tuple(agents), first, self.num_copies * len(agents),
                               envs[0].observation_space(agents[0]), envs[0].action_space(agents[0]))
            self.policies.append(block)
            self._slot.update({agent: (first, len(agents), j) for j, agent in enumerate(agents)})
            first += block.num_rows
        self._env_rows = [[self._row(i, agent) for agent in self.agent_names] for i in range(self.num_copies)]
        # (R,) each row's policy, an index into ``policies``.
        self.policy_of_row = np.concatenate([np.full(block.num_rows, k) for k, block in enumerate(self.policies)])
        # Named policies: observations and actions travel per policy (one tree / array each); one policy's spaces
        # are every row's.
        self.per_policy = policy_map is not None
        self.single_observation_space = None if self.per_policy else self.policies[0].observation_space
        self.single_action_space = None if self.per_policy else self.policies[0].action_space
        self._zero_obs = [_zeros_like_space(block.observation_space) for block in self.policies]
        self.alive = np.zeros(self.num_envs, dtype=bool)
        # Turn-based envs (``metadata["turn_based"]``): rows in their episode that do not act now, and rows that
        # acted in their running episode (a waiting agent spawns at its first acting step, not at reset).
        self.turn_based = is_turn_based(envs[0])
        self.waiting = np.zeros(self.num_envs, dtype=bool)
        self._started = np.zeros(self.num_envs, dtype=bool)
        # Each row's slot k (its agent is possible_agents[k]) and env copy i.
        self.agent_index = np.zeros(self.num_envs, dtype=np.int64)
        self.copy_of_row = np.zeros(self.num_envs, dtype=np.int64)
        for i, rows in enumerate(self._env_rows):
            self.agent_index[rows], self.copy_of_row[rows] = np.arange(self.slots), i
        # Each row's slot j among its own policy's agents (its agent is block.agents[j]): the agent-index input and
        # the central critic's slot one-hot. With one policy its agents are possible_agents, so j is k.
        self.policy_slot = np.concatenate([np.tile(np.arange(len(block.agents)), self.num_copies)
                                           for block in self.policies])
        self.state_space = None
        if with_state:
            env = envs[0]
            if not callable(getattr(env, "state", None)) or not isinstance(getattr(env, "state_space", None),
                                                                           gym.Space):
                raise ConfigError(f"--central-critic needs the env's global state, but {env_id} has no state() and "
                                  f"state_space (PettingZoo's convention); add both to the env, or drop "
                                  f"--central-critic.")
            self.state_space = env.state_space
        self.global_state: Any = None  # (N, *state_shape) with_state: each copy's state now

    def copies_to_rows(self, per_copy: Any) -> Any:
        """A tree of per-copy arrays (N, ...) -> the same for every row (R, ...): each copy's entry for its S
        rows."""
        return tree_map(lambda x: np.asarray(x)[self.copy_of_row], per_copy)

    def _read_states(self) -> Any:
        return tree_stack([env.state() for env in self.envs])

    def _row(self, env_index: int, agent: str) -> int:
        slot = self._slot.get(agent)
        if slot is None:
            raise RuntimeError(f"env {env_index} has agent {agent!r}, which is not in its possible_agents "
                               f"{self.agent_names}; list every agent that can ever act there.")
        first, width, j = slot
        return first + env_index * width + j

    def env_rows(self, env_index: int) -> list[int]:
        """The rows of env ``env_index``'s agents, in ``possible_agents`` order."""
        return self._env_rows[env_index]

    def _rows_obs(self, per_row: list) -> Any:
        blocks = [tree_stack([zero if o is None else o for o in per_row[block.rows]])
                  for block, zero in zip(self.policies, self._zero_obs, strict=True)]
        return blocks if self.per_policy else blocks[0]

    def _action_of_row(self, actions: np.ndarray | Sequence[np.ndarray]) -> Callable[[int], Any]:
        """Row -> its action, from one array over all rows or (named policies) one array per policy."""
        if not self.per_policy:
            return actions.__getitem__

        def action(row: int):
            k = self.policy_of_row[row]
            return actions[k][row - self.policies[k].first_row]

        return action

    def reset(self, seed: int | None = None) -> tuple[Any, np.ndarray]:
        """Reset every env (env i with ``seed + i``); returns (obs over rows, spawn (R,) bool)."""
        per_row: list = [None] * self.num_envs
        self.alive[:] = False
        for i, env in enumerate(self.envs):
            self._reset_one(i, env, None if seed is None else seed + i, per_row)
        if self.with_state:
            self.global_state = self._read_states()
        return self._rows_obs(per_row), self.alive.copy()

    def _reset_one(self, i: int, env, seed: int | None, per_row: list) -> None:
        obs, _ = env.reset(seed=seed)
        rows = self.env_rows(i)
        self.alive[rows] = False
        self.waiting[rows] = False
        self._started[rows] = False
        self._place(i, env.agents, obs, per_row)
        if self.turn_based:
            self._started[rows] = self.alive[rows]

    def _place(self, i: int, agents: list[str], obs: dict, per_row: list) -> None:
        """Mark env ``i``'s listed ``agents`` acting (they have an observation, put in ``per_row``) or waiting."""
        for agent in agents:
            row = self._row(i, agent)
            if agent in obs:
                per_row[row], self.alive[row] = obs[agent], True
            elif self.turn_based:
                self.waiting[row] = True
            else:
                raise ConfigError(f"{self.env_id or 'the env'} lists agent {agent!r} in env.agents but gave it no "
                                  f"observation; an env where only some agents act each step sets "
                                  f"metadata['turn_based'] = True (docs/multiagent.md, 'Turn-based games').")

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Act for every alive row (the actions of absent rows are ignored).

        Returns:
            next_obs (rows), reward, terminated, truncated (R,), spawn (R,) bool, and
            ``{"final_obs": [obs or None] * R, "env_done": (N,) bool}``: the last observation of each agent whose
            episode ended here, and which envs' own episodes ended here (those envs were reset); with
            ``with_state`` also ``"final_state"`` (N, *state_shape): each copy's state at the end of the step,
            before its autoreset. ``self.alive`` is the rows alive after the step (``self.global_state`` each
            copy's state after it).
        """
        if self.turn_based:
            return self._step_turns(actions)
        r = self.num_envs
        reward = np.zeros(r, dtype=np.float64)
        terminated, truncated = np.zeros(r, dtype=bool), np.zeros(r, dtype=bool)
        spawn = np.zeros(r, dtype=bool)
        final_obs: list = [None] * r
        env_done = np.zeros(self.num_copies, dtype=bool)
        per_row: list = [None] * r
        was_alive = self.alive.copy()
        action_of = self._action_of_row(actions)
        final_states = []
        for i, env in enumerate(self.envs):
            rows = self.env_rows(i)
            acting = [(a, row) for a, row in zip(self.agent_names, rows, strict=True) if was_alive[row]]
            obs, rewards, terms, truncs, _ = env.step({a: action_of(row) for a, row in acting})
            if self.with_state:
                final_states.append(env.state())
            present = set(env.agents)
            ended = self._read_outcomes(acting, (obs, rewards, terms, truncs), present,
                                        (reward, terminated, truncated, final_obs))
            self.alive[rows] = False
            if not present or (ended and present <= ended):
                # The env's episode is over: agents still listed end with it (bootstrapped), then reset.
                for agent, row in acting:
                    if agent in present and agent not in ended:
                        truncated[row], final_obs[row] = True, obs.get(agent)
                self._reset_one(i, env, None, per_row)
                env_done[i] = True
                spawn[rows] = self.alive[rows]
                continue
            self._place(i, env.agents, obs, per_row)
            for agent in env.agents:
                row = self._row(i, agent)
                spawn[row] = not was_alive[row] or terminated[row] or truncated[row]
        infos = self._step_infos(final_obs, env_done, final_states)
        return self._rows_obs(per_row), reward, terminated, truncated, spawn, infos

    def _step_infos(self, final_obs: list, env_done: np.ndarray, final_states: list) -> dict:
        """``step``'s infos (``final_obs``, ``env_done``, and with ``with_state`` each copy's ``final_state``,
        ``final_states``: its state at the end of the step); sets ``global_state`` (a reset copy's new state)."""
        infos: dict = {"final_obs": final_obs, "env_done": env_done}
        if self.with_state:
            infos["final_state"] = tree_stack(final_states)
            self.global_state = tree_stack([self.envs[i].state() if env_done[i] else final_states[i]
                                            for i in range(self.num_copies)])
        return infos

    def _read_outcomes(self, listed: list[tuple[str, int]], answer: tuple[dict, dict, dict, dict], present: set[str],
                       out: tuple[np.ndarray, np.ndarray, np.ndarray, list]) -> set[str]:
        """Write one env copy's step ``answer`` (obs, rewards, terminations, truncations by agent) for its
        ``listed`` (agent, row) pairs into ``out`` (reward, terminated, truncated (R,), final_obs [R]); returns
        the agents whose episode ended (a flag, or leaving ``present`` = ``env.agents``).

        Raises:
            RuntimeError: a truncated agent without its final observation (its bootstrap value needs it).
        """
        obs, rewards, terms, truncs = answer
        reward, terminated, truncated, final_obs = out
        ended = set()
        for agent, row in listed:
            reward[row] = float(rewards.get(agent, 0.0))
            term, trunc = bool(terms.get(agent, False)), bool(truncs.get(agent, False))
            if term or trunc or agent not in present:
                # Leaving without a flag is an end the env did not announce: no bootstrap.
                terminated[row], truncated[row] = term or not trunc, trunc and not term
                final_obs[row] = obs.get(agent)
                if truncated[row] and final_obs[row] is None:
                    raise RuntimeError(f"{self.env_id or 'the env'} truncated agent {agent!r} without its final "
                                       f"observation; return it in the step's observations.")
                ended.add(agent)
        return ended

    def _step_turns(self, actions) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """``step`` for a turn-based env: the acting rows act; rewards and ends are reported for every row in
        its episode, acting or waiting; a row spawns at its first acting step of an episode."""
        r = self.num_envs
        reward = np.zeros(r, dtype=np.float64)
        terminated, truncated = np.zeros(r, dtype=bool), np.zeros(r, dtype=bool)
        spawn = np.zeros(r, dtype=bool)
        final_obs: list = [None] * r
        env_done = np.zeros(self.num_copies, dtype=bool)
        per_row: list = [None] * r
        was_alive, was_in = self.alive.copy(), self.alive | self.waiting
        action_of = self._action_of_row(actions)
        final_states = []
        for i, env in enumerate(self.envs):
            rows = self.env_rows(i)
            listed = [(a, row) for a, row in zip(self.agent_names, rows, strict=True) if was_in[row]]
            obs, rewards, terms, truncs, _ = env.step({a: action_of(row) for a, row in listed if was_alive[row]})
            if self.with_state:
                final_states.append(env.state())
            present = set(env.agents)
            ended = self._read_outcomes(listed, (obs, rewards, terms, truncs), present,
                                        (reward, terminated, truncated, final_obs))
            self.alive[rows], self.waiting[rows] = False, False
            if not present or (ended and present <= ended):
                self._reset_one(i, env, None, per_row)
                env_done[i] = True
                spawn[rows] = self.alive[rows]
                continue
            self._started[rows] &= ~(terminated[rows] | truncated[rows])
            self._place(i, env.agents, obs, per_row)
            spawn[rows] = self.alive[rows] & ~self._started[rows]
            self._started[rows] |= self.alive[rows]
        infos = self._step_infos(final_obs, env_done, final_states)
        return self._rows_obs(per_row), reward, terminated, truncated, spawn, infos

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> dict:
        """``{"snapshots": [...]}`` of every env's plain attributes (``agents.rollout.env_state``, one layer, or
        its ``mnemo_get_state``), or ``{"error": why not}``."""
        try:
            snap = {"snapshots": [snapshot_env(env) for env in self.envs], "alive": self.alive.tolist()}
            if self.turn_based:
                snap.update(waiting=self.waiting.tolist(), started=self._started.tolist())
            return snap
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def restore(self, state: dict) -> str | None:
        """Write ``snapshot()``'s output back; None on success, else why not."""
        try:
            for env, snap in zip(self.envs, state["snapshots"], strict=True):
                restore_env(env, snap)
            self.alive[:] = np.asarray(state["alive"], dtype=bool)
            if self.turn_based:
                self.waiting[:] = np.asarray(state["waiting"], dtype=bool)
                self._started[:] = np.asarray(state["started"], dtype=bool)
            if self.with_state:
                self.global_state = self._read_states()  # a function of the restored envs
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_multiagent_vector_env(env_id: str, num_envs: int, env_kwargs: dict | None = None,
                               env_import: tuple[str, ...] | list[str] = (),
                               policy_map: str | None = None, with_state: bool = False) -> MultiAgentVectorEnv:
    """``num_envs`` copies of the multi-agent env ``env_id`` as rows (``MultiAgentVectorEnv``), laid out by the
    policies of ``policy_map`` (None: one)."""
    envs = [make_parallel_env(env_id, env_kwargs, env_import, policy_map) for _ in range(num_envs)]
    return MultiAgentVectorEnv(envs, env_id, policy_map, with_state)

