"""examples/train_from_python.py runs: train with a callback and a collector of its own, evaluate, play."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_from_python.py"


def test_the_python_api_example_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_from_python", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    run = tmp_path / "run"
    assert example.main(["--total-steps", "512", "--run-dir", str(run), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "trained 512 steps in 1 rollouts" in out and "episode 1: return" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["env"]["env_id"] == saved["derived"]["collector"]["value"]["env_id"] == "mnemo/TMaze-v0"
