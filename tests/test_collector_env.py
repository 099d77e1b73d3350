"""A custom collector's env on record: config.json and the checkpoints say which env a run trained on, or that
its envs have no id, so that evaluation, watch and resume never make a different env in silence."""

from __future__ import annotations

import json

import pytest

from agents.config import ConfigError, TrainConfig
from agents.rollout.collector import local_collector
from agents.run.checkpoint import CheckpointError, load_payload, load_policy
from agents.train import cli as train
from agents.train.evaluation import evaluate_run
from agents.train.trainer import Trainer

SMALL = {"env_id": "mnemo/CartPoleNoVel-v1", "total_steps": 256, "num_envs": 2, "num_steps": 32, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 1, "eval_episodes": 0, "progress": False, "seed": 5}


class Unnamed:
    """A collector whose envs the trainer cannot name: it says nothing of its env (no ``env_id``)."""

    def __init__(self, config: TrainConfig):
        self.inner = local_collector(config)
        self.num_envs = self.inner.num_envs
        self.observation_space, self.action_space = self.inner.observation_space, self.inner.action_space

    def __getattr__(self, name):  # start, collect, set_weights, state_dict, load_state_dict, close
        return getattr(self.inner, name)


class Named(Unnamed):
    """The same collector, saying which Gymnasium id its envs are."""

    def __init__(self, config: TrainConfig, env_id: str | None = None):
        super().__init__(config)
        self.env_id = env_id or config.env.env_id


def _config(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig().with_overrides({**SMALL, "run_dir": str(tmp_path / "run"), **overrides}).validate()


def test_the_default_collector_records_nothing_extra(tmp_path):
    Trainer(_config(tmp_path)).train()
    assert "collector" not in json.loads((tmp_path / "run" / "config.json").read_text())["derived"]
    _, meta = load_payload(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert "collector" not in meta


def test_a_collector_on_another_env_than_the_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"runs 'mnemo/TMaze-v0', but the config's env_id is "
                                          r"'mnemo/CartPoleNoVel-v1'; set env_id='mnemo/TMaze-v0'"):
        Trainer(_config(tmp_path), collector_factory=lambda config: Named(config, "mnemo/TMaze-v0"))
    assert not (tmp_path / "run").exists()  # refused before any file was written


def test_a_named_collector_is_recorded_and_evaluates_on_its_env(tmp_path):
    summary = Trainer(_config(tmp_path, eval_episodes=2), collector_factory=Named).train()
    assert summary["eval_episodes"] == 2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    record = {"factory": f"{Named.__module__}.Named", "env_id": "mnemo/CartPoleNoVel-v1"}
    assert saved["derived"]["collector"]["value"] == record
    assert len(evaluate_run(tmp_path / "run", episodes=2)) == 2


def test_an_unnamed_collector_cannot_ask_for_a_final_evaluation(tmp_path):
    with pytest.raises(ConfigError, match=r"does not name its env .* set eval_episodes=0"):
        Trainer(_config(tmp_path, eval_episodes=2), collector_factory=Unnamed)


def test_a_run_on_unnamed_envs_is_refused_where_its_env_would_be_a_guess(tmp_path, capsys):
    config = _config(tmp_path)
    Trainer(config, collector_factory=Unnamed).train()
    run = tmp_path / "run"
    record = {"factory": f"{Unnamed.__module__}.Unnamed", "env_id": None}
    assert json.loads((run / "config.json").read_text())["derived"]["collector"]["value"] == record
    assert load_payload(run / "checkpoints" / "latest.pt")[1]["collector"] == record

    load_policy(run)  # the policy itself loads: a game loop brings its own env
    for refused in (lambda: load_policy(run, need_env=True), lambda: evaluate_run(run, episodes=1)):
        with pytest.raises(CheckpointError, match="whose env has no id"):
            refused()
    assert train.main(["--resume", str(run), "--total-steps", "512", "--no-progress"]) == 2
    assert "resume it from Python with Trainer(config, resume=True, collector_factory=...)" in capsys.readouterr().err

    # With its own collector again, the run resumes.
    resumed = Trainer(config.with_overrides({"total_steps": 512}), resume=True, collector_factory=Unnamed)
    assert resumed.global_step == 256
    assert resumed.train()["total_steps"] == 512


def test_watch_refuses_a_run_on_unnamed_envs(tmp_path):
    pytest.importorskip("pygame")
    from agents.watch.viewer import watch

    Trainer(_config(tmp_path), collector_factory=Unnamed).train()
    with pytest.raises(CheckpointError, match="whose env has no id"):
        watch(tmp_path / "run", episodes=1, record=str(tmp_path / "x.gif"))
