"""Runs saved by earlier versions of the code still load and resume exactly.

``tests/data/run_saved_before_layout`` holds the config.json and latest.pt of a TMaze run (previous action and
reward on, so the env snapshot holds a wrapper of the package and a built-in task) stopped at step 256 of 512
by the code as it stood before the package layout of agents/ and envs/ changed. Its checkpoint names classes
by their old module paths.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from agents.config import TrainConfig
from agents.train.trainer import ResumeWarning, Trainer

SAVED = Path(__file__).parent / "data" / "run_saved_before_layout"


def test_a_run_saved_before_the_layout_change_resumes_bitwise_exactly(tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(SAVED, run)
    saved = json.loads((run / "config.json").read_text())
    config = TrainConfig.from_dict(saved).with_overrides({"run_dir": str(run)}).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # an exact resume warns about nothing
        resumed = Trainer(config, resume=True)
    assert resumed.global_step == 256
    resumed.train()

    straight = Trainer(config.with_overrides({"run_dir": str(tmp_path / "straight")}).validate())
    straight.train()
    assert resumed.global_step == straight.global_step == 512
    for key, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[key]), key
    assert list(straight.recent_returns) == list(resumed.recent_returns)
