"""Command-line mistakes get one line that names the problem and the fix (exit 2), and step counts read as people
write them (1e5, 100k, 2.5M)."""

from __future__ import annotations

import pytest

from agents import cli
from agents.arguments import step_count
from agents.train.cli import main as train_main
from agents.train.cli import resolve_config


def _error_lines(capsys, run) -> list[str]:
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.strip().splitlines()


def test_a_mistyped_choice_is_one_line_with_the_close_match(capsys):
    lines = _error_lines(capsys, lambda: train_main(["--core", "lsmt"]))
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --core: 'lsmt' is not a choice; did you mean 'lstm'? Choices: lstm, gru")


def test_a_value_of_the_wrong_type_is_one_line(capsys):
    lines = _error_lines(capsys, lambda: train_main(["--hidden-size", "abc"]))
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --hidden-size: 'abc' is not a whole number.")
    assert "--help" in lines[0]


def test_an_unknown_flag_gets_the_close_one(capsys):
    lines = _error_lines(capsys, lambda: train_main(["--hiden-size", "8"]))
    assert lines == ["error: unknown argument --hiden-size 8; did you mean --hidden-size?"]


def test_the_mnemo_commands_share_the_one_line_errors(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["mnemo"])
    for argv, expected in ((["train", "--core", "gur"], "did you mean 'gru'?"),
                           (["export", "run", "--format", "onx"], "did you mean 'onnx'?"),
                           (["watch", "run", "--episodes", "x"], "'x' is not a whole number"),
                           (["watch"], "the following arguments are required: path")):
        lines = _error_lines(capsys, lambda argv=argv: cli.main(argv))
        assert len(lines) == 1 and expected in lines[0], (argv, lines)


@pytest.mark.parametrize(("text", "steps"), [("100000", 100_000), ("1e5", 100_000), ("100000.0", 100_000),
                                             ("100k", 100_000), ("1M", 1_000_000), ("2.5M", 2_500_000),
                                             ("1_000", 1_000)])
def test_step_counts_read_as_people_write_them(text, steps):
    assert step_count(text) == steps
    config, _ = resolve_config(["--total-steps", text, "--checkpoint-every", text])
    assert config.ppo.total_steps == steps and config.run.checkpoint_every == steps


@pytest.mark.parametrize("text", ["1.5", "1e-3", "1.0005k", "lots", "inf"])
def test_a_step_count_that_is_not_whole_is_refused_in_one_line(capsys, text):
    lines = _error_lines(capsys, lambda: train_main(["--total-steps", text]))
    assert len(lines) == 1 and lines[0].startswith(f"error: --total-steps: {text!r} is not a"), lines
