"""Never lose a run: atomic checkpoints, exact resume after a crash or a stop, TensorBoard continuity, fallbacks.

Exactness (CPU): a run that crashes (or is stopped, or SIGKILLed) and is resumed ends with parameters,
optimizer state and counters *bitwise* equal to an uninterrupted run of the same config -- for envs whose
state can be snapshotted (agents/rollout/env_state.py), which includes every built-in env. Bound asserted: 0.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import faulty_envs  # noqa: F401  (registers tests/NoSnapshot-v0)
import pytest
import torch
from registry_cases import core_names, core_settings

from agents.config import ConfigError, TrainConfig
from agents.run.checkpoint import LATEST, PREVIOUS, CheckpointError, load_payload, load_policy, payload_digest
from agents.train import cli as train
from agents.train.trainer import ResumeWarning, Trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"env_id": "mnemo/CartPoleNoVel-v1", "total_steps": 2048, "num_envs": 4, "num_steps": 64, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False, "checkpoint_every": 512,
         "seed": 3}
BATCH = SMALL["num_envs"] * SMALL["num_steps"]


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


def crash_at(step: int):
    def callback(trainer: Trainer) -> None:
        if trainer.global_step == step:
            trainer.writer.flush()  # a real crash may or may not have flushed; the purge must cope either way
            raise Crash
    return callback


def assert_same_training_state(a: Trainer, b: Trainer) -> None:
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key]), key
    opt_a, opt_b = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for index in opt_a:
        for name in opt_a[index]:
            assert torch.equal(opt_a[index][name], opt_b[index][name]), (index, name)
    assert (a.global_step, a.iteration, a.episodes) == (b.global_step, b.iteration, b.episodes)
    assert list(a.recent_returns) == list(b.recent_returns)
    assert torch.equal(a.collector.generator.get_state(), b.collector.generator.get_state())
    assert a.np_rng.bit_generator.state == b.np_rng.bit_generator.state


def scalar_steps(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a tag as TensorBoard shows it (restarts purged), in file order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Trainer:
    trainer = make(tmp_path_factory.mktemp("straight") / "run")
    trainer.train()
    return trainer


@pytest.mark.parametrize("crash_step", [1024, 1280])  # right after a checkpoint / one iteration past it
def test_crash_and_resume_is_bitwise_exact_and_curves_continue(straight, tmp_path, crash_step):
    run = tmp_path / "run"
    with pytest.raises(Crash):
        make(run).train(crash_at(crash_step))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # an exact resume warns about nothing
        resumed = make(run, resume=True)
    assert resumed.resume_note is None and resumed.global_step == 1024
    resumed.train()
    assert_same_training_state(straight, resumed)

    expected = scalar_steps(straight.run_dir, "charts/learning_rate")
    assert [s for s, _ in expected] == list(range(BATCH, SMALL["total_steps"] + 1, BATCH))
    assert scalar_steps(run, "charts/learning_rate") == expected  # no gap, no duplicate, same values


def straight_and_resumed(tmp_path: Path, **overrides) -> tuple[Trainer, Trainer]:
    """A 1536-step run, and the same run crashed at 1280 and resumed from 1024: asserted bitwise equal."""
    overrides = {"total_steps": 1536, **overrides}
    straight_run = make(tmp_path / "straight", **overrides)
    straight_run.train()
    run = tmp_path / "run"
    with pytest.raises(Crash):
        make(run, **overrides).train(crash_at(1280))
    resumed = make(run, resume=True, **overrides)
    assert resumed.resume_note is None and resumed.global_step == 1024
    resumed.train()
    assert_same_training_state(straight_run, resumed)
    return straight_run, resumed


def test_resume_with_observation_and_reward_normalisation_is_bitwise_exact(tmp_path):
    # The reward scaler's per-env discounted returns and running variance travel in the checkpoint.
    straight_run, resumed = straight_and_resumed(tmp_path, normalize_obs=True, normalize_reward=True)
    for key, value in straight_run.reward_scaler.state_dict().items():
        assert torch.equal(value, resumed.reward_scaler.state_dict()[key]), key
    assert straight_run.reward_scaler.std != 1.0  # the statistics did move


@pytest.mark.parametrize("core", [core for core in core_names() if core != TrainConfig().policy.core])
def test_resume_with_every_core_is_bitwise_exact(tmp_path, core):
    check_resume_is_bitwise_exact(tmp_path, core)


def check_resume_is_bitwise_exact(tmp_path: Path, core: str) -> None:
    """A run of ``core`` crashed and resumed equals the uninterrupted run bitwise, its stored states included (the
    frame stack's state, the last K encodings of every env, travels in the checkpoint like h and c)."""
    straight_run, resumed = straight_and_resumed(tmp_path, **core_settings(core))
    state = straight_run.collector.state_dict(snapshot_envs=False)["tensors"]["state"]
    assert state.shape[:3] == (*straight_run.policy.state_shape[:2], SMALL["num_envs"])
    assert state.numel() == 0 or state.abs().sum() > 0
    assert torch.equal(state, resumed.collector.state_dict(snapshot_envs=False)["tensors"]["state"])


def test_resume_with_correlated_sampling_noise_is_bitwise_exact(tmp_path):
    # Each env's sampling noise (an AR(1) process) travels in the checkpoint with the recurrent state.
    straight_run, resumed = straight_and_resumed(tmp_path, noise_correlation=0.95)
    assert torch.equal(straight_run.collector.noise.last, resumed.collector.noise.last)


def test_resume_with_the_recall_head_and_product_readout_is_bitwise_exact(tmp_path):
    # The recall head, the product readout and their optimizer state are the policy's and the optimizer's; the
    # recall targets are computed anew, and the products hold no state.
    straight_run, resumed = straight_and_resumed(tmp_path, recall_coef=1.0, readout_products=4)
    assert straight_run.policy.has_recall_head and resumed.policy.has_recall_head
    assert resumed.policy.actor_core.out_features == resumed.policy.config.hidden_size + 4


@pytest.mark.parametrize("crash_step", [768, 1792])  # before --sparse-noise decides / after it switched noise on
def test_resume_across_the_sparse_noise_switch_is_bitwise_exact(tmp_path, crash_step):
    # MountainCarNoVel pays -1 a step, so the first episodes all return -200; the first 4 end at step 1024 and
    # the rule switches the noise on there. Resumed from 512 (undecided, no episode has ended yet) or from
    # 1536 (on, the noise drawn): the rule's state travels in the counters, the noise with the recurrent state.
    overrides = {"env_id": "mnemo/MountainCarNoVel-v0", "sparse_noise": 0.98, "sparse_noise_episodes": 4}
    straight_run = make(tmp_path / "straight", **overrides)
    straight_run.train()
    assert straight_run.sparse_noise.decided_at_step == 1024 and straight_run.collector.noise.rho == 0.98
    run = tmp_path / "run"
    with pytest.raises(Crash):
        make(run, **overrides).train(crash_at(crash_step))
    resumed = make(run, resume=True, **overrides)
    assert resumed.resume_note is None and resumed.global_step == crash_step - 256
    assert resumed.sparse_noise.on == (crash_step > 1024)
    resumed.train()
    assert_same_training_state(straight_run, resumed)
    assert resumed.sparse_noise.state_dict() == straight_run.sparse_noise.state_dict()
    assert torch.equal(straight_run.collector.noise.last, resumed.collector.noise.last)


def test_async_envs_are_restored_exactly_in_their_workers(straight, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Crash):
        make(run, async_envs=True).train(crash_at(1280))
    resumed = make(run, resume=True, async_envs=True)
    assert resumed.resume_note is None
    resumed.train()
    assert_same_training_state(straight, resumed)  # the sync run: same envs, same numbers


def test_stop_request_saves_at_the_next_iteration_and_resumes_exactly(straight, tmp_path):
    run = tmp_path / "run"

    def stop(trainer: Trainer) -> None:
        if trainer.global_step == 768:  # not a scheduled checkpoint step
            trainer.request_stop("test")

    summary = make(run).train(stop)
    assert summary["stopped"] == "test" and summary["total_steps"] == 768
    assert not (run / "summary.json").exists()
    _, meta = load_payload(run / "checkpoints" / LATEST)
    assert meta["counters"]["global_step"] == 768 and meta["resume"]["exact"]
    resumed = make(run, resume=True)
    resumed.train()
    assert_same_training_state(straight, resumed)


def test_finishing_n_steps_then_resuming_to_2n_equals_2n_at_once_with_a_constant_schedule(tmp_path):
    """A finished run extended with --total-steps continues exactly when no schedule depends on total_steps.

    With --anneal-lr (the default) the learning rate at iteration k is lr * (1 - (k-1) / iterations), so
    raising total_steps on resume changes the schedule from then on: exactness needs the same total.
    """
    straight = make(tmp_path / "straight", anneal_lr=False)
    straight.train()
    run = tmp_path / "run"
    make(run, anneal_lr=False, total_steps=1024).train()
    resumed = make(run, resume=True, anneal_lr=False)
    resumed.train()
    assert_same_training_state(straight, resumed)


def test_unsnapshottable_env_resumes_with_a_warning_and_fresh_episodes(tmp_path):
    run = tmp_path / "run"
    overrides = {"env_id": "tests/NoSnapshot-v0", "env_import": ("faulty_envs",), "total_steps": 1024}
    with pytest.raises(Crash):
        make(run, **overrides).train(crash_at(512))
    _, meta = load_payload(run / "checkpoints" / LATEST)
    assert not meta["resume"]["exact"] and "lock" in meta["resume"]["reason"]
    with pytest.warns(ResumeWarning, match="not exactly.*cannot be snapshotted"):
        resumed = make(run, resume=True, **overrides)
    assert resumed.collector.next_episode_start.all()
    assert resumed.train()["total_steps"] == 1024


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_latest_falls_back_to_previous(tmp_path, damage):
    run = tmp_path / "run"
    make(run, total_steps=1024).train()  # checkpoints at 512 and 1024: previous.pt is the one at 512
    latest = run / "checkpoints" / LATEST
    data = bytearray(latest.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF  # torch.load does not notice; the digest does
    else:
        data = data[: len(data) // 3]
    latest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_payload(latest)
    with pytest.warns(UserWarning, match="previous.pt"):
        _policy, _ = load_policy(run)
    with pytest.warns(ResumeWarning, match="resuming from previous.pt at step 512"):
        resumed = make(run, resume=True, total_steps=1536)
    assert resumed.global_step == 512
    assert (run / "checkpoints" / "latest.pt.corrupt").exists()  # kept for inspection, out of the rotation
    assert resumed.train()["total_steps"] == 1536
    load_payload(run / "checkpoints" / LATEST)
    load_payload(run / "checkpoints" / PREVIOUS)


def test_no_byte_flip_in_a_checkpoint_loads_as_different_data(tmp_path):
    # A flip either is caught or lands in bytes that carry no content (zip padding and header fields
    # torch ignores, unused pickle memo ids: ~2% of positions): then the file loads to exactly the
    # original tensors and metadata. It never loads as a silently different weight.
    run = tmp_path / "run"
    make(run, total_steps=256, checkpoint_every=256).train()
    path = run / "checkpoints" / LATEST
    data = path.read_bytes()
    original, original_meta = load_payload(path)
    bad = tmp_path / "bad.pt"
    caught = 0
    for position in random.Random(0).sample(range(len(data)), 200):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        bad.write_bytes(bytes(flipped))
        try:
            payload, meta = load_payload(bad)
        except CheckpointError:
            caught += 1
            continue
        assert meta == original_meta and payload["digest"] == original["digest"], position
        for key, value in original["policy"].items():
            assert torch.equal(payload["policy"][key], value), (position, key)
    assert caught >= 150


def test_rotation_keeps_the_checkpoint_before_latest(tmp_path):
    run = tmp_path / "run"
    make(run, total_steps=1536).train()
    _, latest = load_payload(run / "checkpoints" / LATEST)
    _, previous = load_payload(run / "checkpoints" / PREVIOUS)
    assert (latest["counters"]["global_step"], previous["counters"]["global_step"]) == (1536, 1024)
    assert not list((run / "checkpoints").glob(".*"))


def test_a_second_process_cannot_train_in_a_run_directory_in_use(tmp_path):
    run = tmp_path / "run"
    first = make(run)
    first.save_checkpoint()
    try:
        with pytest.raises(ConfigError, match="in use by another training process"):
            make(run, resume=True)
    finally:
        first.close()
    make(run, resume=True).close()  # free again once the holder is gone


def test_resume_of_a_run_killed_before_its_first_checkpoint_says_what_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    make(run).close()  # config.json written, no checkpoint yet
    assert train.main(["--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoints/latest.pt" in err and "--overwrite" in err


def _lr_per_iteration(trainer, stop_after: int | None = None) -> list[float]:
    rates = []

    def record(t):
        rates.append(t.optimizer.param_groups[0]["lr"])
        if stop_after is not None and t.iteration == stop_after:
            t.request_stop("test")

    trainer.train(on_iteration=record)
    return rates


def test_a_new_budget_on_resume_keeps_the_lr_schedule_continuous(tmp_path):
    """Issue 19, item 4: 4 iterations of 128 steps, stopped after 1, resumed with a budget of 8 iterations.

    The old schedule's next rate is 0.75 * lr; restarting the schedule over 8 iterations would jump to 0.875.
    It decays from 0.75 instead, linearly over the 7 iterations that remain: 0.75 * (7 - k) / 7, k = 0..6.
    """
    lr = 1e-3
    flags = {"total_steps": 512, "num_envs": 4, "num_steps": 32, "bptt_len": 8, "num_minibatches": 2,
             "update_epochs": 1, "eval_episodes": 0, "progress": False, "learning_rate": lr, "anneal_lr": True,
             "anneal_clip": True, "run_dir": str(tmp_path / "run")}
    config = TrainConfig().with_overrides(flags).validate()
    assert _lr_per_iteration(Trainer(config), stop_after=1) == [lr]

    resumed = Trainer(config.with_overrides({"total_steps": 1024}).validate(), resume=True)
    expected = [lr * 0.75 * (7 - k) / 7 for k in range(7)]
    assert _lr_per_iteration(resumed) == pytest.approx(expected, rel=1e-12)
    assert resumed.schedule_note == (
        "The step budget changed (512 -> 1024): the learning rate (0.00075) and the clip coefficient (0.15) "
        "decay linearly from their current value to 0 over the remaining 7 iterations (no jump back up).")


def test_a_finished_run_extended_goes_on_as_a_run_of_the_new_budget(tmp_path):
    """4 iterations run to the end, then --total-steps doubled: the rate a finished run ended on is about 0, so
    it goes on from what an 8-iteration run has at iteration 5 (0.5 lr) down to 0: 0.5, 0.375, 0.25, 0.125."""
    lr = 1e-3
    flags = {"total_steps": 512, "num_envs": 4, "num_steps": 32, "bptt_len": 8, "num_minibatches": 2,
             "update_epochs": 1, "eval_episodes": 0, "progress": False, "learning_rate": lr, "anneal_lr": True,
             "run_dir": str(tmp_path / "run")}
    config = TrainConfig().with_overrides(flags).validate()
    assert _lr_per_iteration(Trainer(config)) == pytest.approx([lr, 0.75 * lr, 0.5 * lr, 0.25 * lr], rel=1e-12)

    resumed = Trainer(config.with_overrides({"total_steps": 1024}).validate(), resume=True)
    assert _lr_per_iteration(resumed) == pytest.approx([lr * (8 - i) / 8 for i in range(4, 8)], rel=1e-12)
    assert resumed.schedule_note == (
        "The step budget changed (512 -> 1024) after the run finished: the learning rate (0.0005) decays linearly "
        "from what a 1024-step run has at this step to 0 over the remaining 4 iterations.")


def test_a_checkpoint_without_schedule_state_resumes_on_its_own_budget(tmp_path):
    """Checkpoints written before the schedule was saved: it ran from the start over their budget."""
    flags = {"total_steps": 512, "num_envs": 4, "num_steps": 32, "bptt_len": 8, "num_minibatches": 2,
             "update_epochs": 1, "eval_episodes": 0, "progress": False, "learning_rate": 1e-3,
             "run_dir": str(tmp_path / "run")}
    config = TrainConfig().with_overrides(flags).validate()
    _lr_per_iteration(Trainer(config), stop_after=2)
    path = tmp_path / "run" / "checkpoints" / LATEST
    payload = torch.load(path, weights_only=True)
    meta = json.loads(payload["meta"])
    del meta["counters"]["schedule"]
    payload["meta"] = json.dumps(meta)
    payload["digest"] = payload_digest(payload)
    torch.save(payload, path)

    resumed = Trainer(config, resume=True)
    assert resumed.schedule_note is None
    assert _lr_per_iteration(resumed) == pytest.approx([1e-3 * 0.5, 1e-3 * 0.25], rel=1e-12)


@pytest.mark.parametrize(("exploration", "history"), [("rnd", 1), ("noveld", 1), ("noveld", 3)])
def test_resume_with_an_exploration_bonus_is_bitwise_exact(tmp_path, exploration, history):
    """--exploration: the predictor and target, their optimizer, the observation and intrinsic-return statistics,
    the subset sampler, each env's episodic memory (NovelD's visited cells, envs mid-episode) and, with
    --intrinsic-history, the last observations travel in the checkpoint, so the resumed run's bonus state equals
    the uninterrupted run's bitwise (with the whole run's return statistics, and with a window short enough to cap
    their saved count within the run)."""
    window = {"intrinsic_norm_window": 512} if history > 1 else {"intrinsic_norm_window": 0}
    straight_run, resumed = straight_and_resumed(tmp_path, exploration=exploration, intrinsic_history=history,
                                                 **window)
    a, b = straight_run.exploration.state_dict(), resumed.exploration.state_dict()
    for part in ("target", "predictor", "normalizers", "return_scaler"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    assert torch.equal(a["generator"], b["generator"]) and torch.equal(a["prev_novelty"], b["prev_novelty"])
    assert [v.tolist() for v in a["visited"]] == [v.tolist() for v in b["visited"]]
    if exploration == "noveld":
        assert all(v.numel() > 0 for v in a["visited"])  # the envs were mid-episode with cells to remember
    assert straight_run.exploration.return_scaler.std != 1.0  # the statistics did move
    if history > 1:
        assert len(a["last_frames"]) == history - 1
        for frame_a, frame_b in zip(a["last_frames"], b["last_frames"], strict=True):
            assert torch.equal(frame_a, frame_b)
    else:
        assert a["last_frames"] is None
