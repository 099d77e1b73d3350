"""The built-in multi-agent games (envs/multiagent/): PettingZoo's API, determinism, respawns, spaces, frames,
and scripted baselines that beat random play."""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from pettingzoo.test import parallel_api_test

from envs.multiagent import MULTIAGENT_ENVS, fog_team, storm_harvest
from envs.multiagent.baselines import team_returns


def make(env_id: str, **kwargs):
    module, name = MULTIAGENT_ENVS[env_id].split(":")
    return getattr(importlib.import_module(module), name)(**kwargs)


# The simultaneous-move games, which PettingZoo's parallel test and the checks below fit; the turn-based one
# (Pairs: only the player to move observes and acts) has its own tests in tests/test_card_game.py.
IDS = sorted(env_id for env_id in MULTIAGENT_ENVS if not make(env_id).metadata.get("turn_based"))


def play(env, seed: int, steps: int) -> list:
    """(agents, obs, rewards, terminations, truncations) per step of random play, resetting when over."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = [(list(env.agents), {a: o.copy() for a, o in obs.items()})]
    for _ in range(steps):
        if not env.agents:
            obs, _ = env.reset()
        obs, rewards, terms, truncs, _ = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
        trace.append((list(env.agents), {a: o.copy() for a, o in obs.items()}, rewards, terms, truncs))
    return trace


@pytest.mark.parametrize("env_id", IDS)
def test_parallel_api(env_id):
    # PettingZoo's test forbids an agent to come back once terminated, so StormHarvest runs it without respawns.
    kwargs = {"respawn": False} if env_id == "mnemo/StormHarvest-v0" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the test reports missing or extra keys as warnings
        parallel_api_test(make(env_id, **kwargs), num_cycles=300)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id):
    first, second = play(make(env_id), 3, 150), play(make(env_id), 3, 150)
    for a, b in zip(first, second, strict=True):
        assert a[0] == b[0]
        assert a[1].keys() == b[1].keys() and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
        assert a[2:] == b[2:]
    other = play(make(env_id), 4, 0)[0][1]
    assert any(not np.array_equal(other[a], first[0][1][a]) for a in other)


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_hold_observations_and_state(env_id):
    env = make(env_id)
    shared = env.observation_space(env.possible_agents[0])
    assert all(env.observation_space(a) is shared and env.action_space(a) is env.action_space(env.possible_agents[0])
               for a in env.possible_agents)
    assert shared.dtype == np.float32 and shared.low.min() >= -1 and shared.high.max() <= 1
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    for _ in range(300):
        assert all(shared.contains(o) for o in obs.values())
        state = env.state()
        assert state.shape == env.state_space.shape and env.state_space.contains(state)
        if not env.agents:
            obs, _ = env.reset()
            continue
        obs, *_ = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})


@pytest.mark.parametrize("env_id", IDS)
def test_time_limit_truncates_every_agent(env_id):
    env = make(env_id, max_steps=7)
    env.reset(seed=1)
    while env.agents:
        last = list(env.agents)
        _, _, terms, truncs, _ = env.step(dict.fromkeys(env.agents, 0))  # everyone stays
    assert env.game.t == 7
    assert all(truncs[a] != terms[a] for a in last)  # caught now, or truncated
    assert any(truncs.values())


@pytest.mark.parametrize("env_id", IDS)
def test_snapshot_resumes_exactly(env_id):
    env = make(env_id)
    rng = np.random.default_rng(5)
    env.reset(seed=5)
    for _ in range(6):
        env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
    twin = copy.deepcopy(env)
    for _ in range(20):
        if not env.agents:
            break
        actions = {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
        a, b = env.step(actions), twin.step(actions)
        assert a[2:4] == b[2:4] and all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
        assert env.agents == twin.agents


def test_agents_die_and_come_back_with_the_same_name():
    env = storm_harvest.make_env(respawn_delay=3)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    counts, gone, back = set(), {}, []
    while env.agents:
        live = list(env.agents)
        obs, rewards, terms, _, infos = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
        counts.add(len(env.agents))
        for agent in live:
            assert agent in obs and agent in rewards
            if terms[agent]:
                assert agent not in env.agents and rewards[agent] < 0
                gone[agent] = env.game.t
        for agent, info in infos.items():
            if info["respawned"]:
                assert agent not in live and agent in env.agents and agent in gone
                assert env.game.t - gone.pop(agent) == 3 and rewards[agent] == 0 and not terms[agent]
                assert env.observation_space(agent).contains(obs[agent])
                back.append(agent)
    assert len(counts) >= 3, f"the number of live agents took only the values {counts}"
    assert len(back) >= 3


def test_without_respawn_the_caught_stay_out():
    env = storm_harvest.make_env(respawn=False)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    out = set()
    while env.agents:
        _, _, terms, _, infos = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
        out |= {a for a, done in terms.items() if done}
        assert not out & set(env.agents) and not any(i["respawned"] for i in infos.values())
    assert out


def test_fog_team_cue_only_at_the_start_and_a_wrong_pad_ends_it():
    env = fog_team.make_env(n_agents=2, wall_density=0.0)
    obs, _ = env.reset(seed=2)
    side2 = 25
    for i, agent in enumerate(env.possible_agents):
        assert obs[agent][3 * side2 + env.game.target[i]] == 1 and obs[agent][3 * side2 : 3 * side2 + 4].sum() == 1
    obs, rewards, *_ = env.step(dict.fromkeys(env.agents, 0))
    assert all(o[3 * side2 : 3 * side2 + 4].sum() == 0 for o in obs.values())
    assert rewards == dict.fromkeys(env.possible_agents, -0.01)
    # Walk agent 0 to a pad that is not its own: the episode ends for both with the penalty.
    wrong = next(k for k in range(4) if k not in env.game.target)
    corner = tuple(env.params.corners()[wrong])
    terms = {}
    while env.agents:
        action = fog_team._walk_to(env, "agent_0", wrong, np.random.default_rng(0))
        _, rewards, terms, _, _ = env.step({"agent_0": action, "agent_1": 0})
    assert tuple(env.game.pos[0]) == corner and all(terms.values()) and rewards["agent_1"] == -1.01


def test_scripted_baselines_beat_random():
    team = fog_team.make_env()
    seeds = range(20)
    scripted = team_returns(team, fog_team.scripted_policy, seeds, shared=True).mean()
    random = team_returns(team, fog_team.random_policy, seeds, shared=True).mean()
    guess = team_returns(team, fog_team.fixed_guess_policy, seeds, shared=True).mean()
    assert scripted > 1.7 and random < -0.5 and guess < 0.0, (scripted, random, guess)

    harvest = storm_harvest.make_env()
    seeds = range(4)
    scripted = team_returns(harvest, storm_harvest.scripted_policy, seeds).mean()
    random = team_returns(harvest, storm_harvest.random_policy, seeds).mean()
    assert scripted > random + 40, (scripted, random)


@pytest.mark.parametrize("env_id", IDS)
def test_rgb_array_frame(env_id):
    pytest.importorskip("pygame")
    env = make(env_id, render_mode="rgb_array")
    assert env._window is None
    env.reset(seed=0)
    env.step(dict.fromkeys(env.agents, 1))
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.shape[0] > 300
    assert frame.std() > 0
    env.close()
    assert env._window is None


def test_stepping_imports_no_pygame():
    code = (
        "import sys\n"
        "from envs.multiagent import MULTIAGENT_ENVS\n"
        "import importlib\n"
        "for target in MULTIAGENT_ENVS.values():\n"
        "    module, name = target.split(':')\n"
        "    env = getattr(importlib.import_module(module), name)()\n"
        "    obs, _ = env.reset(seed=0)\n"
        "    env.step(dict.fromkeys(obs, 0)); env.state()\n"
        "assert 'pygame' not in sys.modules, 'pygame was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("env_id", "kwargs"), [
    ("mnemo/FogTeam-v0", {"n_agents": 5}),
    ("mnemo/FogTeam-v0", {"wall_density": 0.9}),
    ("mnemo/StormHarvest-v0", {"hunter_speed": 1.5}),
    ("mnemo/StormHarvest-v0", {"respawn_delay": 0}),
    ("mnemo/StormHarvest-v0", {"render_mode": "ansi"}),
])
def test_bad_arguments_name_the_argument(env_id, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make(env_id, **kwargs)
