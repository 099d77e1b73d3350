"""Multi-agent envs (PettingZoo's Parallel API) as rows of a vector env: one row per agent slot.

Each of the N env copies has S = ``len(possible_agents)`` slots, one per possible agent name, so the policy,
the buffer and PPO see R = N x S rows, exactly as they see N single-agent envs. Row ``i * S + k`` is agent
``possible_agents[k]`` of env ``i``. At each step a row is *alive* (its agent is in ``env.agents``) or
*absent*: an absent row has a zero observation, reward 0 and is neither terminated nor truncated, and the
collector holds its recurrent state (docs/architecture.md, "Agents that come and go").

Episodes are per agent:

- An agent that appears (at reset, or again after it left) *spawns*: its row's ``spawn`` is 1.
- An agent whose step returns terminated / truncated, or that leaves ``env.agents``, ends its episode there
  (leaving without either flag counts as terminated). Its last observation is ``info["final_obs"][row]``, so a
  truncation bootstraps from V(final observation) with that agent's own state.
- When every agent is gone, or every live agent's episode ended, the env's episode ends: every live agent's
  episode ends with it (as a truncation where the env gave no flag), and the env is reset at once (SAME_STEP
  autoreset, as ``agents.rollout.vector_env``): the returned observations are the new episode's, whose agents
  spawn.

PettingZoo is the optional extra ``[multiagent]``; it is imported only here, only when a multi-agent env is made.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from agents.config import ConfigError
from agents.rollout.env_state import restore_env, snapshot_env
from agents.rollout.vector_env import import_env_modules
from agents.trees import tree_stack

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


def make_parallel_env(env_id: str, env_kwargs: dict | None = None, env_import: tuple[str, ...] | list[str] = ()):
    """One ParallelEnv of ``env_id`` made with ``env_kwargs``, checked: a ParallelEnv whose agents share one
    observation space and one action space (they share one policy).

    Raises:
        ConfigError: making it failed, it is not a ParallelEnv, or its agents' spaces differ.
    """
    factory = resolve_factory(env_id, env_import)  # first: it says how to install pettingzoo when it is missing
    from pettingzoo import ParallelEnv

    kwargs = dict(env_kwargs or {})
    try:
        env = factory(**kwargs)
    except Exception as exc:
        raise ConfigError(f"Making {env_id} with --env-kwargs {json.dumps(kwargs)} failed: {type(exc).__name__}: "
                          f"{exc}. Check the env's arguments (its docstring lists them).") from exc
    if not isinstance(env, ParallelEnv):
        raise ConfigError(f"--env-id {env_id} returned a {type(env).__name__}, not a pettingzoo ParallelEnv; make the "
                          f"callable return a ParallelEnv (an AEC env converts with pettingzoo.utils.aec_to_parallel).")
    agents = list(env.possible_agents)
    if not agents:
        raise ConfigError(f"--env-id {env_id}: the env lists no possible_agents; set possible_agents to every "
                          f"agent name that can ever act.")
    obs_space, act_space = env.observation_space(agents[0]), env.action_space(agents[0])
    for agent in agents[1:]:
        if env.observation_space(agent) != obs_space or env.action_space(agent) != act_space:
            which = "observation" if env.observation_space(agent) != obs_space else "action"
            raise ConfigError(f"--env-id {env_id}: agents {agents[0]!r} and {agent!r} have different {which} "
                              f"spaces; all agents share one policy, so give them the same spaces (pad the "
                              f"smaller ones).")
    return env


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

    Args:
        envs: N ParallelEnvs made the same way (``make_parallel_env``); closed by ``close``.
    """

    def __init__(self, envs: list, env_id: str = ""):
        self.envs, self.env_id = envs, env_id
        self.num_copies = len(envs)
        self.agent_names = list(envs[0].possible_agents)
        self.slots = len(self.agent_names)
        self.num_envs = self.num_copies * self.slots
        self.single_observation_space = envs[0].observation_space(self.agent_names[0])
        self.single_action_space = envs[0].action_space(self.agent_names[0])
        self._slot = {name: k for k, name in enumerate(self.agent_names)}
        self._zero_obs = _zeros_like_space(self.single_observation_space)
        self.alive = np.zeros(self.num_envs, dtype=bool)

    def _row(self, env_index: int, agent: str) -> int:
        slot = self._slot.get(agent)
        if slot is None:
            raise RuntimeError(f"env {env_index} has agent {agent!r}, which is not in its possible_agents "
                               f"{self.agent_names}; list every agent that can ever act there.")
        return env_index * self.slots + slot

    def _rows_obs(self, per_row: list) -> Any:
        return tree_stack([self._zero_obs if o is None else o for o in per_row])

    def reset(self, seed: int | None = None) -> tuple[Any, np.ndarray]:
        """Reset every env (env i with ``seed + i``); returns (obs over rows, spawn (R,) bool)."""
        per_row: list = [None] * self.num_envs
        self.alive[:] = False
        for i, env in enumerate(self.envs):
            self._reset_one(i, env, None if seed is None else seed + i, per_row)
        return self._rows_obs(per_row), self.alive.copy()

    def _reset_one(self, i: int, env, seed: int | None, per_row: list) -> None:
        obs, _ = env.reset(seed=seed)
        self.alive[i * self.slots:(i + 1) * self.slots] = False
        for agent in env.agents:
            row = self._row(i, agent)
            per_row[row], self.alive[row] = obs[agent], True

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Act for every alive row (the actions of absent rows are ignored).

        Returns:
            next_obs (rows), reward, terminated, truncated (R,), spawn (R,) bool, and
            ``{"final_obs": [obs or None] * R, "env_done": (N,) bool}``: the last observation of each agent whose
            episode ended here, and which envs' own episodes ended here (those envs were reset).
            ``self.alive`` is the rows alive after the step.
        """
        r = self.num_envs
        reward = np.zeros(r, dtype=np.float64)
        terminated, truncated = np.zeros(r, dtype=bool), np.zeros(r, dtype=bool)
        spawn = np.zeros(r, dtype=bool)
        final_obs: list = [None] * r
        env_done = np.zeros(self.num_copies, dtype=bool)
        per_row: list = [None] * r
        was_alive = self.alive.copy()
        for i, env in enumerate(self.envs):
            base = i * self.slots
            acting = [(a, base + k) for k, a in enumerate(self.agent_names) if was_alive[base + k]]
            obs, rewards, terms, truncs, _ = env.step({a: actions[row] for a, row in acting})
            present = set(env.agents)
            ended = set()
            for agent, row in acting:
                reward[row] = float(rewards.get(agent, 0.0))
                term, trunc = bool(terms.get(agent, False)), bool(truncs.get(agent, False))
                if term or trunc or agent not in present:
                    # Leaving without a flag is an end the env did not announce: no bootstrap.
                    terminated[row], truncated[row] = term or not trunc, trunc and not term
                    final_obs[row] = obs.get(agent)
                    ended.add(agent)
            self.alive[base:base + self.slots] = False
            if not present or (ended and present <= ended):
                # The env's episode is over: agents still listed end with it (bootstrapped), then reset.
                for agent, row in acting:
                    if agent in present and agent not in ended:
                        truncated[row], final_obs[row] = True, obs.get(agent)
                self._reset_one(i, env, None, per_row)
                env_done[i] = True
                spawn[base:base + self.slots] = self.alive[base:base + self.slots]
                continue
            for agent in env.agents:
                row = self._row(i, agent)
                per_row[row], self.alive[row] = obs[agent], True
                spawn[row] = not was_alive[row] or terminated[row] or truncated[row]
        return (self._rows_obs(per_row), reward, terminated, truncated, spawn,
                {"final_obs": final_obs, "env_done": env_done})

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> dict:
        """``{"snapshots": [...]}`` of every env's plain attributes (``agents.rollout.env_state``, one layer, or
        its ``mnemo_get_state``), or ``{"error": why not}``."""
        try:
            return {"snapshots": [snapshot_env(env) for env in self.envs], "alive": self.alive.tolist()}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def restore(self, state: dict) -> str | None:
        """Write ``snapshot()``'s output back; None on success, else why not."""
        try:
            for env, snap in zip(self.envs, state["snapshots"], strict=True):
                restore_env(env, snap)
            self.alive[:] = np.asarray(state["alive"], dtype=bool)
            return None
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        for env in self.envs:
            env.close()


def make_multiagent_vector_env(env_id: str, num_envs: int, env_kwargs: dict | None = None,
                               env_import: tuple[str, ...] | list[str] = ()) -> MultiAgentVectorEnv:
    """``num_envs`` copies of the multi-agent env ``env_id`` as rows (``MultiAgentVectorEnv``)."""
    return MultiAgentVectorEnv([make_parallel_env(env_id, env_kwargs, env_import) for _ in range(num_envs)], env_id)

