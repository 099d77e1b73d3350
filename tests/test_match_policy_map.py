"""``mnemo match`` and ``mnemo watch --opponent`` with runs trained with ``--policy-map``: such a run plays its side
agent by agent with the policy its map gives each agent (each agent's actions and states are those of
``load_policy(run, policy=NAME)`` stepped by hand under training's hidden-state rules), or with the one policy
``--policy NAME`` names; watch plays the games match plays, its inspector reads the policy that drives the agent
of either player; the refusals are one line, exit 2.

Toy env: tests/toy_multiagent_envs.py ``RolesEnv`` (``hunter_0`` with Box(3,) / Discrete(3), ``prey_0`` and
``prey_1`` with Box(2,) / Discrete(2), which die and come back), in two sides: ``hunter_0`` and ``prey_0``
against ``prey_1``. Bounds: states to 1e-5, actions exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from agents.config import ConfigError
from agents.deploy import match
from agents.deploy.match import MatchEnvs, game_turns, load_player, match_env_config, parse_sides, play_match
from agents.run.checkpoint import load_policy
from agents.train import cli as train
from agents.trees import obs_to_tensor, tree_map
from agents.watch import viewer
from agents.watch.memory_panel import MemoryPanel
from agents.watch.viewer import FrameSink, watch

ROLES = "toy_multiagent_envs:make_roles"
ROLE_MAP = "hunter_*=hunter,prey_*=prey"
SIDES = "hunter_0=hunt,prey_0=hunt,prey_1=lone"
FAST = ["--total-steps", "192", "--num-envs", "2", "--num-steps", "32", "--hidden-size", "8", "--bptt-len", "8",
        "--update-epochs", "1", "--eval-episodes", "0", "--progress", "false", "--torch-threads", "1"]
QUIET = {"log": lambda line: None}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs with the hunter / prey map (seeds 1 and 2), and one with a policy per agent and an agent-index
    input (``p0``'s one-hot has a slot for ``prey_0`` alone)."""
    root = tmp_path_factory.mktemp("matchmap")
    mapped, other, indexed = root / "mapped", root / "other", root / "indexed"
    for run, seed in ((mapped, 1), (other, 2)):
        assert train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), "--seed", str(seed),
                           *FAST]) == 0
    assert train.main(["--env-id", ROLES, "--policy-map", "prey_0=p0,prey_1=p1,hunter_*=hunter", "--run-dir",
                       str(indexed), "--agent-index-input", *FAST]) == 0
    return mapped, other, indexed


def _role(agent: str) -> str:
    return agent.split("_")[0]


@torch.no_grad()
def test_each_agent_acts_with_its_own_policys_network_and_state(runs):
    """Game 0 the mapped run plays hunter_0 and prey_0, game 1 prey_1 (sides alternate); every action and state
    is its policy's, stepped by hand from the zero state at the game's start and when a prey comes back."""
    mapped, _, _ = runs
    a, b = load_player(str(mapped)), load_player("random")
    assert a.policy_map == ROLE_MAP and set(a.runners) == {"hunter", "prey"} and "by its --policy-map" in a.label
    with pytest.raises(ValueError, match="runner_for"):
        _ = a.runner  # two policies play: there is no one runner
    networks = {name: load_policy(mapped, policy=name)[0] for name in ("hunter", "prey")}
    game = MatchEnvs(*match_env_config(a, b))
    side_agents = parse_sides(SIDES, list(game.plain.possible_agents), ROLES)
    rng, comebacks, checked = np.random.default_rng(0), 0, 0
    try:
        for g in range(4):
            players = (a, b) if g % 2 == 0 else (b, a)
            mine = side_agents[g % 2]
            env = game.for_players(players, side_agents)
            turns, states = game_turns(env, players, side_agents, seed=g, rng=rng), {}
            for turn in turns:
                live = {x for members in turn.live for x in members}
                for agent in [x for x in states if x not in live]:
                    del states[agent]  # it left: it comes back from the zero state
                    comebacks += 1
                for agent in (x for x in mine if x in turn.actions):
                    net = networks[_role(agent)]
                    start = agent not in states
                    obs_t = tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(turn.obs[agent], torch.device("cpu")))
                    out = net.step(obs_t, net.initial_state(1) if start else states[agent],
                                   torch.tensor([float(start)]), deterministic=True)
                    states[agent] = out.state
                    assert turn.actions[agent] == int(net.action_head.to_env(out.action)[0]), (g, turn.steps, agent)
                    runner = a.runner_for(agent)
                    assert runner is a.runners[_role(agent)]
                    torch.testing.assert_close(runner.get_state(agent), out.state[:, :, 0], atol=1e-5, rtol=0)
                    checked += 1
            assert set(a.runners["hunter"].agent_ids) <= {"hunter_0"}  # each runner holds its own agents only
            assert set(a.runners["prey"].agent_ids) <= {"prey_0", "prey_1"}
    finally:
        game.close()
    assert checked > 40 and comebacks > 0  # the prey did leave and come back


def test_a_match_between_two_mapped_runs_on_the_command_line(runs, capsys):
    mapped, other, _ = runs
    assert match.main([str(mapped), str(other), "--games", "4", "--sides", SIDES, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["games"] == 4 and out["sides"] == [["hunter_0", "prey_0"], ["prey_1"]]
    assert out["a"] == f"{mapped} (policies hunter, prey by its --policy-map)"


def test_policy_forces_one_policy_on_every_agent_of_the_side(runs):
    """``--policy prey`` on the side of both prey: one runner, the prey network, which the map gives both of them
    too, so the game is the map's, step for step (one game: in the next A would play the hunter's side)."""
    mapped, _, _ = runs
    prey_side = "prey_*=prey,hunter_0=hunter"
    results = {}
    for policy in (None, "prey"):
        a = load_player(str(mapped), policy=policy)
        assert list(a.runners) == (["hunter", "prey"] if policy is None else ["prey"])
        assert (a.policy_map is None) == (policy is not None) and (policy is None or "(policy prey)" in a.label)
        games = []
        play_match(a, load_player("random"), 1, seed=5, sides=prey_side, on_game=lambda g, r, out=games: out.append(r))
        results[policy] = games
    assert results[None] == results["prey"]


class ListSink(FrameSink):
    def __init__(self):
        self.frames = []

    def add(self, frame, title=""):
        self.frames.append(frame)
        return True


def test_a_watched_match_is_the_game_match_plays(runs):
    mapped, other, _ = runs
    result = watch(mapped, episodes=2, seed=3, sink=ListSink(), opponent=str(other), sides=SIDES, **QUIET)
    games = []
    play_match(load_player(str(mapped)), load_player(str(other)), 1, seed=3, sides=SIDES,
               on_game=lambda g, r: games.append(r))
    assert result.lengths[0] == games[0]["steps"] and result.returns[0] == pytest.approx(games[0]["returns"][0])


@pytest.mark.parametrize(("agent", "side", "owner", "policy"), [
    ("hunter_0", "hunt", "a", "hunter"), ("prey_0", "hunt", "a", "prey"),  # A's agents, by A's map
    ("prey_1", "hunt", "b", "prey"),  # B's agent
    ("prey_1", "lone", "a", "prey"), ("hunter_0", "lone", "b", "hunter"),  # A on the other side
])
def test_the_inspector_reads_the_policy_that_drives_the_agent(runs, monkeypatch, agent, side, owner, policy):
    """The panel's probe is the network of the agent's own player and policy, and each of its columns is recomputed
    from the state that runner held, checked against the state it held after (the probe raises past 1e-4)."""
    mapped, other, _ = runs
    probes, pushed = [], []
    init, push = MemoryPanel.__init__, MemoryPanel.push
    monkeypatch.setattr(MemoryPanel, "__init__", lambda self, probe, **kw: (probes.append(probe),
                                                                             init(self, probe, **kw))[1])
    monkeypatch.setattr(MemoryPanel, "push", lambda self, readout: (pushed.append(readout), push(self, readout))[1])
    watch(mapped, episodes=2, seed=1, sink=ListSink(), opponent=str(other), sides=SIDES, side=side, inspect=True,
          agent=agent, **QUIET)
    (probe,) = probes
    expected = load_policy(mapped if owner == "a" else other, policy=policy)[0].state_dict()
    wrong = load_policy(other if owner == "a" else mapped, policy=policy)[0].state_dict()
    got = probe.policy.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    assert not all(torch.equal(got[k], wrong[k]) for k in wrong)  # the other run's policy of that name differs
    assert sum(r.episode_start for r in pushed) >= 2  # each game starts it from the zero state


@pytest.mark.parametrize(("command", "expected"), [
    (["match", "{mapped}", "random", "--sides", SIDES, "--policy", "hunter"],
     "agent prey_0 of toy_multiagent_envs:make_roles has observation space"),
    (["watch", "{mapped}", "--opponent", "random", "--sides", SIDES, "--policy", "hunter"],
     "but the policy 'hunter' was trained on"),
    (["match", "{mapped}", "random", "--sides", SIDES, "--policy", "wolf"], "it has no policy 'wolf'"),
    (["watch", "{mapped}", "--opponent", "{other}", "--sides", SIDES, "--policy-b", "wolf"], "no policy 'wolf'"),
    (["watch", "{mapped}", "--policy", "prey"], "add --opponent PLAYER"),
    (["match", "{indexed}", "random", "--sides", "prey_*=prey,hunter_*=hunter", "--policy", "p0"],
     "the policy 'p0' reads an agent-index input over its agents (prey_0), and agent prey_1 is not one of them"),
    (["watch", "{indexed}", "--opponent", "random", "--sides", "prey_*=prey,hunter_*=hunter", "--policy", "p0"],
     "agent prey_1 is not one of them"),
])
def test_refusals_are_one_line_exit_2(runs, capsys, command, expected):
    mapped, other, indexed = runs
    name, *args = (x.format(mapped=mapped, other=other, indexed=indexed) for x in command)
    main = match.main if name == "match" else viewer.main
    if name == "watch":
        args += ["--record", "/dev/null/never.gif"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_an_agent_its_runs_map_does_not_cover_is_refused(runs):
    """A run's map covers every agent of the env it trained on; an agent outside it (a map that no longer covers
    it) is refused in one line naming the fix."""
    mapped, _, _ = runs
    a = load_player(str(mapped))
    a.policy_map = "hunter_*=hunter"
    with pytest.raises(ConfigError, match=r"gives agent 'prey_0' no policy; play its side with one of its policies "
                                          r"\(hunter, prey\) with --policy NAME") as err:
        play_match(a, load_player("random"), 1, sides=SIDES)
    assert "\n" not in str(err.value)


def test_a_sampling_players_policies_draw_from_streams_of_their_own(runs):
    """With ``--stochastic`` each policy of a mapped run samples from its own stream: the first keeps the
    player's seed (a run of one policy samples as before), the others never repeat its draws."""
    mapped, _, _ = runs
    player = load_player(str(mapped), deterministic=False, seed=7)
    draws = {name: torch.rand(8, generator=runner.generator) for name, runner in player.runners.items()}
    assert len(draws) == 2
    first, second = draws.values()
    assert not torch.equal(first, second)
    assert torch.equal(first, torch.rand(8, generator=torch.Generator().manual_seed(7)))
