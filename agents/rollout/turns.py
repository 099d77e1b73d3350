"""PettingZoo AEC envs as turn-based ParallelEnvs (docs/multiagent.md, "Turn-based games").

A turn-based ParallelEnv (``metadata["turn_based"] = True``) observes only the agents that act next; the others in
``env.agents`` wait. ``AECTurns`` presents an AEC env that way: the one observation is ``agent_selection``'s,
``step`` takes its action, then takes the dead steps (``step(None)`` for a selected agent that is terminated or
truncated) itself, so the next selected agent is a live one. Each agent's reward over one adapter step is the
sum of ``env.rewards`` after every AEC step in it (what PettingZoo's ``_cumulative_rewards`` add up); an agent
whose termination or truncation turns true ends there, with ``observe(agent)`` as its final observation, and
leaves ``agents`` at once (the AEC env removes it later, at its dead step).

Imported only by ``agents.rollout.multiagent_env`` when a multi-agent env is made, so pettingzoo is there.
"""

from __future__ import annotations

from typing import Any

from pettingzoo import AECEnv, ParallelEnv

from agents.rollout.env_state import _is_static as is_static
from agents.rollout.env_state import decode, encode


def _aec_layers(env: AECEnv) -> list[AECEnv]:
    """``env`` and the AEC envs its wrappers wrap, outermost first."""
    layers = [env]
    while isinstance(getattr(layers[-1], "env", None), AECEnv):
        layers.append(layers[-1].env)
    return layers


def _static(value: Any) -> bool:
    """What describes an AEC layer rather than its state: what ``env_state`` skips, and the per-agent dicts of
    spaces PettingZoo envs keep (``observation_spaces``, ``action_spaces``)."""
    if isinstance(value, dict) and value:
        return all(is_static(v) for v in value.values())
    return is_static(value)


class AECTurns(ParallelEnv):
    """An AEC env under the turn-based Parallel convention (the module docstring).

    ``render``, ``state()`` / ``state_space`` pass through to the AEC env where it has them. Snapshots
    (``mnemo_get_state``) hold the plain attributes of every AEC layer, so an AEC env made of plain data resumes
    exactly.
    """

    def __init__(self, aec: AECEnv):
        self.aec = aec
        self.possible_agents = list(aec.possible_agents)
        self.metadata = {**(getattr(aec, "metadata", None) or {}), "turn_based": True}
        self.render_mode = getattr(aec, "render_mode", None)
        self.agents: list[str] = []
        self._ended: set[str] = set()  # agents whose flags turned true, not yet removed by their dead step
        if hasattr(aec, "state_space"):
            self.state_space = aec.state_space

    def observation_space(self, agent: str):
        return self.aec.observation_space(agent)

    def action_space(self, agent: str):
        return self.aec.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self.aec.reset(seed=seed, options=options)
        self._ended = set()
        rewards: dict[str, float] = {}
        terms: dict[str, bool] = {}
        truncs: dict[str, bool] = {}
        obs: dict[str, Any] = {}
        self._settle(rewards, terms, truncs, obs)
        return obs, {agent: dict(self.aec.infos.get(agent, {})) for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        acting = self.aec.agent_selection
        rewards = {agent: 0.0 for agent in self.agents}
        terms: dict[str, bool] = {}
        truncs: dict[str, bool] = {}
        obs: dict[str, Any] = {}
        self.aec.step(actions[acting])
        self._collect(rewards, terms, truncs, obs)
        self._settle(rewards, terms, truncs, obs)
        infos = {agent: dict(self.aec.infos.get(agent, {})) for agent in self.agents}
        return obs, rewards, terms, truncs, infos

    def _collect(self, rewards: dict, terms: dict, truncs: dict, obs: dict) -> None:
        """After one AEC step: add its rewards, end the agents whose flags turned true (final observation)."""
        for agent, reward in self.aec.rewards.items():
            if agent not in self._ended:
                rewards[agent] = rewards.get(agent, 0.0) + float(reward)
        for agent in list(self.aec.agents):
            if agent in self._ended:
                continue
            term, trunc = bool(self.aec.terminations.get(agent)), bool(self.aec.truncations.get(agent))
            if term or trunc:
                terms[agent], truncs[agent] = term, trunc
                obs[agent] = self.aec.observe(agent)
                self._ended.add(agent)

    def _settle(self, rewards: dict, terms: dict, truncs: dict, obs: dict) -> None:
        """Take the dead steps until a live agent is selected (or none is left); observe it."""
        aec = self.aec
        while aec.agents and (aec.terminations.get(aec.agent_selection) or aec.truncations.get(aec.agent_selection)):
            self._ended.add(aec.agent_selection)
            aec.step(None)
            self._collect(rewards, terms, truncs, obs)
        self._ended &= set(aec.agents)
        self.agents = [agent for agent in aec.agents if agent not in self._ended]
        if self.agents:
            obs[aec.agent_selection] = aec.observe(aec.agent_selection)

    def render(self) -> Any:
        return self.aec.render()

    def state(self) -> Any:
        return self.aec.state()

    def close(self) -> None:
        self.aec.close()

    # ---------------------------------------------------------------- snapshots (agents.rollout.env_state)
    def mnemo_get_state(self) -> dict:
        layers = [{key: encode(value, f"{type(layer).__name__}.{key}") for key, value in vars(layer).items()
                   if key != "env" and not _static(value)} for layer in _aec_layers(self.aec)]
        return {"agents": list(self.agents), "ended": sorted(self._ended), "layers": layers}

    def mnemo_set_state(self, state: dict) -> None:
        self.agents, self._ended = list(state["agents"]), set(state["ended"])
        for layer, attrs in zip(_aec_layers(self.aec), state["layers"], strict=True):
            for key, value in attrs.items():
                current = vars(layer).get(key)
                new = decode(value, current, f"{type(layer).__name__}.{key}")
                if new is not current:
                    vars(layer)[key] = new


__all__ = ["AECTurns"]
