"""--device: auto picks the GPU only where it pays and says why; explicit choices stay as asked."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces

from agents.config import ConfigError, PolicyConfig
from agents.train import cli as train
from agents.train.device import resolve_device

VECTOR = spaces.Box(-1.0, 1.0, (4,))
IMAGE = spaces.Box(0, 255, (32, 32, 3), dtype="uint8")


@pytest.mark.parametrize(("space", "hidden", "expected"), [
    (VECTOR, 64, "cpu"),  # a small vector network is faster on the CPU
    (IMAGE, 64, "cuda"),  # the CNN encoder pays for the GPU
    (spaces.Dict({"pos": VECTOR, "view": IMAGE}), 64, "cuda"),
    (VECTOR, 512, "cuda"),  # a large recurrent core too
])
def test_auto_takes_cuda_only_where_it_pays(monkeypatch, space, hidden, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    device, note = resolve_device("auto", space, PolicyConfig(hidden_size=hidden))
    assert device.type == expected
    assert note.startswith(f"--device auto: {expected}")


def test_explicit_devices_are_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda", VECTOR, PolicyConfig()) == (torch.device("cuda"), None)
    assert resolve_device("cpu", IMAGE, PolicyConfig()) == (torch.device("cpu"), None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU; use --device cpu or auto"):
        resolve_device("cuda", VECTOR, PolicyConfig())


def test_train_says_what_auto_chose(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = train.main(["--run-dir", str(tmp_path / "run"), "--total-steps", "128", "--num-envs", "4",
                       "--num-steps", "32", "--bptt-len", "8", "--num-minibatches", "2", "--eval-episodes", "0",
                       "--no-progress"])
    assert code == 0
    assert "--device auto: cpu (torch sees no CUDA GPU)." in capsys.readouterr().err
