"""Learning: the LSTM agent solves the T-maze; the memoryless agent, on the same budget, cannot.

The T-maze shows its cue only on the first step, so a policy without memory
turns the right way half of the time (mean return at most 1.5 of a possible 4).
The LSTM and memoryless runs get the preset's budget (100k steps); GRU and the defaults, which learn the task
sooner, get less (60k and 30k; each still scores 4 on its seed, and LSTM at 60k does not yet). Seeds are fixed.
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
def test_lstm_solves_tmaze(tmp_path):
    # The README's quick start (the preset, 100k steps); seed 2 scores 4 as well, left out for the suite's time.
    assert _eval_return(tmp_path, "--seed", "1") >= 3.5


@pytest.mark.slow
def test_gru_solves_tmaze(tmp_path):
    assert _eval_return(tmp_path, "--core", "gru", "--total-steps", "60000", "--seed", "1") >= 3.5


@pytest.mark.slow
def test_memoryless_baseline_fails_tmaze(tmp_path):
    assert _eval_return(tmp_path, "--core", "none", "--seed", "1") <= 2.0


@pytest.mark.slow
def test_defaults_without_a_preset_solve_tmaze(tmp_path):
    # What a user's env gets: no preset, the defaults and the derived settings alone (seed 1 scores 4 at 30k).
    assert _eval_return(tmp_path, "--preset", "none", "--total-steps", "30000", "--seed", "1") >= 3.5


@pytest.mark.slow
def test_memoryless_baseline_fails_tmaze_with_the_defaults(tmp_path):
    assert _eval_return(tmp_path, "--preset", "none", "--total-steps", "30000", "--core", "none",
                        "--seed", "1") <= 2.0
