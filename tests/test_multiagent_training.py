"""Training on multi-agent envs end to end: the command line, the refusals, exact resume, and learning.

Toy envs: tests/toy_multiagent_envs.py (found by ``--env-id MODULE:CALLABLE`` as ``--env-import`` finds
modules; tests/ is on the path here).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("pettingzoo")

from agents.config import TrainConfig
from agents.deploy import export_cli
from agents.train import cli as train
from agents.train.trainer import ResumeWarning, Trainer
from agents.watch import viewer

RESPAWN = "toy_multiagent_envs:make_respawn"
FAST = ["--total-steps", "384", "--num-envs", "2", "--num-steps", "64", "--hidden-size", "16", "--bptt-len", "8",
        "--update-epochs", "1", "--eval-episodes", "6", "--progress", "false"]


def test_a_short_cli_run_writes_eval_returns_and_agent_steps(tmp_path, capsys):
    run = tmp_path / "run"
    code = train.main(["--env-id", RESPAWN, "--run-dir", str(run), *FAST])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["total_steps"] == 384  # env steps: T x N per rollout, as for single-agent runs
    # Every agent episode of 6 whole env episodes (3 agents, at least 3 episodes each in every env episode).
    assert summary["eval_episodes"] >= 6 * 3 * 3 and summary["eval_return_mean"] is not None
    assert summary["eval_sampled_return_mean"] is not None
    # Agent steps: the rows alive, fewer than T x N x 3 slots (agents come and go), more than T x N.
    assert 384 < summary["agent_steps"] < 3 * 384 and summary["agent_sps"] > 0
    assert f"mnemo watch {run} --inspect" in capsys.readouterr().err  # multi-agent runs play in mnemo watch too
    # Its shared policy exports (tests/test_multiagent_deploy.py); its env has no rgb_array frames to watch.
    assert export_cli.main([str(run), "--out", str(tmp_path / "p.onnx")]) == 0
    assert viewer.main([str(run), "--record", str(tmp_path / "w.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rgb_array" in err[0]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--backend", "ray", "--num-workers", "1", "--envs-per-worker", "2", "--async-envs"],
     "--async-envs is not supported"),
    (["--async-envs"], "--async-envs is not supported"),
    (["--refresh-start-states"], "--refresh-start-states is not supported"),
    (["--on-nonfinite", "skip"], "--on-nonfinite stop"),
    (["--env-id", "toy_multiagent_envs:make_not_parallel"], "not a pettingzoo ParallelEnv"),
    (["--env-id", "toy_multiagent_envs:make_mixed_spaces"], "different action spaces"),
    (["--env-id", "toy_multiagent_envs:no_such_callable"], "has no callable 'no_such_callable'"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, flags, expected):
    run = tmp_path / "run"
    code = train.main(["--env-id", RESPAWN, "--run-dir", str(run), *FAST, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expected in err[0], err
    assert not run.exists()


def test_missing_pettingzoo_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pettingzoo", None)  # import pettingzoo -> ImportError
    run = tmp_path / "run"
    code = train.main(["--env-id", RESPAWN, "--run-dir", str(run), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and 'pip install -e ".[multiagent]"' in err[0], err
    assert not run.exists()


SMALL = {"env_id": RESPAWN, "total_steps": 1536, "num_envs": 2, "num_steps": 64, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False, "checkpoint_every": 512,
         "seed": 3, "hidden_size": 16, "normalize_obs": True, "normalize_reward": True}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


@pytest.mark.parametrize("carry", [False, True])
def test_crash_and_resume_with_agents_mid_episode_is_bitwise_exact(tmp_path, carry):
    straight = make(tmp_path / "straight", carry_across_episodes=carry)
    straight.train()
    run = tmp_path / "run"

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 1280:
            raise Crash

    with pytest.raises(Crash):
        make(run, carry_across_episodes=carry).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # an exact resume warns about nothing
        resumed = make(run, resume=True, carry_across_episodes=carry)
    assert resumed.resume_note is None and resumed.global_step == 1024
    # Agents are mid-episode at the checkpoint: some alive, some absent, none all at a spawn.
    alive = resumed.collector.alive
    assert 0 < alive.sum() < alive.numel() and (resumed.collector.next_episode_start < alive).any()
    resumed.train()
    for key, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[key]), key
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for index in opt_a:
        for name in opt_a[index]:
            assert torch.equal(opt_a[index][name], opt_b[index][name]), (index, name)
    assert (straight.global_step, straight.episodes, straight.agent_steps) == \
        (resumed.global_step, resumed.episodes, resumed.agent_steps)
    assert list(straight.recent_returns) == list(resumed.recent_returns)
    for key, value in straight.reward_scaler.state_dict().items():
        assert torch.equal(value, resumed.reward_scaler.state_dict()[key]), key
    assert torch.equal(straight.collector.state, resumed.collector.state)


def test_evaluation_counts_every_agent_episode_of_whole_env_episodes():
    """Each env copy plays its fixed share of env episodes and all their agent episodes count: two copies
    playing 5 env episodes give exactly copy 0's first 2 and copy 1's first 3, however their lengths differ."""
    from agents.model.policy import RecurrentActorCritic
    from agents.rollout.multiagent_env import make_multiagent_vector_env
    from agents.train.evaluation import evaluate_multiagent

    envs = make_multiagent_vector_env(RESPAWN, 1)
    torch.manual_seed(0)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space,
                                  TrainConfig().with_overrides({"hidden_size": 16}).policy)
    envs.close()

    def returns(episodes, num_envs, seed, episode_len):
        return evaluate_multiagent(policy, RESPAWN, episodes, seed=seed, num_envs=num_envs,
                                   env_kwargs={"episode_len": episode_len}).tolist()

    both = returns(5, 2, 3, 30)
    apart = returns(2, 1, 3, 30) + returns(3, 1, 4, 30)
    assert sorted(both) == pytest.approx(sorted(apart))
    # Every agent episode of an env episode counts: each of the 3 agents lives at most 7 steps and is away at
    # most 3, so it has at least 3 episodes in a 30-step env episode (the last cut by the env's end).
    assert len(both) >= 5 * 3 * 3 and sum(apart) == pytest.approx(sum(both))
    assert len(returns(1, 8, 3, 30)) == len(returns(1, 1, 3, 30))  # more copies than episodes: one copy plays


@pytest.mark.slow
def test_lstm_learns_the_cooperative_cue_task_and_no_memory_does_not(tmp_path):
    """CueTeam: each agent must recall its own cue 5 steps later; memoryless play scores 0.5 on average.
    Seed 0 scores 1.0 (LSTM) and 0.41 (no memory) at 12k, 16k and 24k steps."""
    results = {}
    for core in ("lstm", "none"):
        config = TrainConfig().with_overrides({
            "env_id": "toy_multiagent_envs:make_cue_team", "core": core, "total_steps": 16_000, "num_envs": 8,
            "num_steps": 64, "hidden_size": 32, "learning_rate": 3e-3, "eval_episodes": 64, "progress": False,
            "seed": 0, "run_dir": str(tmp_path / core)}).validate()
        results[core] = Trainer(config).train()["eval_return_mean"]
    assert results["lstm"] >= 0.9, results
    assert results["none"] <= 0.7, results


def test_statistics_count_only_the_steps_agents_acted(tmp_path):
    """The observation normaliser and reward scaling's running return see alive steps only (absent rows hold
    zeros that would drag both toward 0)."""
    from agents.model.encoders import RunningMeanStd

    trainer = make(tmp_path / "run", total_steps=256, eval_episodes=0)
    trainer.train()
    assert 0 < trainer.agent_steps < 256 * 3
    counts = {float(m.count) for m in trainer.policy.modules() if isinstance(m, RunningMeanStd)}
    assert counts == {float(trainer.agent_steps)}
    assert float(trainer.reward_scaler.return_rms.count) == float(trainer.agent_steps)
