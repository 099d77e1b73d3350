"""The Ray backend on multi-agent envs (agents/rollout/ray_collector.py wrapping the multi-agent collectors).

Checked: the row layout that places each worker's agent slots where the local collector has them (per policy
block); one worker trains bitwise as the local run (one shared policy, a central critic, named policies); two
workers seed env copy i as the local run does and their joined rollout keeps the rollout invariant; a crash
and resume with agents mid-episode is bitwise exact with two workers and across backends; a killed worker is
replaced; and (slow) a real two-worker process SIGKILLed and resumed. Bounds: the invariant to 1e-5; everything
else bitwise.

One Ray instance (3 CPUs: two actors and a spare for a restarted one) serves the whole module.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.rollout.ray_collector import RowLayout
from agents.train.trainer import ResumeWarning, Trainer
from agents.trees import tree_map, tree_map2

TESTS = Path(__file__).resolve().parent
RESPAWN = "toy_multiagent_envs:make_respawn"
STATE_ENV = "toy_multiagent_envs:make_respawn_state"
ROLES = "toy_multiagent_envs:make_roles"
ROLE_MAP = "hunter_*=hunter,prey_*=prey"
SMALL = {"env_id": RESPAWN, "total_steps": 768, "num_envs": 2, "num_steps": 32, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 1, "eval_episodes": 0, "progress": False, "checkpoint_every": 256,
         "seed": 3, "hidden_size": 8, "normalize_obs": True, "normalize_reward": True}
# Each multi-agent feature the Ray workers must carry: one shared policy, a central critic, named policies (with
# and without central critics and the agent index), action masks (the toy env raises on an illegal action).
FEATURES = {
    "shared": {},
    "central_critic": {"env_id": STATE_ENV, "central_critic": True, "agent_index_input": True},
    "policy_map": {"env_id": ROLES, "policy_map": ROLE_MAP},
    "policy_map_central_critic": {"env_id": "toy_multiagent_envs:make_roles_state", "policy_map": ROLE_MAP,
                                  "central_critic": True, "agent_index_input": True},
    "action_masks": {"env_id": "toy_multiagent_envs:make_masked_respawn"},
}
# A turn-based env (only some agents act each step, rewards paid while waiting, pending steps carried into the next
# rollout's extra leading step), with one shared policy and with named policies.
TURNS = "toy_multiagent_envs:make_turns"
TURN_FEATURES = {
    "turns": {"env_id": TURNS},
    "turns_policy_map": {"env_id": TURNS, "policy_map": "p0=solo,*=pair"},
}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    from agents.rollout.ray_collector import worker_python_path

    # The actors import the tests' env modules (toy_multiagent_envs) too.
    path = os.pathsep.join([worker_python_path(), str(TESTS)])
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


def assert_same_learners(a: Trainer, b: Trainer) -> None:
    """Every policy's parameters, optimizer state and reward scaler bitwise equal."""
    assert a.learners.keys() == b.learners.keys()
    for name, la in a.learners.items():
        lb = b.learners[name]
        theirs = lb.policy.state_dict()
        for key, value in la.policy.state_dict().items():
            assert torch.equal(value, theirs[key]), (name, key)
        opt_a, opt_b = la.optimizer.state_dict()["state"], lb.optimizer.state_dict()["state"]
        for index in opt_a:
            for key in opt_a[index]:
                assert torch.equal(opt_a[index][key], opt_b[index][key]), (name, index, key)
        for key, value in la.reward_scaler.state_dict().items():
            assert torch.equal(value, lb.reward_scaler.state_dict()[key]), (name, key)


# ------------------------------------------------------------------ the row layout
@pytest.mark.parametrize(("env_id", "policy_map"), [(RESPAWN, None), (ROLES, ROLE_MAP)])
def test_row_layout_puts_each_workers_rows_where_the_local_env_has_them(env_id, policy_map):
    """W = 2 workers of E = 2 copies against one env of N = 4: each row's copy and slot agree after ``merge``,
    ``split`` undoes it, and the run's policy blocks are the local env's."""
    local = make_multiagent_vector_env(env_id, 4, policy_map=policy_map)
    workers = [make_multiagent_vector_env(env_id, 2, policy_map=policy_map) for _ in range(2)]
    layout = RowLayout(tuple(len(b.agents) for b in workers[0].policies), 2, 2)
    copies = layout.merge([w.copy_of_row + 2 * k for k, w in enumerate(workers)])
    slots = layout.merge([w.agent_index for w in workers])
    np.testing.assert_array_equal(copies, local.copy_of_row)
    np.testing.assert_array_equal(slots, local.agent_index)
    assert (policy_map is None) == layout.one_block
    assert layout.run_blocks(workers[0].policies) == local.policies
    # Tensors along another dim (the recurrent state's rows) go the same way, and split undoes merge.
    rows = torch.arange(local.num_envs).view(1, 1, -1, 1).expand(2, 1, -1, 3)
    pieces = layout.split(rows, 2)
    assert [p.shape[2] for p in pieces] == [layout.rows_per_worker] * 2
    assert torch.equal(layout.merge(pieces, 2), rows)
    for k, piece in enumerate(pieces):  # worker k's rows are its own copies' rows
        np.testing.assert_array_equal(local.copy_of_row[piece[0, 0, :, 0].numpy()], workers[k].copy_of_row + 2 * k)
    for env in [local, *workers]:
        env.close()


# ------------------------------------------------------------------ one worker is the local run
@pytest.mark.parametrize("feature", [*FEATURES, *TURN_FEATURES])
def test_one_worker_trains_bitwise_as_the_local_run(ray_instance, tmp_path, feature):
    overrides = {**FEATURES, **TURN_FEATURES}[feature]
    local = make(tmp_path / "local", **overrides)
    local.train()
    remote = make(tmp_path / "ray", backend="ray", num_workers=1, **overrides)
    remote.train()
    assert_same_learners(local, remote)
    assert (local.global_step, local.episodes, local.agent_steps) == \
        (remote.global_step, remote.episodes, remote.agent_steps)
    assert list(local.recent_returns) == list(remote.recent_returns)
    assert local.agent_steps > 0
    assert local.mask_count == remote.mask_count  # the workers' checked / illegal counts reach the learner
    assert (local.mask_count.checked > 0) == (feature == "action_masks")


# ------------------------------------------------------------------ two workers
@pytest.mark.parametrize("feature", list(FEATURES))
def test_two_workers_seed_copy_i_as_the_local_run_and_keep_the_invariant(ray_instance, tmp_path, feature):
    """Env copy w * E + i gets env_seed + w * E + i: the first observations, alive rows and global states agree
    with the local run's, policy by policy; worker 0 samples with the local run's seed. The joined rollout
    (second, from carried states) replays through the sequence path to 1e-5 (per policy)."""
    from agents.rollout.backends import make_collector
    from tests.test_central_critic import batch_of

    firsts, joined, policies = [], None, None
    for backend in ("local", "ray"):
        extra = {"backend": backend, "num_workers": 2} if backend == "ray" else {}
        cfg = TrainConfig().with_overrides({**SMALL, "num_envs": 4, "num_steps": 24, **FEATURES[feature],
                                            **extra}).validate()
        collector = make_collector(cfg)
        try:
            torch.manual_seed(0)
            blocks = getattr(collector, "policy_rows", None)
            if blocks is None:
                policies = {"policy": RecurrentActorCritic(collector.observation_space, collector.action_space,
                                                           cfg.policy, agents=collector.agent_names,
                                                           state_space=collector.state_space)}
                collector.start(policies["policy"], torch.device("cpu"), 7, 11)
            else:
                policies = {b.name: RecurrentActorCritic(b.observation_space, b.action_space, cfg.policy,
                                                         agents=b.agents, state_space=collector.state_space)
                            for b in blocks}
                collector.start(policies, torch.device("cpu"), 7, 11)

            def collect(collector=collector, blocks=blocks):
                return {"policy": collector.collect()} if blocks is None else collector.collect()

            # The local rollout's tensors are its buffer's, refilled by the next collect: keep step 0's copies.
            firsts.append({name: tree_map(lambda x: None if x is None else x[0].clone(),
                                          (r.obs, r.alive, r.actions, r.agent_inputs))
                           for name, r in collect().items()})
            joined = collect()  # the Ray run's second rollout, from carried states
        finally:
            collector.close()
    local, remote = firsts
    first_block = next(iter(local))
    for name, (obs, alive, actions, inputs) in local.items():
        r_obs, r_alive, r_actions, r_inputs = remote[name]
        assert r_alive.shape == alive.shape
        same_obs = tree_map2(torch.equal, obs, r_obs)  # a masked obs is a dict of leaves
        assert all(same_obs.values()) if isinstance(same_obs, dict) else same_obs, name
        assert torch.equal(alive, r_alive), name
        if inputs is not None:
            for key, value in inputs.items():
                assert torch.equal(value, r_inputs[key]), key
        if name == first_block:  # worker 0's copies (the block's first half) draw as the local sampler does
            half = actions.shape[0] // 2
            assert torch.equal(actions[:half], r_actions[:half])
    assert any((buf.alive == 0).any() for buf in joined.values())  # agents died and came back (the prey)
    for name, buf in joined.items():
        assert buf.states.shape[-2] == buf.alive.shape[1]
        policy = policies[name]
        batch, _ = batch_of(buf)
        with torch.no_grad():
            logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                                batch.agent_inputs)
        real = batch.mask.bool()
        assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5, name
        assert (value[real] - batch.values[real]).abs().max() < 1e-5, name


@pytest.mark.parametrize("feature", list(TURN_FEATURES))
def test_two_workers_join_turn_based_rollouts_that_keep_the_invariant(ray_instance, feature):
    """Each worker's rollouts have T + 1 steps (step 0: the pending steps carried from its last rollout); the
    joined rollout keeps them, with ``acting``, in the local layout: GAE over each row's own turns and the
    sequence path replay it to 1e-5 (per policy), and carried steps are trained there."""
    from agents.rollout.backends import make_collector
    from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences

    cfg = TrainConfig().with_overrides({**SMALL, "num_envs": 4, "num_steps": 13, **TURN_FEATURES[feature],
                                        "backend": "ray", "num_workers": 2}).validate()
    collector = make_collector(cfg)
    try:
        torch.manual_seed(0)
        blocks = getattr(collector, "policy_rows", None)
        if blocks is None:
            policies = {"policy": RecurrentActorCritic(collector.observation_space, collector.action_space,
                                                       cfg.policy, agents=collector.agent_names)}
            collector.start(policies["policy"], torch.device("cpu"), 7, 11)
        else:
            policies = {b.name: RecurrentActorCritic(b.observation_space, b.action_space, cfg.policy,
                                                     agents=b.agents) for b in blocks}
            collector.start(policies, torch.device("cpu"), 7, 11)
        carried = {(name, w): 0 for name in policies for w in range(2)}  # carried steps per policy and worker
        for _ in range(5):
            rollouts = collector.collect()
            for name, buf in ({"policy": rollouts} if blocks is None else rollouts).items():
                rows = buf.alive.shape[1]
                assert buf.rewards.shape == buf.acting.shape == (14, rows) and buf.states.shape[-2] == rows
                assert rows == (collector.num_envs if blocks is None else
                                next(b.num_rows for b in blocks if b.name == name))
                adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated,
                                       buf.truncation_values, buf.bootstrap_value, 0.9, 0.8, buf.acting)
                seqs = make_sequences(buf.episode_starts.numpy(), 5, True, alive=buf.alive.numpy())
                batch = gather_sequences(buf, seqs, adv, ret)
                with torch.no_grad():
                    logprob, _, value = policies[name].evaluate(batch.obs, batch.start_states,
                                                                batch.episode_starts, batch.actions,
                                                                batch.agent_inputs)
                real = batch.mask.bool()
                assert int(real.sum()) == int(buf.alive.sum())
                assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5, name
                assert (value[real] - batch.values[real]).abs().max() < 1e-5, name
                for w, half in enumerate(buf.alive[0].chunk(2)):  # a block's rows: worker 0's, then 1's
                    carried[name, w] += int(half.sum())
    finally:
        collector.close()
    assert min(carried.values()) > 0, carried  # pending steps crossed rollouts, in both workers' rows


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("feature", ["shared", "policy_map", "policy_map_central_critic"])
def test_crash_and_resume_with_two_workers_mid_episode_is_bitwise_exact(ray_instance, tmp_path, feature):
    overrides = {"backend": "ray", "num_workers": 2, "num_envs": 4, **FEATURES[feature]}
    ends = []  # the collector's state after the last iteration (the run's end closes the actors)

    def record_end(trainer: Trainer) -> None:
        if trainer.global_step == 768:
            ends.append(trainer.collector.state_dict())

    straight = make(tmp_path / "straight", **overrides)
    straight.train(record_end)
    run = tmp_path / "run"

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 640:
            raise Crash

    with pytest.raises(Crash):
        make(run, **overrides).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # an exact resume warns about nothing
        resumed = make(run, resume=True, **overrides)
    assert resumed.resume_note is None and resumed.global_step == 512
    # Agents are mid-episode at the checkpoint: some rows alive, some absent.
    alive = resumed.collector.state_dict(snapshot_envs=False)["tensors"]["alive"]
    assert 0 < alive.sum() < alive.numel()
    resumed.train(record_end)
    assert_same_learners(straight, resumed)
    assert (straight.global_step, straight.episodes, straight.agent_steps) == \
        (resumed.global_step, resumed.episodes, resumed.agent_steps)
    assert list(straight.recent_returns) == list(resumed.recent_returns)
    a, b = ends
    for key, value in a["tensors"].items():
        assert torch.equal(value, b["tensors"][key]), key
    assert a["resume"] == b["resume"]


def same_tree(a, b) -> bool:
    """Two trees (dicts / tuples of tensors, None allowed) of one structure with bitwise equal tensors."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(same_tree, a, b))
    if a is None or b is None:
        return a is b
    return torch.equal(a, b)


def carrying(trainer: Trainer) -> bool:
    """Whether some row's pending step is carried into the collector's next rollout."""
    return bool((trainer.collector.state_dict(snapshot_envs=False)["tensors"]["turns"]["pending"] >= 0).any())


@pytest.mark.parametrize("feature", list(TURN_FEATURES))
def test_turn_based_crash_and_resume_with_two_workers_and_a_pending_step_at_the_checkpoint(ray_instance, tmp_path,
                                                                                          feature):
    """Two workers, a crash after a checkpoint at which pending steps were carried into the next rollout: the
    resumed run ends bitwise as the straight one (each worker got its rows' pending and carried steps back)."""
    overrides = {"backend": "ray", "num_workers": 2, "num_envs": 4, "num_steps": 31, "checkpoint_every": 248,
                 "total_steps": 496, **TURN_FEATURES[feature]}
    ends = []

    def record_end(trainer: Trainer) -> None:
        if trainer.global_step == 496:
            ends.append(trainer.collector.state_dict(snapshot_envs=False)["tensors"])

    straight = make(tmp_path / "straight", **overrides)
    straight.train(record_end)
    run, pending = tmp_path / "run", {}

    def crash(trainer: Trainer) -> None:
        pending[trainer.global_step] = carrying(trainer)
        if trainer.global_step == 372:
            raise Crash

    with pytest.raises(Crash):
        make(run, **overrides).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        resumed = make(run, resume=True, **overrides)
    assert resumed.resume_note is None and resumed.global_step == 248
    assert pending[248]  # a pending step crossed the checkpoint the run resumed from
    resumed.train(record_end)
    assert_same_learners(straight, resumed)
    assert (straight.agent_steps, list(straight.recent_returns)) == (resumed.agent_steps,
                                                                    list(resumed.recent_returns))
    a, b = ends
    assert a["turns"]["carry"] is not None  # the run ends carrying pending steps, the same in both
    for key, value in a.items():
        assert same_tree(value, b[key]), key


@pytest.mark.parametrize("feature", ["central_critic", "policy_map", "turns_policy_map"])
def test_a_checkpoint_resumes_bitwise_on_the_other_backend(ray_instance, tmp_path, feature):
    """One Ray worker's checkpoint resumed locally, and a local checkpoint resumed on one Ray worker, each end
    as the straight local run (turn-based: with a pending step carried across the checkpoint)."""
    overrides = {**FEATURES, **TURN_FEATURES}[feature]
    straight = make(tmp_path / "straight", **overrides)
    straight.train()
    pending = {}

    def crash(trainer: Trainer) -> None:
        if "env_id" in overrides and overrides["env_id"] == TURNS:
            pending[trainer.global_step] = carrying(trainer)
        if trainer.global_step == 512:
            raise Crash

    ray_one = {"backend": "ray", "num_workers": 1}
    for first, then in ((ray_one, {}), ({}, ray_one)):
        run = tmp_path / f"run-{first.get('backend', 'local')}"
        with pytest.raises(Crash):
            make(run, **overrides, **first).train(crash)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResumeWarning)
            resumed = make(run, resume=True, **overrides, **then)
        assert resumed.resume_note is None
        assert pending.get(resumed.global_step, True)  # turn-based: a pending step crossed the checkpoint
        resumed.train()
        assert_same_learners(straight, resumed)
        assert list(straight.recent_returns) == list(resumed.recent_returns)


def test_a_two_worker_checkpoint_restores_each_copy_in_its_place_locally(ray_instance, tmp_path):
    """A two-worker checkpoint with named policies resumed by the local collector: every row's alive flag is its
    restored env copy's, so rows, copies and snapshots were merged in the local layout."""
    run = tmp_path / "run"

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 512:
            raise Crash

    with pytest.raises(Crash):
        make(run, backend="ray", num_workers=2, num_envs=4, **FEATURES["policy_map"]).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        resumed = make(run, resume=True, num_envs=4, total_steps=1024, **FEATURES["policy_map"])
    assert resumed.resume_note is None
    collector = resumed.collector
    envs = collector.envs
    expected = np.zeros(envs.num_envs, dtype=bool)
    for i, env in enumerate(envs.envs):
        for agent in env.agents:
            expected[envs.env_rows(i)[envs.agent_names.index(agent)]] = True
    np.testing.assert_array_equal(envs.alive, expected)
    np.testing.assert_array_equal(collector.alive.numpy() > 0, expected)
    assert 0 < expected.sum() < expected.size
    for block, obs in zip(collector.policy_rows, collector.next_obs, strict=True):
        absent = ~expected[block.rows]
        assert not np.asarray(obs)[absent].any(), block.name  # an absent row's observation is zero
    resumed.train()
    assert resumed.global_step == 1024


# ------------------------------------------------------------------ faults
def test_a_killed_multiagent_worker_is_restarted_and_the_run_completes(ray_instance, tmp_path):
    from agents.rollout.ray_collector import WorkerRestarted

    trainer = make(tmp_path / "kill", backend="ray", num_workers=2, num_envs=4, **FEATURES["policy_map"])

    def kill(t: Trainer) -> None:
        if t.iteration == 1:
            ray_instance.kill(t.collector.workers[1])

    with pytest.warns(WorkerRestarted, match=r"Ray worker 1 \(envs 2-3\) died"):
        trainer.train(on_iteration=kill)
    assert trainer.global_step == 768 and trainer.collector.restarts == [0, 1]


@pytest.mark.slow
def test_sigkill_of_a_two_worker_run_then_resume_matches_an_uninterrupted_run(ray_instance, tmp_path):
    """Real processes: ``train.py --backend ray`` with named policies, SIGKILLed after its first checkpoints
    (agents mid-episode), then ``--resume``d in a new process (a new Ray instance each): the final policies equal
    the uninterrupted run's bitwise."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from agents.run.checkpoint import LATEST, CheckpointError, load_payload, load_policies
    from agents.train import cli as train

    root = TESTS.parent
    args = ["--env-id", ROLES, "--policy-map", ROLE_MAP, "--backend", "ray", "--num-workers", "2", "--num-envs", "4",
            "--num-steps", "32", "--hidden-size", "8", "--bptt-len", "8", "--num-minibatches", "2",
            "--update-epochs", "1", "--eval-episodes", "0", "--no-progress", "--seed", "3", "--checkpoint-every",
            "128", "--normalize-obs", "--total-steps", "1536"]
    config, _ = train.resolve_config([*args, "--run-dir", str(tmp_path / "straight")])
    straight = Trainer(config)
    straight.train()

    def latest_step(run: Path) -> int:
        try:
            return load_payload(run / "checkpoints" / LATEST)[1]["counters"]["global_step"]
        except CheckpointError:
            return -1

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(TESTS)])}
    run = tmp_path / "run"
    # Its own session: whatever the killed driver leaves behind is stopped by its process group at the end.
    proc = subprocess.Popen([sys.executable, str(root / "train.py"), *args, "--run-dir", str(run)], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while latest_step(run) < 512:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.05)
        time.sleep(random.Random(1).uniform(0.0, 0.3))  # collecting, updating or writing a checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL and latest_step(run) < 1536
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    resume = subprocess.run([sys.executable, str(root / "train.py"), "--resume", str(run)], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    assert "not exactly" not in resume.stderr
    policies, _ = load_policies(run)
    for name, learner in straight.learners.items():
        theirs = policies[name].state_dict()
        for key, value in learner.policy.state_dict().items():
            assert torch.equal(value, theirs[key]), (name, key)


def test_a_backend_other_than_local_or_ray_is_refused_in_one_line():
    """The backends that collect multi-agent envs are named; another registered backend is refused up front."""
    from dataclasses import replace

    from agents.config import ConfigError
    from agents.rollout.multiagent_collector import refuse_unsupported

    config = TrainConfig().with_overrides({**SMALL, "backend": "ray", "num_workers": 1}).validate()
    refuse_unsupported(config)  # ray collects multi-agent envs
    other = replace(config, run=replace(config.run, backend="mine"))
    with pytest.raises(ConfigError, match=r"^--backend mine is not supported with the multi-agent env "
                                          r"toy_multiagent_envs:make_respawn; multi-agent runs support --backend "
                                          r"local or --backend ray \(docs/multiagent.md\)\.$"):
        refuse_unsupported(other)
