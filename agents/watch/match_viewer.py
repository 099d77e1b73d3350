"""Watch a match: a multi-agent run plays one side of a two-sided env, an opponent the other.

    mnemo watch runs/duel --opponent scripted --record duel.gif
    mnemo watch runs/a --opponent runs/b --side right --inspect --agent left
    mnemo watch runs/sp@snapshot:last --opponent runs/sp@snapshot:first --episodes 5 --seed 3

The players, the envs and the games are ``mnemo match``'s (``agents.deploy.match``: ``load_player``,
``MatchEnvs``, ``game_turns``): the opponent is a run directory / checkpoint, ``RUN@snapshot:STEP``, ``scripted``
(the env plays that side itself) or ``random``; each run acts through a ``PolicyRunner`` per policy, by agent id, by
training's hidden-state rules (every agent starts each game from the zero state unless the run carries memory
across episodes; an agent that left starts from zero when it comes back). The sides are the env's two agents,
or the run's self-play ``--sides``, or ``--sides``; A plays ``--side`` (default: the first) in every game, and
game g is seeded ``--seed`` + g. The caption names each side's player and its score: points where the env
reports them (``infos[agent]["score"]``), else summed returns.

A run trained with ``--policy-map`` plays its side agent by agent with the policy its map gives each agent, or
with the one policy ``--policy NAME`` (B's: ``--policy-b``) names, as ``mnemo match`` plays it.
``--inspect --agent NAME`` shows that agent's memory, whichever player drives it (default: A's first agent);
the panel reads the policy that drives it, and recomputes each step from the state the runner held before it, so it
shows exactly what the runner did. A bot's agent has no memory to show: that is refused.

A turn-based env (``metadata["turn_based"]``, e.g. mnemo/Pairs-v0) is played as ``game_turns`` plays it: only
the agents the env gave an observation act, the others wait with their state held. The panel gets a column
for each step its agent acts (none while it waits: its memory does not move), and that column's reward sums
what the action earned until the agent's next action, the rewards paid while it waited included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.config import ConfigError
from agents.deploy.match import MatchEnvs, Player, game_turns, match_env_config
from agents.rollout.self_play import assign_sides
from agents.trees import obs_to_tensor, tree_map
from agents.watch.frames import FrameSink, WatchError, WatchResult, emit, log_summary
from agents.watch.inspector import MemoryProbe, StepReadout, action_labels_for
from agents.watch.memory_panel import MemoryPanel
from agents.watch.multiagent_viewer import make_render_parallel_env

NEEDED_BY = "mnemo watch --opponent"


def match_sides(a: Player, agents: list[str], env_id: str, sides: str | None) -> tuple[list[str], list[list[str]]]:
    """The two sides' names and agents: from ``sides`` (``--sides``), else the self-play ``--sides`` A was trained
    with, else each of the env's two agents alone (``assign_sides``)."""
    if sides is None and a.config is not None:
        sides = a.config.opponents.sides
    names, side_of = assign_sides(agents, sides, env_id, needed_by=NEEDED_BY)
    return names, [[agent for agent, s in zip(agents, side_of, strict=True) if s == k] for k in (0, 1)]


class _Inspected:
    """The memory of one agent of a run, read around each of its runner's steps.

    ``before_act`` (``game_turns``'s hook) keeps the state the runner is about to step from: zeros and an
    episode start where the runner's next act starts one; ``readout`` recomputes the step with the probe and
    checks it against the state the runner holds after it.
    """

    def __init__(self, runner: Any, agent: str, slot: int, probe: MemoryProbe, action_space: spaces.Space):
        self.runner, self.agent, self.slot, self.probe = runner, agent, slot, probe
        self.start_offset = int(getattr(action_space, "start", 0)) if isinstance(action_space, spaces.Discrete) else 0
        self.state: torch.Tensor | None = None
        self.start = True

    def before_act(self) -> None:
        self.start = self.runner.starts_episode(self.agent)
        self.state = None if self.start else self.runner.get_state(self.agent)

    def readout(self, obs: dict, actions: dict) -> StepReadout:
        """The readout of this step (``StepReadout.away`` while the agent is not in the env)."""
        if self.agent not in actions:
            return StepReadout.away()
        after = self.runner.get_state(self.agent).unsqueeze(2)  # (S, L, 1, W)
        before = torch.zeros_like(after) if self.state is None else self.state.unsqueeze(2)
        obs_t = tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(obs[self.agent], torch.device("cpu")))
        # The env's action back to the policy's: a Discrete space's actions are stored from 0.
        action = torch.as_tensor(np.asarray(actions[self.agent]) - self.start_offset).unsqueeze(0)
        return self.probe.read(obs_t, before, torch.tensor([float(self.start)]), action, after,
                               {"agent_index": torch.tensor([self.slot])})


@torch.inference_mode()
def watch_match(
    a: Player,
    b: Player,
    open_sink: Callable[[float | None], FrameSink],
    episodes: int = 3,
    seed: int = 0,
    record: str | Path | None = None,
    inspect: bool = False,
    history: int = 48,
    max_steps: int | None = None,
    scale: int | None = None,
    log: Callable[[str], None] = print,
    agent: str | None = None,
    side: str | None = None,
    sides: str | None = None,
) -> WatchResult:
    """Play ``episodes`` games of run ``a`` against ``b`` (module docstring); ``agents.watch.viewer.watch`` with
    ``opponent`` calls this.

    Args:
        a: the watched run's player (``load_player``); ``b``: its opponent, any player.
        open_sink: the window or file the frames go to, given the env's ``render_fps`` (or None).
        side: the side ``a`` plays (a side name: an agent's name without ``sides``); default the first.
        sides: ``--sides``, as ``mnemo match`` reads it.
        agent: the agent whose memory ``inspect`` shows (default: the first of ``a``'s side).

    Returns:
        A's summed return and the length of each game, the frames drawn.

    Raises:
        WatchError: the env cannot render, an unknown side or agent, an inspected agent a bot plays, or the
            players cannot meet (``match_env_config``, ``MatchEnvs.for_players``).
    """
    try:
        env_id, env_kwargs, env_import = match_env_config(a, b)
    except ConfigError as exc:
        raise WatchError(str(exc)) from exc
    # Refuses an env that cannot draw itself; each agent's spaces are checked against its player's policy below.
    make_render_parallel_env(env_id, env_kwargs, env_import, check_policies=False).close()
    envs = MatchEnvs(env_id, {**env_kwargs, "render_mode": "rgb_array"}, env_import)
    result = WatchResult()
    try:
        agents = list(envs.plain.possible_agents)
        try:
            names, side_agents = match_sides(a, agents, env_id, sides)
        except ConfigError as exc:
            raise WatchError(str(exc)) from exc
        if side is not None and side not in names:
            raise WatchError(f"--side {side!r} is not a side of {env_id}; its sides are {', '.join(names)}.")
        a_side = 0 if side is None else names.index(side)
        players = (a, b) if a_side == 0 else (b, a)  # players[s] plays side s
        try:
            env = envs.for_players(players, side_agents)
        except ConfigError as exc:
            raise WatchError(str(exc)) from exc
        agent = side_agents[a_side][0] if agent is None else agent
        if agent not in agents:
            raise WatchError(f"--agent {agent!r} is not an agent of {env_id}; its agents are {', '.join(agents)}.")
        owner = players[0] if agent in side_agents[0] else players[1]
        inspected = None
        panel = None
        if inspect:
            if not owner.runners:
                raise WatchError(f"--inspect --agent {agent}: {agent} is played by the {owner.bot} bot, which has no "
                                 f"memory to show; inspect an agent of a run (A's: {', '.join(side_agents[a_side])}).")
            runner = owner.runner_for(agent)  # the policy that drives it (for_players checked its side's agents)
            policy = runner.policy
            if policy.central_critic:  # the runner keeps the actor's state alone; the panel reads the whole policy
                raise WatchError(f"--inspect --agent {agent} in a match: {owner.label} was trained with "
                                 f"--central-critic, which the panel cannot follow there; watch the run alone "
                                 f"(drop --opponent) to inspect it.")
            labels = action_labels_for(SimpleNamespace(metadata=env.metadata, action_space=env.action_space(agent)))
            probe = MemoryProbe(policy, labels)
            panel = MemoryPanel(probe, history=history, agent=agent)
            slot = policy.slot_of(agent) if policy.agents else agents.index(agent)  # the agent-index input's slot
            inspected = _Inspected(runner, agent, slot, probe, env.action_space(agent))
        sink = open_sink(env.metadata.get("render_fps"))
        rng = np.random.default_rng(seed)
        players_shown = [f"{players[s].label} ({names[s]})" for s in (0, 1)]
        try:
            for episode in range(1, episodes + 1):
                turns = game_turns(env, players, side_agents, seed + episode - 1, rng,
                                   None if inspected is None else inspected.before_act, envs.scripted_player)
                # Whether the inspected agent's newest column is its last action, still earning rewards: from its
                # action until its next one, through the steps it waits in a turn-based env (rewards paid while
                # it waits are credited to its last action, as in training), or until it leaves.
                acted = False
                credit = 0.0  # the rewards that action has earned so far
                while True:
                    try:
                        turn = next(turns)
                    except StopIteration as over:
                        outcome, how = over.value, "over"
                        break
                    if max_steps is not None and turn.steps >= max_steps:
                        turns.close()  # the game so far, without the step just decided
                        outcome, how = {"returns": turn.returns, "points": turn.points, "steps": turn.steps,
                                        "rewards": turn.rewards}, "stopped"
                        break
                    waiting = agent not in turn.actions and any(agent in live for live in turn.live)
                    if panel is not None and inspected is not None:
                        if acted:  # the previous step's reward, for the column pushed last
                            credit += float(turn.rewards.get(agent, 0.0))
                            panel.set_reward(credit)
                        if not waiting:  # a waiting agent's memory does not move: no column for it
                            panel.push(inspected.readout(turn.obs, turn.actions))
                            acted, credit = agent in turn.actions, 0.0
                    caption = [env_id, f"game {episode}  step {turn.steps}",
                               _score_line(players_shown, turn.points, turn.returns)]
                    if panel is not None:
                        state = " (waiting)" if waiting else ("" if agent in turn.actions else " (absent)")
                        caption.append(f"memory: {agent}{state}")
                    if not emit(sink, env, panel, caption, scale, result):
                        return result
                if panel is not None and acted:
                    panel.set_reward(credit + float(outcome["rewards"].get(agent, 0.0)))
                caption = [env_id, f"game {episode}  step {outcome['steps']}  ({how})",
                           _score_line(players_shown, outcome["points"], outcome["returns"])]
                if not emit(sink, env, panel, caption, scale, result):
                    return result
                result.returns.append(outcome["returns"][a_side])
                result.lengths.append(outcome["steps"])
                log(f"game {episode}: {_score_line(players_shown, outcome['points'], outcome['returns'])} "
                    f"({outcome['steps']} steps, {how})")
        finally:
            sink.close()
        log_summary(result, f"return of {a.label}", episodes, record, log)
        return result
    finally:
        envs.close()


def _score_line(labels: list[str], points: list[int] | None, returns: list[float]) -> str:
    """``"A (left) 2 : 1 B (right)"``: each side's points, or its summed return where the env reports none."""
    if points is not None:
        return f"{labels[0]} {points[0]} : {points[1]} {labels[1]}"
    return f"{labels[0]} {returns[0]:+.2f} : {returns[1]:+.2f} {labels[1]}"
