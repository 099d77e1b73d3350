"""``mnemo match A B``: two players, N whole episodes of a multi-agent env, wins / draws / losses with intervals.

    mnemo match runs/duel scripted --games 200               # a run against the env's scripted bot
    mnemo match runs/a runs/b --games 100 --json             # two runs of one env, machine-readable
    mnemo match scripted random --env-id mnemo/FlickerPongDuel-v0 --games 200   # two bots need --env-id
    mnemo match runs/team random --sides 'red_*=red,blue_*=blue'                # sides of several agents
    mnemo match runs/sp@snapshot:last runs/sp@snapshot:first --games 200       # a self-play run's snapshots
    mnemo match runs/roles runs/roles_old --sides 'hunter_0=hunt,prey_*=lone'  # --policy-map runs, agent by agent

A player is a run directory (``--which``; a run trained with ``--policy-map`` plays each agent of its side with
the policy its map gives that agent, or every one with the policy ``--policy NAME`` names), ``scripted``
(the env's own scripted bot: the env module's ``scripted_player(agent, obs, rng)`` acting from each
observation, else the env playing that side itself under the module's ``scripted_env_kwargs``), ``random``
(uniform random actions, legal ones where the observation holds an ``"action_mask"``), or
``RUN@snapshot:STEP`` (a ``--self-play`` run's opponent-pool snapshot taken at env step STEP exactly, or
``first`` / ``last``: the oldest / newest its checkpoint holds, which are only the last ``--pool-size`` taken;
``agents.run.checkpoint.load_snapshot``), played with the run's architecture and the snapshot's own weights
and normaliser statistics, as the pool played it.
The env is the run's (id, ``env_kwargs``, ``--env-import``); two runs must share it. The two
sides are by default the env's two agents, else ``--sides``; A takes side 1 in even games and side 2 in odd
ones, so neither player keeps the side that serves or sees first. Game g is seeded ``--seed`` + g.

The agents that act at a step are the live ones with an observation: in a turn-based env
(``metadata["turn_based"]``) the player to move, while the others wait with their memory held.
A run's agents act through one ``PolicyRunner`` per policy that plays, by agent id, with training's hidden-state
rules: an agent's first step in a game (and after it left and came back) starts from the zero state, and a run trained
with ``carry_across_episodes`` keeps each agent's memory from one game to the next game it plays that agent.

A game is won by the side with more points where the env reports them (``infos[agent]["score"]``, a dict of
points by agent name, as FlickerPongDuel does), else by the side with the larger summed return; equal is a
draw. The score rate (win 1, draw 1/2) gets a 95% Wilson interval, and the Elo difference it implies,
``400 log10(s / (1 - s))``, the same interval mapped through that formula (infinite at a score of 0 or 1).
Where points are reported, the fraction of points A won gets its own Wilson interval (points treated as
independent trials, which they are only roughly: a match's points share its players).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from agents.arguments import OneLineParser
from agents.config import ConfigError, first_match, parse_policy_map
from agents.deploy.runner import PolicyRunner
from agents.ratings import elo_from_score
from agents.rollout.multiagent_env import SHARED_POLICY, is_multiagent, make_parallel_env, resolve_factory
from agents.rollout.self_play import assign_sides
from agents.run.checkpoint import LATEST, CheckpointError, load_policies, load_snapshot

BOTS = ("scripted", "random")
Z95 = 1.959963984540054
"""the standard normal quantile of a two-sided 95% interval"""


# --------------------------------------------------------------------------- statistics
def wilson_interval(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a rate of ``successes`` in ``trials`` (a draw counts as half a success).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or ``trials`` successes.
    """
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    # At 0 or ``trials`` successes the bound is exactly 0 or 1 (rounding would leave it a hair inside, and turn
    # the Elo bound mapped from it from infinite into a large finite number).
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= trials else min(1.0, centre + half)
    return low, high


@dataclass
class MatchStats:
    """What ``match`` played, from A's side."""

    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    points_for: int | None = None
    """points A won over all games, where the env reports points (None: it does not)"""
    points_against: int | None = None
    steps: list[int] = field(default_factory=list)
    """each game's length in env steps"""

    @property
    def score(self) -> float:
        """A's score rate: (wins + draws / 2) / games."""
        return (self.wins + 0.5 * self.draws) / self.games if self.games else math.nan

    def summary(self) -> dict[str, Any]:
        """Every figure ``mnemo match`` prints, as plain numbers (an infinite Elo is the string "inf" or "-inf",
        which JSON can carry)."""
        low, high = wilson_interval(self.wins + 0.5 * self.draws, self.games)
        out: dict[str, Any] = {
            "games": self.games, "wins": self.wins, "draws": self.draws, "losses": self.losses,
            "score": self.score, "score_ci95": [low, high],
            "elo": _finite_or_name(elo_from_score(self.score)),
            "elo_ci95": [_finite_or_name(elo_from_score(low)), _finite_or_name(elo_from_score(high))],
            "mean_steps": float(np.mean(self.steps)) if self.steps else math.nan,
        }
        if self.points_for is not None and self.points_against is not None:
            total = self.points_for + self.points_against
            out.update(points_for=self.points_for, points_against=self.points_against,
                       points_fraction=self.points_for / total if total else math.nan,
                       points_ci95=list(wilson_interval(self.points_for, total)))
        return out


def _finite_or_name(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def format_elo(x: float | str) -> str:
    """``+215``, ``-40``, or ``+inf`` / ``-inf`` (a player that won or lost every game)."""
    if isinstance(x, str):
        return "+inf" if x == "inf" else "-inf"
    return f"{x:+.0f}"


# --------------------------------------------------------------------------- players
@dataclass
class Player:
    """One of the two players: a run (its ``runners``) or a bot (``bot`` is ``"scripted"`` or ``"random"``).

    A run plays with one ``PolicyRunner`` per policy that plays: its only policy, the one ``--policy NAME``
    names, or, for a run trained with ``--policy-map`` and no ``--policy``, every policy of its checkpoint,
    each driving the agents of its side that the run's map gives it (``runner_for``).
    """

    label: str
    runners: dict[str, PolicyRunner] = field(default_factory=dict)
    """the run's runners by policy name (empty for a bot)"""
    bot: str | None = None
    policy_map: str | None = None
    """the run's ``--policy-map``, which picks each agent's runner; None: the one runner drives every agent"""

    @property
    def config(self) -> Any:
        """The run's ``TrainConfig`` (every policy of a run shares it); None for a bot."""
        return next(iter(self.runners.values())).config if self.runners else None

    @property
    def runner(self) -> PolicyRunner | None:
        """The runner of a run played with one policy; None for a bot.

        Raises:
            ValueError: the player plays several policies by its map (ask ``runner_for(agent)``).
        """
        if len(self.runners) > 1:
            raise ValueError(f"{self.label} plays {len(self.runners)} policies by its --policy-map; ask "
                             f"runner_for(agent) for the one that drives an agent.")
        return next(iter(self.runners.values()), None)

    def policy_for(self, agent: str) -> str:
        """The name of the policy that drives ``agent``: the run's map's first matching pattern, or the one
        policy that plays.

        Raises:
            ConfigError: the run's map covers no such agent (the fix: ``--policy NAME`` plays it with one policy).
        """
        if self.policy_map is None:
            return next(iter(self.runners))
        name = first_match(parse_policy_map(self.policy_map), agent)
        if name is None or name not in self.runners:
            raise ConfigError(f"{self.label}: its --policy-map {self.policy_map!r} gives agent {agent!r} no policy; "
                              f"play its side with one of its policies ({', '.join(self.runners)}) with --policy "
                              f"NAME, or pick sides it covers (--sides).")
        return name

    def runner_for(self, agent: str) -> PolicyRunner:
        """The runner that drives ``agent`` (``policy_for``); a bot has none.

        Raises:
            ConfigError: the run's map covers no such agent.
        """
        return self.runners[self.policy_for(agent)]

    @property
    def env_config(self) -> tuple[str, dict, tuple[str, ...]] | None:
        """The run's (env_id, env_kwargs, env_import); None for a bot."""
        if self.config is None:
            return None
        env = self.config.env
        return env.env_id, dict(env.env_kwargs or {}), tuple(env.env_import)


ScriptedPlayer = Callable[[str, Any, np.random.Generator], Any]
"""an env module's ``scripted_player(agent, obs, rng) -> action``: the ``scripted`` player, one observation at a
time"""


SNAPSHOT_MARK = "@snapshot:"
"""``RUN@snapshot:STEP`` (or ``first`` / ``last``): a self-play run's pool snapshot as a player"""


def split_snapshot(spec: str) -> tuple[str, str | None]:
    """``"runs/a@snapshot:4096"`` -> ``("runs/a", "4096")``; a spec without the mark -> ``(spec, None)``."""
    path, mark, snapshot = spec.rpartition(SNAPSHOT_MARK)
    return (path, snapshot) if mark else (spec, None)


def load_player(spec: str, which: str = LATEST, policy: str | None = None, deterministic: bool = True,
                seed: int | None = None, needed_by: str = "mnemo match") -> Player:
    """A player from the command line: ``scripted``, ``random``, a run directory / checkpoint file, or a
    self-play run's snapshot, ``RUN@snapshot:STEP`` (``first`` / ``last``: the oldest / newest it holds; see
    ``agents.run.checkpoint.load_snapshot``).

    A run trained with ``--policy-map`` plays its side with its own map, each agent with the policy the map
    gives it (one runner per policy, each with its own sampling stream, ``_policy_seed``), unless ``policy``
    names the one policy that plays every agent of its side. ``mnemo match`` and ``mnemo watch --opponent``
    both load their players here.

    Raises:
        ConfigError: ``spec`` is neither a bot nor an existing path, or the run is single-agent.
        CheckpointError: the run cannot be loaded (or ``policy`` is not one of its policies, or the snapshot is
            not in its checkpoint).
    """
    if spec in BOTS:
        return Player(spec, bot=spec)
    path, snapshot = split_snapshot(spec)
    if not Path(path).exists():
        raise ConfigError(f"{path!r} is neither a run directory nor a bot; a player is a run directory, a checkpoint "
                          f"file, RUN{SNAPSHOT_MARK}STEP (a self-play snapshot), or one of: {', '.join(BOTS)}.")
    policy_map = None
    if snapshot is not None:
        if policy is not None:
            raise ConfigError(f"{spec}: a self-play run has one policy; drop --policy for a snapshot player.")
        network, config, step = load_snapshot(path, snapshot, which=which)
        runners = {SHARED_POLICY: PolicyRunner(network, config, deterministic=deterministic, seed=seed)}
        label = f"{path} snapshot of step {step}"
    elif policy is not None:
        runners = {policy: PolicyRunner.load(path, which=which, deterministic=deterministic, seed=seed,
                                             policy=policy)}
        label = f"{spec} (policy {policy})"
    else:  # a run of one policy, or every policy of a --policy-map run, each on the agents its map gives it
        networks, config = load_policies(path, which=which)
        runners = {name: PolicyRunner(network, config, deterministic=deterministic, seed=_policy_seed(seed, k))
                   for k, (name, network) in enumerate(networks.items())}
        policy_map = config.env.policy_map
        label = spec if policy_map is None else f"{spec} (policies {', '.join(networks)} by its --policy-map)"
    env_id = next(iter(runners.values())).config.env.env_id  # type: ignore[union-attr]
    if not is_multiagent(env_id):
        raise ConfigError(f"{path} was trained on the single-agent env {env_id}; {needed_by} plays multi-agent "
                          f"envs (train on one such as mnemo/FlickerPongDuel-v0).")
    return Player(label if which == LATEST else f"{label} [{which}]", runners=runners, policy_map=policy_map)


def _policy_seed(seed: int | None, k: int) -> int | None:
    """The sampling seed of a run's k-th policy: ``seed`` for the first (a run of one policy samples as it
    always did), an independent stream derived from (``seed``, k) for the others, so that two policies of one
    player never draw the same numbers."""
    if seed is None or k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def load_players(a: str, b: str, which: str = LATEST, which_b: str | None = None, policy: str | None = None,
                 policy_b: str | None = None, deterministic: bool = True, seed: int = 0,
                 needed_by: str = "mnemo match") -> tuple[Player, Player]:
    """The two players of ``mnemo match`` and ``mnemo watch --opponent`` (``load_player``): B takes A's
    ``which`` and ``policy`` where ``which_b`` / ``policy_b`` are None; A's runners are seeded ``seed``, B's
    ``seed + 1``."""
    return (load_player(a, which, policy, deterministic, seed, needed_by=needed_by),
            load_player(b, which_b or which, policy_b or policy, deterministic, seed + 1, needed_by=needed_by))


def match_env_config(a: Player, b: Player, env_id: str | None = None, env_kwargs: dict | None = None,
                     ) -> tuple[str, dict, tuple[str, ...]]:
    """The env both players play: their runs' (which must agree), or ``env_id`` / ``env_kwargs`` for two bots.

    Raises:
        ConfigError: two runs of different envs, ``env_id`` other than a run's, or two bots and no ``env_id``.
    """
    configs = [(p, p.env_config) for p in (a, b) if p.env_config is not None]
    if len(configs) == 2 and configs[0][1] != configs[1][1]:
        (pa, ca), (pb, cb) = configs
        raise ConfigError(f"{pa.label} was trained on {ca[0]} with env_kwargs {ca[1]} and {pb.label} on {cb[0]} with "
                          f"env_kwargs {cb[1]}; a match needs two runs of one env.")
    if configs:
        config = configs[0][1]
        if env_id is not None and env_id != config[0]:
            raise ConfigError(f"--env-id {env_id} differs from {configs[0][0].label}'s env {config[0]}; drop "
                              f"--env-id (a run plays the env it was trained on).")
        if env_kwargs:
            raise ConfigError("--env-kwargs is for two bots; a run plays with the env_kwargs it was trained with.")
        return config
    if env_id is None:
        raise ConfigError("Two bots play no run's env: name it with --env-id (e.g. mnemo/FlickerPongDuel-v0).")
    if not is_multiagent(env_id):
        raise ConfigError(f"--env-id {env_id} is not a multi-agent env; mnemo match plays PettingZoo ParallelEnvs.")
    return env_id, dict(env_kwargs or {}), ()


def parse_sides(text: str | None, agents: list[str], env_id: str = "") -> list[list[str]]:
    """The two sides' agents, from ``--sides`` read as self-play reads it (``'PATTERN=SIDE,...'``, fnmatch
    patterns over agent names, the first match wins), or without ``text`` each of the env's two agents alone.

    Raises:
        ConfigError: not two sides, an agent that no pattern matches, or a side without agents.
    """
    _, side_of = assign_sides(agents, text, env_id, needed_by="mnemo match")
    return [[agent for agent, side in zip(agents, side_of, strict=True) if side == s] for s in (0, 1)]


# --------------------------------------------------------------------------- playing
class MatchEnvs:
    """Makes the envs of one match: the plain env, and one per side for a scripted player (the env plays it)."""

    def __init__(self, env_id: str, env_kwargs: dict, env_import: tuple[str, ...]):
        self.env_id, self.env_kwargs, self.env_import = env_id, env_kwargs, env_import
        # Each agent's spaces are checked against the policy that plays it (``for_players``), not against its side's
        # or the env's other agents': a run with --policy-map plays agents of different spaces.
        self.plain = make_parallel_env(env_id, env_kwargs, env_import, check_policies=False)
        self._scripted: dict[int, Any] = {}
        module = sys.modules.get(resolve_factory(env_id, env_import).__module__)
        self.scripted_player: ScriptedPlayer | None = getattr(module, "scripted_player", None)
        """the env module's ``scripted_player(agent, obs, rng) -> action``, which plays the ``scripted`` player
        from each observation in the plain env; None: the module has none (the env may play it itself, through
        ``scripted_env_kwargs``)"""

    def scripted_env(self, side: int, agents: list[str]) -> Any:
        """The env with ``agents`` (one side) played by the env's scripted bot.

        Raises:
            ConfigError: the env's module defines no ``scripted_env_kwargs``, or it refuses this side.
        """
        if side not in self._scripted:
            factory = resolve_factory(self.env_id, self.env_import)
            hook = getattr(sys.modules.get(factory.__module__), "scripted_env_kwargs", None)
            if hook is None:
                raise ConfigError(f"{self.env_id} has no scripted bot (its module defines no scripted_env_kwargs); "
                                  f"play a run or 'random' against it.")
            try:
                extra = hook(list(agents))
            except ValueError as exc:
                raise ConfigError(f"{self.env_id}'s scripted bot cannot play the side {agents}: {exc}.") from exc
            self._scripted[side] = make_parallel_env(self.env_id, {**self.env_kwargs, **extra}, self.env_import,
                                                     check_policies=False)
        return self._scripted[side]

    def for_players(self, players: tuple[Player, Player], side_agents: list[list[str]]) -> Any:
        """The env in which ``players[s]`` plays side ``s``: the plain one (where a ``scripted_player`` plays the
        scripted bot's side), or the one where the env plays that side itself; each run's spaces checked
        against it.

        Raises:
            ConfigError: a scripted bot the env does not have, or spaces that differ from a run's.
        """
        scripted = [s for s in (0, 1) if players[s].bot == "scripted"]
        env_plays_it = scripted and self.scripted_player is None
        env = self.scripted_env(scripted[0], side_agents[scripted[0]]) if env_plays_it else self.plain
        for s in (0, 1):
            _check_spaces(players[s], env, side_agents[s], self.env_id)
        return env

    def close(self) -> None:
        for env in (self.plain, *self._scripted.values()):
            env.close()


def _act(player: Player, env: Any, agents: list[str], obs: dict, rng: np.random.Generator,
         scripted: ScriptedPlayer | None = None) -> dict[str, Any]:
    """Actions of ``player``'s acting ``agents`` this step (those with an observation).

    The random bot draws uniformly from the legal actions where the observation holds an ``"action_mask"``
    (a Discrete space), else from the whole action space; the scripted bot, where the env does not play it
    itself, is the env module's ``scripted`` policy.
    """
    if not agents:
        return {}
    if player.runners:
        by_policy: dict[str, list[str]] = {}
        for a in agents:  # each agent with the policy that drives it, one batched act per policy
            by_policy.setdefault(player.policy_for(a), []).append(a)
        out = {}
        for name, members in by_policy.items():
            actions = player.runners[name].act([obs[a] for a in members], agent_ids=members)
            out.update({a: (int(x) if np.ndim(x) == 0 else x) for a, x in zip(members, actions, strict=True)})
        return {a: out[a] for a in agents}
    if player.bot == "scripted" and scripted is not None:
        return {a: scripted(a, obs[a], rng) for a in agents}
    out = {}
    for a in agents:
        space = env.action_space(a)
        mask = obs[a].get("action_mask") if isinstance(obs[a], dict) else None
        if mask is not None and isinstance(space, spaces.Discrete):
            out[a] = int(space.start + rng.choice(np.flatnonzero(np.asarray(mask))))
        else:
            out[a] = int(rng.integers(space.n)) if hasattr(space, "n") and space.shape == () else space.sample()
    return out


def _check_spaces(player: Player, env: Any, agents: list[str], env_id: str) -> None:
    """Refuse, in one line, an agent of ``player``'s side that no policy of it can drive: one its run's map does
    not cover, one whose spaces differ from its policy's, or one outside the agents of a policy that reads an
    agent-index input (``--agent-index-input``: its one-hot has a slot for its own agents only)."""
    for a in agents if player.runners else ():
        name = player.policy_for(a)
        runner = player.runners[name]
        policy = "the policy" if name == SHARED_POLICY else f"the policy {name!r}"
        if env.observation_space(a) != runner.observation_space or env.action_space(a) != runner.action_space:
            raise ConfigError(f"{player.label}: agent {a} of {env_id} has observation space {env.observation_space(a)}"
                              f" and action space {env.action_space(a)}, but {policy} was trained on "
                              f"{runner.observation_space} and {runner.action_space}; play that side with a policy "
                              f"of its spaces (--policy NAME, or --sides), or was the env changed since?")
        if runner.policy.agents and a not in runner.policy.agents:
            raise ConfigError(f"{player.label}: {policy} reads an agent-index input over its agents "
                              f"({', '.join(runner.policy.agents)}), and agent {a} is not one of them; play "
                              f"{a} with the policy its run's --policy-map gives it (drop --policy), or pick other "
                              f"--sides.")


def play_match(a: Player, b: Player, games: int, seed: int = 0, sides: str | None = None,
               env_id: str | None = None, env_kwargs: dict | None = None,
               on_game: Callable[[int, dict], None] | None = None) -> tuple[MatchStats, dict[str, Any]]:
    """Play ``games`` whole episodes between ``a`` and ``b`` (see the module docstring for the rules).

    Returns:
        (A's results, a description of the match: env id, the two sides' agents).

    Raises:
        ConfigError: the players cannot meet in one env (``match_env_config``, ``parse_sides``, two scripted
            bots, a scripted bot the env does not have, spaces that differ from a run's).
    """
    if games < 1:
        raise ConfigError(f"--games must be at least 1, got {games}.")
    env_id, env_kwargs, env_import = match_env_config(a, b, env_id, env_kwargs)
    game = MatchEnvs(env_id, env_kwargs, env_import)
    try:
        if a.bot == b.bot == "scripted" and game.scripted_player is None:
            raise ConfigError("Both players are the env's scripted bot, which the env plays itself; make one of "
                              "them a run or 'random'.")
        side_agents = parse_sides(sides, list(game.plain.possible_agents), env_id)
        stats = MatchStats()
        rng = np.random.default_rng(seed)
        for g in range(games):
            players = (a, b) if g % 2 == 0 else (b, a)  # players[s] plays side s
            env = game.for_players(players, side_agents)
            result = _play_game(env, players, side_agents, seed + g, rng, game.scripted_player)
            a_side = 0 if g % 2 == 0 else 1
            _count(stats, result, a_side)
            if on_game is not None:
                on_game(g, {**result, "a_side": a_side})
        return stats, {"env_id": env_id, "env_kwargs": env_kwargs, "sides": side_agents}
    finally:
        game.close()


@dataclass
class Turn:
    """One step of a game, before the env takes it: what the live agents see and do, and the game so far."""

    obs: dict[str, Any]
    """every acting agent's observation"""
    actions: dict[str, Any]
    """every acting agent's action"""
    live: list[list[str]]
    """each side's live agents (in ``env.agents``): the acting ones, and in a turn-based env the waiting ones"""
    steps: int
    """env steps taken before this one"""
    returns: list[float]
    """each side's summed rewards so far"""
    points: list[int] | None
    """each side's points so far, where the env reports them (None: it does not)"""
    rewards: dict[str, float]
    """the previous step's rewards by agent (empty at the first turn)"""


def game_turns(env: Any, players: tuple[Player, Player], side_agents: list[list[str]], seed: int,
               rng: np.random.Generator, before_act: Callable[[], None] | None = None,
               scripted: ScriptedPlayer | None = None) -> Generator[Turn, None, dict[str, Any]]:
    """Play one episode, yielding each ``Turn`` before the env steps it (``agents.watch`` draws it there);
    returns each side's summed return, its points (None where the env reports none), the episode's length and
    the last step's rewards by agent.

    The agents that act at a step are the live ones (``env.agents``) the env gave an observation. In a
    turn-based env (``metadata["turn_based"]``) that is the player to move; a live agent without an
    observation is waiting, and its runner state is held, untouched, until its next turn.

    Hidden state: every run's agents start the game from the zero state (a run trained with
    ``carry_across_episodes`` keeps them), and an agent that left (out of ``env.agents``) is forgotten, so it
    starts from zero if it comes back. ``before_act`` is called at each step once those rules have been
    applied, just before the players act (the inspector reads an agent's state there). ``scripted`` is the env
    module's ``scripted_player`` for a scripted player the env does not play itself (``MatchEnvs``).
    """
    for player in players:
        for runner in player.runners.values():
            if not runner.carry_across_episodes:
                runner.remove()  # every agent starts the game from the zero state
    obs, infos = env.reset(seed=seed)
    returns = [0.0, 0.0]
    last_info = dict(infos)
    steps, rewards = 0, {}
    while env.agents:
        live = [[x for x in env.agents if x in members] for members in side_agents]
        for s in (0, 1):
            for runner in players[s].runners.values():  # an agent that left is forgotten: it comes back from zero
                gone = [x for x in runner.agent_ids if x in side_agents[s] and x not in live[s]]
                if gone:
                    runner.remove(gone)
        if before_act is not None:
            before_act()
        actions: dict[str, Any] = {}
        for s in (0, 1):
            acting = [x for x in live[s] if x in obs]  # the others wait (a turn-based env): their state is held
            actions.update(_act(players[s], env, acting, obs, rng, scripted))
        yield Turn(obs, actions, live, steps, list(returns), side_points(last_info, side_agents), rewards)
        obs, rewards, _, _, infos = env.step(actions)
        steps += 1
        last_info.update(infos)
        for s in (0, 1):
            returns[s] += sum(float(rewards.get(x, 0.0)) for x in side_agents[s])
    points = side_points(last_info, side_agents)
    return {"returns": returns, "points": points, "steps": steps, "rewards": dict(rewards)}


def _play_game(env: Any, players: tuple[Player, Player], side_agents: list[list[str]], seed: int,
               rng: np.random.Generator, scripted: ScriptedPlayer | None = None) -> dict[str, Any]:
    """One episode, start to end (``game_turns``)."""
    turns = game_turns(env, players, side_agents, seed, rng, scripted=scripted)
    while True:
        try:
            next(turns)
        except StopIteration as end:
            return end.value


def side_points(infos: dict, side_agents: list[list[str]]) -> list[int] | None:
    """Each side's points from the last ``infos[agent]["score"]`` (points by agent name), or None."""
    score = next((info["score"] for info in infos.values()
                  if isinstance(info, dict) and isinstance(info.get("score"), dict)), None)
    if score is None:
        return None
    return [int(sum(score.get(x, 0) for x in members)) for members in side_agents]


def _count(stats: MatchStats, result: dict, a_side: int) -> None:
    points = result["points"]
    mine, theirs = (points[a_side], points[1 - a_side]) if points is not None else (
        result["returns"][a_side], result["returns"][1 - a_side])
    stats.games += 1
    stats.steps.append(result["steps"])
    if mine > theirs:
        stats.wins += 1
    elif mine < theirs:
        stats.losses += 1
    else:
        stats.draws += 1
    if points is not None:
        stats.points_for = (stats.points_for or 0) + points[a_side]
        stats.points_against = (stats.points_against or 0) + points[1 - a_side]


# --------------------------------------------------------------------------- report
def report_lines(a: Player, b: Player, stats: MatchStats, about: dict[str, Any], seed: int) -> list[str]:
    """The lines ``mnemo match`` prints."""
    s = stats.summary()
    sides = " | ".join(",".join(members) for members in about["sides"])
    lines = [
        f"{about['env_id']}: {s['games']} games (seeds {seed}..{seed + s['games'] - 1}), sides {sides}, A and B "
        f"alternating sides, {s['mean_steps']:.0f} steps a game on average",
        f"A: {a.label}",
        f"B: {b.label}",
        f"A: {s['wins']} wins, {s['draws']} draws, {s['losses']} losses",
        f"A's score rate {s['score']:.3f} (95% CI {s['score_ci95'][0]:.3f} to {s['score_ci95'][1]:.3f})",
        f"Elo difference A - B: {format_elo(s['elo'])} (95% CI {format_elo(s['elo_ci95'][0])} to "
        f"{format_elo(s['elo_ci95'][1])})",
    ]
    if "points_for" in s:
        total = s["points_for"] + s["points_against"]
        lines.append(f"points won by A: {s['points_for']} of {total} = {s['points_fraction']:.3f} "
                     f"(95% CI {s['points_ci95'][0]:.3f} to {s['points_ci95'][1]:.3f})")
    return lines


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mnemo match",
        description="Play two players against each other for N whole episodes of a multi-agent env and print "
                    "wins / draws / losses for A, its score rate with a 95%% Wilson interval and the Elo "
                    "difference it implies (and points won, where the env reports points).")
    parser.add_argument("a", metavar="A", help="A run directory (or checkpoint file), RUN@snapshot:STEP (a "
                                               "self-play run's pool snapshot; STEP, 'first' or 'last'), "
                                               "'scripted' or 'random'.")
    parser.add_argument("b", metavar="B", help="The other player, the same kinds.")
    parser.add_argument("--games", type=int, default=100, help="Episodes to play (default: 100).")
    parser.add_argument("--seed", type=int, default=0, help="Game g is seeded SEED + g; also seeds sampling and "
                                                            "the random bot (default: 0).")
    parser.add_argument("--sides", default=None, metavar="PATTERN=SIDE,...",
                        help="The two sides, as --self-play reads them: fnmatch patterns over agent names, the "
                             "first match wins, e.g. 'red_*=red,*=blue' (default: each of the env's two agents is "
                             "a side).")
    parser.add_argument("--which", default=LATEST, help="Checkpoint of a run directory: latest.pt or best.pt "
                                                        "(for both players; --which-b sets B's).")
    parser.add_argument("--which-b", default=None, help="B's checkpoint, when it differs from --which.")
    parser.add_argument("--policy", default=None, metavar="NAME",
                        help="For a run with --policy-map: the one policy that plays every agent of its side (A's; "
                             "--policy-b sets B's); without it such a run plays each agent with the policy its "
                             "map gives it.")
    parser.add_argument("--policy-b", default=None, metavar="NAME", help="B's policy name (default: --policy).")
    parser.add_argument("--stochastic", action="store_true",
                        help="Runs sample their actions (seeded) instead of taking the most likely one.")
    parser.add_argument("--env-id", default=None, help="The env, when both players are bots.")
    parser.add_argument("--env-kwargs", default=None, metavar="JSON", help="Its arguments, when both are bots.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the lines.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env_kwargs = None
        if args.env_kwargs is not None:
            try:
                env_kwargs = json.loads(args.env_kwargs)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--env-kwargs is not JSON ({exc}); write e.g. '{{\"flicker_p\": 0.3}}'.") from exc
            if not isinstance(env_kwargs, dict):
                raise ConfigError("--env-kwargs must be a JSON object, e.g. '{\"flicker_p\": 0.3}'.")
        det = not args.stochastic
        a, b = load_players(args.a, args.b, args.which, args.which_b, args.policy, args.policy_b, det, args.seed)
        stats, about = play_match(a, b, args.games, args.seed, args.sides, args.env_id, env_kwargs)
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"a": a.label, "b": b.label, "seed": args.seed, **about, **stats.summary()}))
    else:
        print("\n".join(report_lines(a, b, stats, about, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
