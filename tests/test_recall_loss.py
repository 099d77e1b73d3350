"""The auxiliary recall loss (``--recall-coef``): its targets, its gradient, and that it stays out of everything
but training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import toy_envs  # noqa: F401  (registers tests/Boundary-v0)
from gymnasium import spaces

from agents.config import ConfigError, PolicyConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic


def _policy(core: str = "lstm", **settings) -> RecurrentActorCritic:
    torch.manual_seed(0)
    config = PolicyConfig(core=core, hidden_size=32, normalize_obs=False, encoder_sizes=(), recall_coef=1.0,
                          **settings)
    return RecurrentActorCritic(spaces.Box(0, 1, (5,), np.float32), spaces.Discrete(3), config)


def test_targets_are_the_running_maximum_since_the_episode_or_the_sequence_began():
    policy = _policy()
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (9, 4, 5)).astype(np.float32)
    starts = (rng.uniform(size=(9, 4)) < 0.25).astype(np.float32)
    got = policy.recall_targets(torch.from_numpy(obs), torch.from_numpy(starts)).numpy()
    expected = np.empty_like(obs)
    for m in range(4):
        running = obs[0, m]
        for t in range(9):
            running = obs[t, m] if t == 0 or starts[t, m] else np.maximum(running, obs[t, m])
            expected[t, m] = running
    np.testing.assert_array_equal(got, expected)


def test_a_masked_envs_targets_leave_the_mask_out():
    obs_space = spaces.Dict({"observation": spaces.Box(0, 1, (6,), np.float32),
                             "action_mask": spaces.Box(0, 1, (4,), np.int8)})
    config = PolicyConfig(hidden_size=8, normalize_obs=False, recall_coef=0.5)
    policy = RecurrentActorCritic(obs_space, spaces.Discrete(4), config)
    obs = {"observation": torch.rand(3, 2, 6), "action_mask": torch.ones(3, 2, 4, dtype=torch.int8)}
    assert policy.recall_targets(obs, torch.zeros(3, 2)).shape == (3, 2, 6)
    assert policy.recall_head.out_features == 6


def test_no_head_without_the_flag_and_the_flag_is_checked():
    config = PolicyConfig(hidden_size=8)
    policy = RecurrentActorCritic(spaces.Box(0, 1, (5,), np.float32), spaces.Discrete(3), config)
    assert not policy.has_recall_head and policy.recall_head is None
    for bad in (-0.1, float("nan")):
        with pytest.raises(ConfigError, match="--recall-coef"):
            TrainConfig().with_overrides({"recall_coef": bad}).validate()


@pytest.mark.parametrize(("core", "beats_the_memoryless_floor"), [("lstm", True), ("none", False)])
def test_the_recall_loss_alone_teaches_a_memory(core, beats_the_memoryless_floor):
    """Sparse one-hot facts, each shown for one step: the running maximum is what a memory knows. Fitting the
    recall loss alone (no RL), the LSTM ends far below the error of the best memoryless answer (the current
    observation plus a constant), and the memoryless core cannot: so the targets ask for the past and their
    gradient reaches the core through time."""
    policy = _policy(core)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)

    def batch():
        obs = (torch.rand(12, 64, 5, generator=gen) < 0.08).float()  # each feature on now and then
        return obs, torch.zeros(12, 64)

    def loss_of(obs, starts):
        hidden, _, _ = policy.memory(obs, policy.initial_state(64), starts)
        return (policy.recall_head(hidden) - policy.recall_targets(obs, starts)).pow(2).mean()

    for _ in range(200):
        optimizer.zero_grad()
        loss_of(*batch()).backward()
        optimizer.step()
    obs, starts = batch()
    with torch.no_grad():
        final = float(loss_of(obs, starts))
        targets = policy.recall_targets(obs, starts)
        # The best answer from the current step alone: 1 where the feature is on now, else the mean of the
        # targets over the steps where it is off (what a constant can do).
        off = obs == 0
        floor = float((targets[off] - targets[off].mean()).pow(2).sum() / targets.numel())
    assert (final < 0.3 * floor) == beats_the_memoryless_floor, (final, floor)


def test_a_run_with_the_head_logs_it_and_resumes_with_it(tmp_path):
    """Training logs ``losses/recall_loss``; the head is saved with the run (a resumed run goes on training it)."""
    from agents import PolicyRunner
    from agents.train.trainer import Trainer

    run = tmp_path / "run"
    config = TrainConfig().with_overrides({
        "env_id": "tests/Boundary-v0", "env_import": ("toy_envs",), "hidden_size": 16, "num_envs": 2,
        "num_steps": 32, "total_steps": 128, "eval_episodes": 0, "progress": False, "device": "cpu",
        "recall_coef": 1.0, "run_dir": str(run)})
    Trainer(config.validate()).train()
    assert json.loads((run / "config.json").read_text())["policy"]["recall_coef"] == 1.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    recall = [e.value for e in events.Scalars("losses/recall_loss")]
    assert len(recall) == 2 and all(np.isfinite(recall)) and recall[0] > 0
    assert PolicyRunner.load(run).policy.has_recall_head


def test_acting_and_the_export_never_see_the_head(tmp_path):
    """The head is made last, so a policy with it has the same weights as one without: their exported graphs,
    the exports' outputs and a runner's actions and values are the same."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from test_exploration import assert_same_export_and_play, export_and_play

    space = spaces.Box(0, 1, (5,), np.float32)
    played = {}
    for coef in (0.0, 1.0):
        torch.manual_seed(0)
        policy = RecurrentActorCritic(space, spaces.Discrete(3), PolicyConfig(hidden_size=16, recall_coef=coef)).eval()
        assert policy.has_recall_head == (coef > 0)
        played[coef] = export_and_play(policy, tmp_path / f"{coef}.onnx",
                                       np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5),
                                       [np.full(5, t / 6, np.float32) for t in range(6)])
    assert_same_export_and_play(played[0.0], played[1.0])
