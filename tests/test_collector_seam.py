"""The collector seam: the trainer runs on any ``Collector`` a factory gives it, and resumes it exactly.

``RemoteLike`` stands in for a distributed collector: it acts with its own copy of the policy, which
reaches it only through ``set_weights``, and hands back rollouts in fresh tensors, never the trainer's.
"""

from __future__ import annotations

import pytest
import torch

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.collector import Collector, local_collector
from agents.train.trainer import Trainer

SMALL = {"env_id": "mnemo/CartPoleNoVel-v1", "total_steps": 1024, "num_envs": 4, "num_steps": 32, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False, "seed": 5,
         "normalize_obs": True, "checkpoint_every": 128}


class Crash(Exception):
    pass


class RemoteLike:
    """A ``Collector`` with its own policy copy: weights arrive by ``set_weights``, rollouts leave as copies."""

    def __init__(self, config: TrainConfig):
        self.inner = local_collector(config)
        self.num_envs = self.inner.num_envs
        self.observation_space, self.action_space = self.inner.observation_space, self.inner.action_space
        self.weight_updates = 0

    def start(self, policy, device, sample_seed, env_seed) -> None:
        self.policy = RecurrentActorCritic(self.observation_space, self.action_space, policy.config).to(device)
        self.policy.load_state_dict(policy.state_dict())
        self.inner.start(self.policy, device, sample_seed, env_seed)

    def collect(self):
        rollout = self.inner.collect()
        fresh = {name: value.clone() if isinstance(value, torch.Tensor) else value
                 for name, value in vars(rollout).items() if name != "obs"}
        return type(rollout)(obs=rollout.obs.clone(), **fresh)

    def set_weights(self, weights) -> None:
        self.weight_updates += 1
        self.inner.set_weights(weights)

    def state_dict(self, snapshot_envs: bool = True) -> dict:
        return self.inner.state_dict(snapshot_envs)

    def load_state_dict(self, state: dict) -> str | None:
        return self.inner.load_state_dict(state)

    def close(self) -> None:
        self.inner.close()


def _config(tmp_path, name: str) -> TrainConfig:
    return TrainConfig().with_overrides({**SMALL, "run_dir": str(tmp_path / name)}).validate()


def _assert_same_policy(a: Trainer, b: Trainer) -> None:
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key]), key


def test_remote_like_collector_gives_bitwise_the_local_run(tmp_path):
    local = Trainer(_config(tmp_path, "local"))
    local.train()
    made: list[RemoteLike] = []

    def factory(config: TrainConfig) -> Collector:
        made.append(RemoteLike(config))
        return made[-1]

    remote = Trainer(_config(tmp_path, "remote"), collector_factory=factory)
    remote.train()
    assert made[0].policy is not remote.policy
    assert made[0].weight_updates == remote.iteration  # weights go out once per iteration
    _assert_same_policy(local, remote)


def test_collector_state_resumes_exactly_through_the_seam(tmp_path):
    straight = Trainer(_config(tmp_path, "straight"), collector_factory=RemoteLike)
    straight.train()

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 512:
            raise Crash

    config = _config(tmp_path, "crashed")
    with pytest.raises(Crash):
        Trainer(config, collector_factory=RemoteLike).train(on_iteration=crash)
    resumed = Trainer(config, resume=True, collector_factory=RemoteLike)
    assert resumed.resume_note is None and resumed.global_step == 512
    resumed.train()
    _assert_same_policy(straight, resumed)


def test_a_collector_without_use_noise_runs_without_the_sparse_noise_rule(tmp_path):
    # MountainCarNoVel's first episodes all return -200, where the local collector would switch noise on.
    config = TrainConfig().with_overrides({**SMALL, "env_id": "mnemo/MountainCarNoVel-v0", "normalize_obs": False,
                                           "sparse_noise": 0.98, "sparse_noise_episodes": 2,
                                           "run_dir": str(tmp_path / "r")}).validate()
    trainer = Trainer(config, collector_factory=RemoteLike)
    trainer.train()
    assert trainer.sparse_noise.decision == "off" and trainer.collector.inner.noise is None
    assert "no use_noise method" in trainer.sparse_noise.summary()["why"]
