"""ONNX / TorchScript export: same numbers as torch over rollouts with resets, metadata, CLI, numpy game loop."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from registry_cases import core_names, core_settings

import envs  # noqa: F401  (registers mnemo/TMaze-v0)
from agents import PolicyRunner
from agents.config import PolicyConfig, TrainConfig
from agents.deploy.export import export_onnx, export_torchscript, load_onnx_metadata, load_torchscript
from agents.deploy.export_check import compare_with_torch, onnx_step_fn, torchscript_step_fn
from agents.deploy.export_cli import main
from agents.model.policy import RecurrentActorCritic
from agents.run.checkpoint import atomic_torch_save, build_payload
from agents.spaces import space_from_json

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnx_game_loop.py"
TMAZE_OBS = spaces.Box(0.0, 1.0, (4,), np.float32)
TMAZE_ACT = spaces.Discrete(3)


def make_policy(obs_space=TMAZE_OBS, act_space=TMAZE_ACT, seed=0, **kwargs) -> RecurrentActorCritic:
    torch.manual_seed(seed)
    kwargs.setdefault("hidden_size", 32)
    policy = RecurrentActorCritic(obs_space, act_space, PolicyConfig(**kwargs)).eval()
    with torch.no_grad():  # decisive logits: greedy actions cannot tie at float rounding
        policy.action_head.linear.weight.mul_(100.0)
    return policy


def export_both(policy, tmp_path):
    export_onnx(policy, tmp_path / "p.onnx")
    export_torchscript(policy, tmp_path / "p.pt")
    return onnx_step_fn(tmp_path / "p.onnx"), torchscript_step_fn(tmp_path / "p.pt")


@pytest.mark.parametrize("core, layers, separate", [
    (core, layers, separate) for core in core_names() for layers, separate in ((1, False), (2, False), (2, True))])
def test_exports_match_torch_over_rollouts_with_resets(tmp_path, core, layers, separate):
    check_exports_match_torch(make_policy(**core_settings(core, layers), separate_critic=separate), tmp_path)


def check_exports_match_torch(policy: RecurrentActorCritic, tmp_path) -> None:
    """The ONNX and TorchScript exports equal the torch policy over 100 steps x 4 agents with resets (1e-5)."""
    for step_fn in export_both(policy, tmp_path):
        report = compare_with_torch(policy, step_fn, steps=100, batch=4, reset_prob=0.1)
        assert report["max_abs_diff"] <= 1e-5
        assert report["actions_equal"]


@pytest.mark.parametrize("kwargs", [{"core": "none"}, {"carry_across_episodes": True}, {"normalize_obs": True},
                                    {"core": "stack", "stack_len": 3, "carry_across_episodes": True}])
def test_exports_match_torch_for_other_modes(tmp_path, kwargs):
    policy = make_policy(**kwargs)
    if kwargs.get("normalize_obs"):
        policy.update_obs_normalizer(torch.rand(50, 4) * 3 + 1)
    for step_fn in export_both(policy, tmp_path):
        report = compare_with_torch(policy, step_fn, steps=40, batch=3)
        assert report["max_abs_diff"] <= 1e-5
        assert report["actions_equal"]


@pytest.mark.parametrize("obs_space, act_space", [
    (spaces.Dict({"x": spaces.Box(-1.0, 1.0, (3,), np.float32), "t": spaces.Discrete(5)}),
     spaces.MultiDiscrete([2, 3])),
    (spaces.Tuple((spaces.MultiBinary(3), spaces.Discrete(4, start=1))), spaces.Box(-0.5, 0.5, (2,), np.float32)),
    (spaces.Box(0, 255, (8, 8, 3), np.uint8), spaces.MultiBinary(3)),
    (spaces.MultiDiscrete([3, 2]), spaces.Discrete(2, start=5)),
])
def test_onnx_export_of_every_space_kind(tmp_path, obs_space, act_space):
    policy = make_policy(obs_space, act_space)
    meta = export_onnx(policy, tmp_path / "p.onnx")
    report = compare_with_torch(policy, onnx_step_fn(tmp_path / "p.onnx"), steps=30, batch=3)
    assert report["max_abs_diff"] <= 1e-5
    assert report["actions_equal"]
    assert space_from_json(meta["observation_space"]) == obs_space
    assert space_from_json(meta["action_space"]) == act_space


def test_reset_rule_is_inside_the_graph_and_carry_mode_ignores_it(tmp_path):
    for carry in (False, True):
        policy = make_policy(carry_across_episodes=carry)
        export_onnx(policy, tmp_path / "p.onnx")
        run = onnx_step_fn(tmp_path / "p.onnx")
        rng = np.random.default_rng(0)
        obs = rng.random((2, 4), dtype=np.float32)
        h, c = rng.standard_normal((2, 1, 2, 32), dtype=np.float32)
        zero = np.zeros_like(h)
        with_start = run({"obs": obs, "h": h, "c": c, "episode_start": np.ones(2, np.float32)})
        from_zero = run({"obs": obs, "h": zero, "c": zero, "episode_start": np.zeros(2, np.float32)})
        carried = run({"obs": obs, "h": h, "c": c, "episode_start": np.zeros(2, np.float32)})
        expected = carried if carry else from_zero
        for name in ("logits", "value", "h_out", "c_out"):
            np.testing.assert_allclose(with_start[name], expected[name], atol=1e-6)


def test_metadata_and_dynamic_batch(tmp_path):
    policy = make_policy(core="lstm", num_layers=2, separate_critic=True)
    export_onnx(policy, tmp_path / "p.onnx")
    export_torchscript(policy, tmp_path / "p.pt")
    meta = load_onnx_metadata(tmp_path / "p.onnx")
    assert meta == load_torchscript(tmp_path / "p.pt")[1]
    assert [i["name"] for i in meta["inputs"]] == ["obs", "h", "c", "h_critic", "c_critic", "episode_start"]
    assert [o["name"] for o in meta["outputs"]] == [
        "logits", "action", "value", "h_out", "c_out", "h_critic_out", "c_critic_out"]
    assert meta["state_shape"] == [4, 2, 32]
    assert (meta["action_kind"], meta["mode"], meta["reset_on_episode_start"]) == ("categorical", "reset", True)
    json.dumps(meta)
    run = onnx_step_fn(tmp_path / "p.onnx")
    for batch in (1, 7):
        feed = {"obs": np.zeros((batch, 4), np.float32), "episode_start": np.ones(batch, np.float32)}
        feed.update({n: np.zeros((2, batch, 32), np.float32) for n in ("h", "c", "h_critic", "c_critic")})
        out = run(feed)
        assert out["logits"].shape == (batch, 3) and out["value"].shape == (batch,)
        assert out["h_critic_out"].shape == (2, batch, 32)


def _checkpoint(tmp_path, policy) -> Path:
    run_dir = tmp_path / "run"
    config = TrainConfig(policy=policy.config)
    atomic_torch_save(build_payload(config, policy, None, {"global_step": 0}), run_dir / "checkpoints" / "latest.pt")
    return run_dir


def test_command_line_exports_and_verifies(tmp_path, capsys):
    run_dir = _checkpoint(tmp_path, make_policy())
    assert main([str(run_dir), "--format", "onnx", "--out", str(tmp_path / "a.onnx")]) == 0
    assert main([str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "a.pt")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("-> ok") == 2
    assert "inputs:  obs, h, c, episode_start" in printed
    assert main([str(tmp_path / "missing")]) == 2


def test_onnx_export_without_onnx_says_what_to_install(tmp_path, monkeypatch, capsys):
    run_dir = _checkpoint(tmp_path, make_policy())
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were not installed
    assert main([str(run_dir), "--format", "onnx", "--out", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install onnx onnxruntime" in err and "--format torchscript" in err and "Traceback" not in err
    assert not (tmp_path / "a.onnx").exists()
    assert main([str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "a.pt")]) == 0


def _load_example():
    spec = importlib.util.spec_from_file_location("onnx_game_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_game_loop_plays_like_the_policy_runner(tmp_path):
    policy = make_policy()
    export_onnx(policy, tmp_path / "p.onnx")
    example = _load_example()
    onnx_policy = example.OnnxRunner(tmp_path / "p.onnx")
    runner = PolicyRunner(policy)
    env = gym.make("mnemo/TMaze-v0", corridor_length=2, max_episode_steps=8)
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        onnx_policy.reset()
        runner.reset()
        done = False
        while not done:
            action, info = runner.act(obs, return_info=True)
            onnx_action, onnx_info = onnx_policy.act(obs, return_info=True)
            assert onnx_action == action
            assert onnx_info.value == pytest.approx(info.value, abs=1e-5)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    sampled = example.OnnxRunner(tmp_path / "p.onnx", seed=0)
    returns = example.play(sampled, env, episodes=2, deterministic=False)
    assert len(returns) == 2
    env.close()


def test_numpy_game_loop_does_not_import_torch(tmp_path):
    export_onnx(make_policy(), tmp_path / "p.onnx")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('loop', {str(EXAMPLE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"assert m.main([{str(tmp_path / 'p.onnx')!r}, '--episodes', '1']) == 0\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "mnemo/TMaze-v0: 1 episodes" in result.stdout
    assert "torch imported: False" in result.stdout
