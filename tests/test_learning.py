"""Learning: the LSTM agent solves the T-maze; the memoryless agent, on the same budget, cannot.

The T-maze shows its cue only on the first step, so a policy without memory
turns the right way half of the time (mean return at most 1.5 of a possible 4).
Budgets are the preset's (60k steps, about 10 s on 2 cores); seeds are fixed.
"""

import json

import pytest

from agents.train import cli as train

ARGS = ["--no-progress", "--eval-episodes", "40"]


def _eval_return(tmp_path, *flags: str) -> float:
    run = tmp_path / "run"
    assert train.main(["--run-dir", str(run), *ARGS, *flags]) == 0
    return json.loads((run / "summary.json").read_text())["eval_return_mean"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_lstm_solves_tmaze(tmp_path, seed):
    assert _eval_return(tmp_path, "--seed", str(seed)) >= 3.5


@pytest.mark.slow
def test_gru_solves_tmaze(tmp_path):
    assert _eval_return(tmp_path, "--core", "gru", "--seed", "1") >= 3.5


@pytest.mark.slow
def test_memoryless_baseline_fails_tmaze(tmp_path):
    assert _eval_return(tmp_path, "--core", "none", "--seed", "1") <= 2.0


@pytest.mark.slow
def test_defaults_without_a_preset_solve_tmaze(tmp_path):
    # What a user's env gets: no preset, the defaults and the derived settings alone (the preset's budget).
    assert _eval_return(tmp_path, "--preset", "none", "--total-steps", "60000", "--seed", "1") >= 3.5


@pytest.mark.slow
def test_memoryless_baseline_fails_tmaze_with_the_defaults(tmp_path):
    assert _eval_return(tmp_path, "--preset", "none", "--total-steps", "60000", "--core", "none",
                        "--seed", "1") <= 2.0
