"""The training loop end to end: same seed -> same run, async envs, refreshed start states, the observation
normaliser's update, the thread setting."""

import json

import numpy as np
import pytest
import torch
import toy_envs  # noqa: F401  (registers tests/Boundary-v0)

from agents.config import TrainConfig
from agents.rollout.buffer import gather_sequences, make_sequences
from agents.rollout.collector import local_collector
from agents.train.ppo import refresh_start_states
from agents.train.trainer import Trainer

SMALL = {"total_steps": 1024, "num_envs": 4, "num_steps": 32, "bptt_len": 8, "num_minibatches": 2,
         "update_epochs": 2, "eval_episodes": 0, "progress": False, "checkpoint_every": 10_000}


def _trainer(tmp_path, name, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(tmp_path / name), **overrides})
    return Trainer(config.validate())


def test_same_seed_gives_the_same_run(tmp_path):
    params = []
    for name in ("a", "b"):
        trainer = _trainer(tmp_path, name, env_id="mnemo/CartPoleNoVel-v1", seed=7, normalize_obs=True)
        trainer.train()
        params.append(trainer.policy.state_dict())
    for key in params[0]:
        assert torch.equal(params[0][key], params[1][key]), key


@pytest.mark.parametrize("encoder_sizes", [(), (32,)])  # no shared parameters / a shared encoder MLP
def test_critic_on_a_second_thread_gives_bitwise_the_same_run(tmp_path, encoder_sizes):
    params = []
    for parallel in (False, True):
        trainer = _trainer(tmp_path, f"parallel_{parallel}", env_id="mnemo/CartPoleNoVel-v1", seed=3,
                           separate_critic=True, encoder_sizes=encoder_sizes, parallel_critic=parallel)
        trainer.train()
        params.append(trainer.policy.state_dict())
    for key in params[0]:
        assert torch.equal(params[0][key], params[1][key]), key


def test_different_seeds_give_different_runs(tmp_path):
    a = _trainer(tmp_path, "a", seed=1)
    b = _trainer(tmp_path, "b", seed=2)
    a.train()
    b.train()
    assert not torch.equal(a.policy.action_head.linear.weight, b.policy.action_head.linear.weight)


def test_async_vector_env_trains(tmp_path):
    trainer = _trainer(tmp_path, "async", async_envs=True, env_id="tests/Boundary-v0",
                       env_import=("toy_envs",), total_steps=256)
    summary = trainer.train()
    assert summary["total_steps"] == 256 and summary["episodes"] > 0


def test_refreshed_start_states_equal_stored_ones_before_any_update(tmp_path):
    """With an unchanged network, replaying the rollout reproduces every stored start state."""
    trainer = _trainer(tmp_path, "r", env_id="tests/Boundary-v0", env_import=("toy_envs",), separate_critic=True)
    for _ in range(2):
        buf = trainer.collector.collect()
    seqs = make_sequences(buf.episode_starts.numpy(), 8, cut_at_episode_starts=True)
    zeros = torch.zeros_like(buf.rewards)
    batch = gather_sequences(buf, seqs, zeros, zeros)
    stored = batch.start_states.clone()
    assert stored.abs().sum() > 0
    refresh_start_states(trainer.policy, batch, buf)
    torch.testing.assert_close(batch.start_states, stored, atol=1e-5, rtol=0)


def test_refresh_option_trains(tmp_path):
    summary = _trainer(tmp_path, "rf", refresh_start_states=True).train()
    assert np.isfinite(summary["train_return_recent"])


class _RecordingCollector:
    """The local collector, keeping a copy of every rollout's observations (the trainer's own are reused)."""

    def __init__(self, config: TrainConfig):
        self.inner = local_collector(config)
        self.env_id = config.env.env_id
        self.num_envs = self.inner.num_envs
        self.observation_space, self.action_space = self.inner.observation_space, self.inner.action_space
        self.observations: list[torch.Tensor] = []

    def collect(self):
        rollout = self.inner.collect()
        self.observations.append(rollout.obs.clone())
        return rollout

    def __getattr__(self, name):  # start, set_weights, state_dict, load_state_dict, close
        return getattr(self.inner, name)


def test_one_iteration_feeds_the_rollouts_observations_to_the_normaliser(tmp_path):
    """With --normalize-obs, after one iteration the running statistics are exactly those of its rollout."""
    made: list[_RecordingCollector] = []

    def factory(config: TrainConfig) -> _RecordingCollector:
        made.append(_RecordingCollector(config))
        return made[-1]

    config = TrainConfig().with_overrides({**SMALL, "total_steps": 128, "run_dir": str(tmp_path / "n"),
                                           "env_id": "mnemo/CartPoleNoVel-v1", "normalize_obs": True})
    trainer = Trainer(config.validate(), collector_factory=factory)
    weights = trainer.policy.state_dict()
    assert float(weights["preprocess.normalizer.count"]) == 0  # nothing seen before training
    trainer.train()
    (obs,) = made[0].observations  # (T=32, N=4, 2): one rollout
    seen = obs.reshape(-1, obs.shape[-1]).double()
    weights = trainer.policy.state_dict()
    assert float(weights["preprocess.normalizer.count"]) == 32 * 4
    torch.testing.assert_close(weights["preprocess.normalizer.mean"].double(), seen.mean(0))
    torch.testing.assert_close(weights["preprocess.normalizer.var"].double(), seen.var(0, unbiased=False))


def test_the_trainer_holds_the_thread_setting_while_it_runs(tmp_path):
    """``torch_threads`` applies from the trainer's making to the end of ``train``, then the previous value returns."""
    before = torch.get_num_threads()
    seen = []
    try:
        torch.set_num_threads(2)
        trainer = _trainer(tmp_path, "threads", total_steps=256, torch_threads=1)
        assert torch.get_num_threads() == 1
        trainer.train(on_iteration=lambda t: seen.append(torch.get_num_threads()))
        assert seen == [1, 1] and torch.get_num_threads() == 2
        _trainer(tmp_path, "closed", torch_threads=1).close()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)



def test_summary_figures_carry_no_float_noise(tmp_path):
    """Issue 19, item 12: the T-maze's -0.1 step rewards summed to -4.000000000000002 in summary.json."""
    trainer = _trainer(tmp_path, "summary", total_steps=256, eval_episodes=3)
    summary = trainer.train()
    text = (tmp_path / "summary" / "summary.json").read_text()
    assert json.loads(text) == summary
    figures = [v for v in summary.values() if isinstance(v, float)]
    assert figures and all(len(repr(abs(v)).replace(".", "").lstrip("0")) <= 11 for v in figures), figures


def test_clean_floats_rounds_only_floats():
    from agents.run.run_log import clean_floats

    nan = float("nan")
    cleaned = clean_floats({"a": -1.2950000000000002, "b": [0.1 + 0.2, 7], "c": None, "d": "x", "e": nan})
    assert cleaned["a"] == -1.295 and cleaned["b"] == [0.3, 7] and cleaned["c"] is None and cleaned["d"] == "x"
    assert cleaned["e"] != cleaned["e"]
    assert clean_floats(1234567.891) == 1234567.891
