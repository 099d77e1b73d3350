"""Watch a multi-agent run: every agent acts from its policy; the memory panel shows one of them.

    mnemo watch runs/fog_team --record team.gif --episodes 2
    mnemo watch runs/storm --inspect --agent agent_2 --record storm.gif

The env (a PettingZoo ``ParallelEnv``, docs/multiagent.md) is made with ``render_mode="rgb_array"`` and played
through ``MultiAgentVectorEnv`` with one copy, so agents are rows and the hidden-state rules are training's
(docs/architecture.md, "Agents that come and go"): a spawning agent starts from the zero state, an absent
agent's state is held, an episode ends for each agent as it does in training. One episode here is one episode
of the env: one frame after its reset and one after every step. The caption shows the team's return so far
(the sum of every agent's rewards) and the agents alive; the panel shows ``agent``'s memory, an empty column
for each step it was absent, and a line saying so while it is absent. With named policies (``--policy-map``)
each policy acts on its agents' rows, and the panel reads the core of ``agent``'s policy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from agents.config import ConfigError, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.multiagent_collector import act_by_policy
from agents.rollout.multiagent_env import MultiAgentVectorEnv, PolicyRows, make_parallel_env
from agents.trees import tree_map
from agents.watch.frames import (
    FrameSink,
    WatchError,
    WatchResult,
    cannot_render_message,
    check_spaces,
    emit,
    end_episode,
    log_summary,
    render_frame,
)
from agents.watch.inspector import MemoryProbe, StepReadout, action_labels_for
from agents.watch.memory_panel import MemoryPanel


class _FrameBeforeReset:
    """A ParallelEnv that draws its frame before each reset but the first.

    ``MultiAgentVectorEnv`` resets an env in the step its episode ends (SAME_STEP), so the frame after the last
    step would be gone; ``last_frame`` keeps it (None when no reset happened since it was cleared).
    """

    def __init__(self, env: Any):
        self.env, self.last_frame, self._started = env, None, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def reset(self, seed: int | None = None, options: dict | None = None) -> Any:
        self.last_frame = render_frame(self.env) if self._started else None
        self._started = True
        return self.env.reset(seed=seed, options=options)


def make_render_parallel_env(env_id: str, env_kwargs: dict | None = None,
                             env_import: tuple[str, ...] | list[str] = (), policy_map: str | None = None,
                             check_policies: bool = True) -> Any:
    """The ParallelEnv of ``env_id`` made with ``render_mode="rgb_array"`` (its agents checked against the run's
    ``policy_map``, unless ``check_policies`` is False: a match checks each agent against its player's policy),
    or a WatchError saying why it cannot."""
    try:
        probe = make_parallel_env(env_id, env_kwargs, env_import, policy_map, check_policies)
    except (ModuleNotFoundError, ConfigError) as exc:
        raise WatchError(f"{exc} (the run was trained on {env_id})") from exc
    modes = list(getattr(probe, "metadata", {}).get("render_modes", []))
    probe.close()
    if "rgb_array" not in modes:
        raise WatchError(cannot_render_message(env_id, modes))
    try:
        env = make_parallel_env(env_id, {**dict(env_kwargs or {}), "render_mode": "rgb_array"}, env_import,
                                policy_map, check_policies)
    except ConfigError as exc:
        raise WatchError(f"{cannot_render_message(env_id, modes)} ({exc})") from exc
    if getattr(env, "render_mode", None) != "rgb_array":
        env.close()
        raise WatchError(cannot_render_message(env_id, modes))
    return env


def _readout(probe: MemoryProbe, row: int, slot: int, alive: np.ndarray, obs: Any, state: torch.Tensor,
             start: torch.Tensor, out: Any) -> StepReadout:
    """The panel's readout of row ``row`` of one policy's rows at this step (``StepReadout.away`` while it is
    absent); ``slot`` is its agent's index among its policy's agents (the agent-index input); ``alive``, ``obs``,
    ``state``, ``start`` and ``out`` are that policy's."""
    if not alive[row]:
        return StepReadout.away()
    one = slice(row, row + 1)
    return probe.read(tree_map(lambda x: x[one], obs), state[:, :, one], start[one], out.action[one],
                      out.state[:, :, one], {"agent_index": torch.tensor([slot])})


@torch.inference_mode()
def watch_multiagent(
    policies: dict[str, RecurrentActorCritic],
    config: TrainConfig,
    open_sink: Callable[[float | None], FrameSink],
    episodes: int = 3,
    deterministic: bool = True,
    seed: int = 0,
    record: str | Path | None = None,
    inspect: bool = False,
    history: int = 48,
    max_steps: int | None = None,
    scale: int | None = None,
    log: Callable[[str], None] = print,
    agent: str | None = None,
) -> WatchResult:
    """Play ``episodes`` episodes of a multi-agent run (``agents.watch.viewer.watch`` calls this; same arguments).

    Args:
        policies: the run's policies by name (``agents.run.checkpoint.load_policies``).
        open_sink: the window or file the frames go to, given the env's ``render_fps`` (or None).
        record: the file being written, named in the last line logged.
        agent: the agent whose memory ``inspect`` shows (default: the first of ``possible_agents``).

    Returns:
        The team's return and the length of each episode, each agent episode's return, the frames drawn.
    """
    env_id = config.env.env_id
    env = _FrameBeforeReset(make_render_parallel_env(env_id, config.env.env_kwargs, config.env.env_import,
                                                     config.env.policy_map))
    envs = MultiAgentVectorEnv([env], env_id, config.env.policy_map)
    names = envs.agent_names
    result = WatchResult()
    try:
        agent = names[0] if agent is None else agent
        if agent not in names:
            raise WatchError(f"--agent {agent!r} is not an agent of {env_id}; its agents are {', '.join(names)}.")
        rows = envs.env_rows(0)  # each agent's row, in possible_agents order
        row = rows[names.index(agent)]
        watched: PolicyRows = next(block for block in envs.policies if agent in block.agents)
        for block in envs.policies:
            check_spaces(policies[block.name], block.observation_space, block.action_space, env_id)
        sink = open_sink(env.metadata.get("render_fps"))
        panel = None
        if inspect:
            labels = action_labels_for(SimpleNamespace(metadata=env.metadata, action_space=watched.action_space))
            panel = MemoryPanel(MemoryProbe(policies[watched.name], labels), history=history, agent=agent)
        generator = torch.Generator().manual_seed(seed)
        state = policies[envs.policies[0].name].initial_state(envs.num_envs)
        mode = "deterministic" if deterministic else "stochastic"
        obs, spawn = envs.reset(seed=seed)
        ended = True
        try:
            for episode in range(1, episodes + 1):
                if not ended:  # the last one was stopped at max_steps: the env was not reset
                    obs, spawn = envs.reset()
                team, steps, running, ended = 0.0, 0, np.zeros(envs.num_envs), False
                while True:
                    alive = envs.alive.copy()
                    # Training's rules: one call per policy over its rows (act_by_policy).
                    actions, next_state, block_steps = act_by_policy(policies, envs, obs, state, spawn, deterministic,
                                                               generator)
                    if panel is not None:
                        mine = next(step for step in block_steps if step.block is watched)
                        panel.push(_readout(panel.probe, row - watched.first_row, watched.agents.index(agent),
                                            alive[watched.rows], mine.obs, mine.state, mine.start, mine.out))
                    live = [name for name, r in zip(names, rows, strict=True) if alive[r]]
                    caption = [env_id, f"episode {episode}  step {steps}", f"team return {team:+.2f}  ({mode})",
                               f"alive: {', '.join(live) or 'none'}"]
                    if panel is not None:
                        caption.append(f"memory: {agent}{'' if alive[row] else ' (absent)'}")
                    if not emit(sink, env, panel, caption, scale, result):
                        return result
                    env.last_frame = None
                    obs, reward, terminated, truncated, spawn, _ = envs.step(actions)
                    state = next_state
                    if panel is not None and alive[row]:
                        panel.set_reward(float(reward[row]))
                    team += float(reward.sum())
                    running += reward
                    steps += 1
                    done = terminated | truncated
                    result.agent_returns.extend(float(running[i]) for i in np.flatnonzero(done))
                    running[done] = 0.0
                    ended = env.last_frame is not None
                    if ended or (max_steps is not None and steps >= max_steps):
                        break
                end = "over" if ended else "stopped"
                caption = [env_id, f"episode {episode}  step {steps}  ({end})", f"team return {team:+.2f}  ({mode})"]
                if not end_episode(sink, env, panel, caption, scale, result, episode, "team return", team, steps, end,
                                   log, frame=env.last_frame):
                    return result
        finally:
            sink.close()
        log_summary(result, "team return", episodes, record, log)
        return result
    finally:
        envs.close()
