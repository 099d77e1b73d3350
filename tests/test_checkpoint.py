"""Save -> load -> identical actions; safe loading; resume continues the run."""

import json
import pickle

import pytest
import torch

from agents.run.checkpoint import CheckpointError, atomic_torch_save, load_payload, load_policy
from agents.train import cli as train
from agents.trees import obs_to_tensor

FAST = ["--total-steps", "2048", "--num-envs", "4", "--num-steps", "64", "--bptt-len", "8",
        "--num-minibatches", "2", "--update-epochs", "2", "--eval-episodes", "2", "--no-progress",
        "--checkpoint-every", "512"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tmaze"
    assert train.main(["--run-dir", str(run), *FAST]) == 0
    return run


def test_run_directory_contents(trained_run):
    assert (trained_run / "config.json").is_file()
    assert (trained_run / "checkpoints" / "latest.pt").is_file()
    assert list(trained_run.glob("events.out.tfevents.*"))
    summary = json.loads((trained_run / "summary.json").read_text())
    for key in ("env_id", "total_steps", "wall_time_s", "sps", "eval_return_mean", "eval_return_std",
                "eval_episodes", "seed"):
        assert key in summary
    assert summary["total_steps"] == 2048


def test_save_load_gives_identical_deterministic_actions(trained_run):
    import gymnasium as gym

    import envs  # noqa: F401

    policy_a, config = load_policy(trained_run)
    policy_b, _ = load_policy(trained_run / "checkpoints" / "latest.pt")
    env = gym.make(config.env.env_id)
    obs, _ = env.reset(seed=0)
    state_a = policy_a.initial_state(1)
    state_b = policy_b.initial_state(1)
    start = torch.ones(1)
    for _ in range(30):
        x = obs_to_tensor(obs[None], "cpu")
        with torch.no_grad():
            out_a = policy_a.step(x, state_a, start, deterministic=True)
            out_b = policy_b.step(x, state_b, start, deterministic=True)
        assert torch.equal(out_a.action, out_b.action)
        torch.testing.assert_close(out_a.state, out_b.state, atol=0, rtol=0)
        obs, _, term, trunc, _ = env.step(int(out_a.action[0]))
        state_a, state_b = out_a.state, out_b.state
        start = torch.tensor([float(term or trunc)])
        if term or trunc:
            obs, _ = env.reset()


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "mnemo-checkpoint", "payload": Exploit()}, f)
    with pytest.raises(CheckpointError, match="Refusing to load"):
        load_payload(path)
    assert not marker.exists()


def test_truncated_checkpoint_gives_a_clear_error(tmp_path, trained_run):
    data = (trained_run / "checkpoints" / "latest.pt").read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_payload(bad)


def test_atomic_save_leaves_no_temp_files(tmp_path):
    atomic_torch_save({"x": torch.ones(2)}, tmp_path / "a.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def _assert_same_tree(a, b, where: str) -> None:
    """Nested dicts / lists of tensors and numbers (state dicts) equal exactly, leaf by leaf."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_resume_continues_counters_and_policy(trained_run, tmp_path):
    import shutil

    from agents.train.trainer import Trainer

    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    before, _ = load_payload(run / "checkpoints" / "latest.pt")
    argv = ["--resume", str(run), "--total-steps", "4096", "--no-progress", "--eval-episodes", "0"]
    # The resumed trainer starts from the checkpoint's weights (observation normaliser included) and optimizer
    # state (Adam's moments and step counts), not from a fresh initialisation with the same seed.
    assert before["optimizer"]["state"]  # Adam has moments to restore
    config, resume = train.resolve_config(argv)
    resumed = Trainer(config, resume=resume)
    try:
        _assert_same_tree(resumed.policy.state_dict(), before["policy"], "policy")
        _assert_same_tree(resumed.optimizer.state_dict(), before["optimizer"], "optimizer")
    finally:
        resumed.close()
    assert train.main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["total_steps"] == 4096
    _, meta = load_payload(run / "checkpoints" / "latest.pt")
    assert json.loads(before["meta"])["counters"]["global_step"] == 2048
    assert meta["counters"]["global_step"] == 4096


def test_resume_refuses_a_different_network(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "changed"
    shutil.copytree(trained_run, run)
    assert train.main(["--resume", str(run), "--hidden-size", "7", "--no-progress"]) == 2
    assert "--hidden-size: checkpoint 64, requested 7" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("which", ["run directory", "file"])
def test_loading_onto_cuda_without_a_gpu_says_so(trained_run, which):
    """Issue 19, item 2: not 'truncated or corrupted', but that CUDA is missing and what to pass instead."""
    from agents.deploy.runner import PolicyRunner

    target = trained_run if which == "run directory" else trained_run / "checkpoints" / "latest.pt"
    with pytest.raises(CheckpointError) as err:
        PolicyRunner.load(target, device="cuda")
    message = str(err.value)
    assert "CUDA is not available" in message and 'device="cpu"' in message
    assert "corrupted" not in message and "previous.pt" not in message
