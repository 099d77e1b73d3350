"""A multi-agent run's shared policy in a game loop: mnemo export, PolicyRunner and OnnxRunner driving every
agent by name, agents that die (forgotten) and respawn (a new episode), checked against training's rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
pytest.importorskip("onnxruntime")

from agents import PolicyRunner
from agents.deploy import export_cli
from agents.deploy.export import load_onnx_metadata
from agents.deploy.onnx_runner import OnnxRunner
from agents.rollout.multiagent_env import make_parallel_env
from agents.run.checkpoint import load_policy
from agents.train import cli as train
from agents.train.evaluation import evaluate_multiagent

TINY = ["--total-steps", "128", "--num-envs", "2", "--num-steps", "32", "--hidden-size", "16",
        "--eval-episodes", "0", "--progress", "false"]


def _train_and_export(root, env_id, env_kwargs):
    run = root / "run"
    assert train.main(["--env-id", env_id, "--run-dir", str(run), "--env-kwargs", json.dumps(env_kwargs),
                       *TINY]) == 0
    assert export_cli.main([str(run), "--out", str(root / "policy.onnx")]) == 0
    return run, root / "policy.onnx"


@pytest.fixture(scope="module")
def fog(tmp_path_factory):
    return _train_and_export(tmp_path_factory.mktemp("fog"), "mnemo/FogTeam-v0", {"max_steps": 8})


@pytest.fixture(scope="module")
def storm(tmp_path_factory):
    return _train_and_export(tmp_path_factory.mktemp("storm"), "mnemo/StormHarvest-v0", {"max_steps": 30})


def play(env, runner, episodes: int, seed: int) -> dict:
    """The game loop of docs/runtime.md ("Many agents"): one state per agent name; an agent whose episode ends
    is forgotten, so its respawn starts a new episode from the zero state; a new env episode forgets everyone."""
    steps, returns, running, respawns, gone = [], [], {}, 0, set()
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        runner.remove()
        gone.clear()
        while env.agents:
            names = [a for a in env.possible_agents if a in env.agents]  # slot order, as in training
            respawns += len(gone & set(names))
            gone -= set(names)
            actions, info = runner.act([obs[a] for a in names], agent_ids=names, return_info=True)
            steps.append((names, np.asarray(actions), np.asarray(info.value), np.asarray(info.episode_start)))
            obs, rewards, terms, truncs, _ = env.step(dict(zip(names, actions, strict=True)))
            for a in names:
                running[a] = running.get(a, 0.0) + rewards[a]
                if terms[a] or truncs[a] or a not in env.agents:
                    returns.append(running.pop(a))
                    runner.remove([a])  # died or left: its next appearance is a new agent episode
                    gone.add(a)
    return {"steps": steps, "returns": returns, "respawns": respawns}


def _both_runners(run, onnx_path, env_id, env_kwargs, episodes=3, seed=5):
    env = make_parallel_env(env_id, env_kwargs)
    torch_play = play(env, PolicyRunner.load(run), episodes, seed)
    onnx_play = play(env, OnnxRunner(onnx_path), episodes, seed)
    env.close()
    assert len(torch_play["steps"]) == len(onnx_play["steps"])
    for (names, actions, values, starts), (o_names, o_actions, o_values, o_starts) in zip(
            torch_play["steps"], onnx_play["steps"], strict=True):
        assert names == o_names
        np.testing.assert_array_equal(actions, o_actions)
        np.testing.assert_allclose(values, o_values, atol=1e-5)
        np.testing.assert_array_equal(starts, o_starts)
    return torch_play


def test_export_notes_the_agents_in_the_metadata(fog):
    _, onnx_path = fog
    meta = load_onnx_metadata(onnx_path)
    assert meta["multiagent"] == {"env_id": "mnemo/FogTeam-v0", "agents": ["agent_0", "agent_1"], "num_agents": 2}


def test_fog_team_both_runners_agree_and_follow_training(fog):
    run, onnx_path = fog
    policy, config = load_policy(run)
    played = _both_runners(run, onnx_path, config.env.env_id, config.env.env_kwargs)
    assert all(len(names) == 2 for names, *_ in played["steps"])
    # The loop's agent episodes are those of training's evaluation (same rules, same env stream).
    expected = evaluate_multiagent(policy, config.env.env_id, 3, seed=5,
                                   env_kwargs=config.env.env_kwargs, num_envs=1)
    assert played["returns"] == pytest.approx(expected.tolist(), abs=1e-9)


def test_storm_harvest_deaths_and_respawns(storm):
    run, onnx_path = storm
    policy, config = load_policy(run)
    played = _both_runners(run, onnx_path, config.env.env_id, config.env.env_kwargs, episodes=2)
    assert played["respawns"] > 0  # agents died and came back under the same name, as new episodes
    starts = [bool(s) for _, _, _, step_starts in played["steps"] for s in step_starts]
    assert sum(starts) >= 2 * 4 + played["respawns"]  # every spawn (resets and respawns) began from zero
    expected = evaluate_multiagent(policy, config.env.env_id, 2, seed=5,
                                   env_kwargs=config.env.env_kwargs, num_envs=1)
    assert played["returns"] == pytest.approx(expected.tolist(), abs=1e-9)
