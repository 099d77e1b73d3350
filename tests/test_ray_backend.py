"""The Ray backend (``--backend ray``, agents/rollout/ray_collector.py): flags, bookkeeping, equality, faults, resume.

One Ray instance (3 CPUs: two actors and a spare for a restarted one) serves the whole module. Tests that
need Ray skip where it is not installed; the missing-Ray error is tested with the import blocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.config import ConfigError, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.collector import EnvError
from agents.train.trainer import Trainer
from tests.test_rollout_invariant import assert_sequence_path_reproduces

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SMALL = {"env_id": "mnemo/CartPoleNoVel-v1", "total_steps": 512, "num_envs": 4, "num_steps": 32, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False, "seed": 5,
         "normalize_obs": True, "checkpoint_every": 128}


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    from agents.rollout.ray_collector import worker_python_path

    # The actors import the tests' env modules (faulty_envs, toy_envs) too.
    path = os.pathsep.join([worker_python_path(), str(TESTS)])
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def _config(tmp_path, name: str, **overrides) -> TrainConfig:
    return TrainConfig().with_overrides({**SMALL, "run_dir": str(tmp_path / name), **overrides}).validate()


def _same_policy(a: Trainer, b: Trainer) -> bool:
    theirs = b.policy.state_dict()
    return all(torch.equal(value, theirs[key]) for key, value in a.policy.state_dict().items())


# ------------------------------------------------------------------ flags, and Ray as an optional extra
def test_flags_are_checked_against_the_backend_and_num_envs():
    base = TrainConfig().with_overrides({"num_envs": 8})
    with pytest.raises(ConfigError, match="--num-workers only apply to --backend ray; add --backend ray"):
        base.with_overrides({"num_workers": 2}).validate()
    with pytest.raises(ConfigError, match="pass --num-envs 6, or change --num-workers"):
        base.with_overrides({"backend": "ray", "num_workers": 2, "envs_per_worker": 3}).validate()
    with pytest.raises(ConfigError, match="--num-envs 8 is not 3 x 2"):
        base.with_overrides({"backend": "ray", "num_workers": 3}).validate()
    assert base.with_overrides({"backend": "ray"}).validate().worker_layout == (2, 4)
    assert base.with_overrides({"backend": "ray", "envs_per_worker": 2}).validate().worker_layout == (4, 2)


def test_workers_times_envs_per_worker_set_num_envs_on_the_command_line():
    from agents.train import cli as train

    config, _ = train.resolve_config(["--backend", "ray", "--num-workers", "3", "--envs-per-worker", "2"])
    assert config.env.num_envs == 6 and config.worker_layout == (3, 2)
    with pytest.raises(ConfigError, match="pass --num-envs 6"):
        train.resolve_config(["--backend", "ray", "--num-workers", "3", "--envs-per-worker", "2", "--num-envs", "8"])


def test_missing_ray_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from agents.train import cli as train

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = train.main(["--backend", "ray", "--total-steps", "64", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == 'error: --backend ray needs Ray, which is not installed: pip install -e ".[ray]" (or pip install ' \
                  '"ray>=2.30").'
    assert not (tmp_path / "run").exists()


def test_the_package_never_imports_ray_unless_asked():
    code = ("import sys, train, agents.train.trainer, agents.rollout.collector, agents.watch, agents.deploy.export; "
            "sys.exit('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------ the bookkeeping
@pytest.mark.parametrize(("core", "separate", "carry"), [("lstm", False, False), ("gru", True, True)])
def test_recomputed_logprobs_and_values_match_the_fragments(ray_instance, core, separate, carry):
    """The invariant with 2 actors: the joined fragments replay through the sequence path to 1e-5."""
    from agents.rollout.ray_collector import ray_collector

    config = TrainConfig().with_overrides({
        "env_id": "tests/Boundary-v0", "env_import": ("toy_envs",), "num_envs": 4, "num_steps": 24,
        "backend": "ray", "num_workers": 2, "core": core, "separate_critic": separate, "hidden_size": 16,
        "carry_across_episodes": carry, "normalize_obs": True}).validate()
    collector = ray_collector(config)
    try:
        torch.manual_seed(0)
        policy = RecurrentActorCritic(collector.observation_space, collector.action_space, config.policy)
        collector.start(policy, torch.device("cpu"), 0, 0)
        buf = collector.collect()
        policy.update_obs_normalizer(buf.obs)  # as the trainer does after each update
        collector.set_weights(policy.state_dict())
        buf = collector.collect()  # starts from carried, non-zero states
    finally:
        collector.close()
    assert buf.states.shape[-2] == 4 and buf.states[0].abs().sum() > 0
    assert_sequence_path_reproduces(policy, buf, carry)


@pytest.mark.parametrize("overrides", [
    {},
    # MountainCarNoVel's first episodes all return -200: --sparse-noise switches every actor's noise on at step
    # 896 (4 episodes, from 4 envs of 32 steps a rollout), as it does the local collector's.
    {"env_id": "mnemo/MountainCarNoVel-v0", "sparse_noise": 0.98, "sparse_noise_episodes": 4, "total_steps": 1280},
], ids=["cartpole", "sparse-noise"])
def test_one_worker_is_bitwise_the_local_run(ray_instance, tmp_path, overrides):
    """W = 1, E = N: the same batch and the same sampler seed, so the same run to the last bit."""
    local = Trainer(_config(tmp_path, "local", **overrides))
    local.train()
    remote = Trainer(_config(tmp_path, "ray", backend="ray", num_workers=1, **overrides))
    remote.train()
    assert _same_policy(local, remote)
    assert local.recent_returns == remote.recent_returns
    assert local.sparse_noise.state_dict() == remote.sparse_noise.state_dict()
    assert remote.sparse_noise.on == bool(overrides)


def test_two_workers_seed_env_i_as_the_local_run_does(ray_instance, tmp_path):
    """W = 2: env w * E + j is seeded like the local run's env w * E + j (the first observations agree); the
    actions differ, since each worker samples from its own generator (docs/ray.md)."""
    config = _config(tmp_path, "x", backend="ray", num_workers=2)
    from agents.rollout.collector import local_collector
    from agents.rollout.ray_collector import ray_collector

    rollouts = []
    for factory, cfg in ((local_collector, _config(tmp_path, "y")), (ray_collector, config)):
        collector = factory(cfg)
        torch.manual_seed(0)
        policy = RecurrentActorCritic(collector.observation_space, collector.action_space, cfg.policy)
        collector.start(policy, torch.device("cpu"), 7, 11)
        rollouts.append(collector.collect())
        collector.close()
    local, ray_run = rollouts
    assert torch.equal(local.obs[0], ray_run.obs[0])
    # Worker 0 samples with the local run's seed: its envs' first actions are the local run's.
    assert torch.equal(local.actions[0, :2], ray_run.actions[0, :2])


# ------------------------------------------------------------------ faults
def test_a_killed_actor_is_restarted_and_the_run_completes(ray_instance, tmp_path):
    from agents.rollout.ray_collector import WorkerRestarted

    trainer = Trainer(_config(tmp_path, "kill", backend="ray", num_workers=2))

    def kill(t: Trainer) -> None:
        if t.iteration == 1:
            ray_instance.kill(t.collector.workers[1])

    with pytest.warns(WorkerRestarted, match=r"Ray worker 1 \(envs 2-3\) died"):
        trainer.train(on_iteration=kill)
    assert trainer.global_step == 512 and trainer.collector.restarts == [0, 1]
    # The run's end (as a Ctrl-C's) closes the collector: no actor outlives it.
    for actor in trainer.collector.workers:
        with pytest.raises(ray_instance.exceptions.RayActorError):
            ray_instance.get(actor.close.remote(), timeout=60)


def test_a_hung_actor_times_out_by_name_and_is_replaced(ray_instance, tmp_path):
    from agents.rollout.ray_collector import WorkerRestarted

    config = _config(tmp_path, "hang", backend="ray", num_workers=2, env_id="tests/Faulty-v0",
                     env_import=("faulty_envs",), env_kwargs={"mode": "hang", "fail_index": 3, "fail_at": 40,
                                                              "base_seed": 5}, worker_timeout=6.0, total_steps=256)
    trainer = Trainer(config)
    hung = r"Ray worker 1 \(envs 2-3\) sent no answer \(its rollout\) within --worker-timeout 6 s"
    with pytest.warns(WorkerRestarted, match=hung):
        trainer.train()
    assert trainer.global_step == 256 and trainer.collector.restarts == [0, 1]


def test_an_env_error_in_an_actor_names_the_run_wide_env(ray_instance, tmp_path):
    config = _config(tmp_path, "raise", backend="ray", num_workers=2, env_id="tests/Faulty-v0",
                     env_import=("faulty_envs",), env_kwargs={"mode": "raise", "fail_index": 3, "fail_at": 40,
                                                              "base_seed": 5})
    with pytest.raises(EnvError, match="env 3 raised RuntimeError in step") as info:
        Trainer(config).train()
    assert info.value.env_index == 3 and "Resume with --resume" in str(info.value)


# ------------------------------------------------------------------ checkpoints and resume
def test_a_ray_run_resumes_exactly_and_with_another_worker_count(ray_instance, tmp_path):
    straight = Trainer(_config(tmp_path, "straight", backend="ray", num_workers=2))
    straight.train()

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 256:
            raise Crash

    config = _config(tmp_path, "crashed", backend="ray", num_workers=2)
    with pytest.raises(Crash):
        Trainer(config).train(on_iteration=crash)
    shutil.copytree(tmp_path / "crashed", tmp_path / "other")
    resumed = Trainer(config, resume=True)
    assert resumed.resume_note is None and resumed.global_step == 256
    resumed.train()
    assert _same_policy(straight, resumed)

    # The same checkpoint with one worker of 4 envs: allowed, and it says what it resets. The crashed run's
    # directory as it was at the crash (copied then), so that the first 256 steps are not trained twice.
    one = _config(tmp_path, "other", backend="ray", num_workers=1)
    with pytest.warns(UserWarning, match="this run has 1 workers: every worker's action sampler is seeded afresh"):
        resumed_one = Trainer(one, resume=True)
    resumed_one.train()
    assert resumed_one.global_step == 512
