"""The frame-stack core (``--core stack``): added through the core interface alone, it trains, saves,
exports and runs in PolicyRunner and OnnxRunner like the recurrent cores; its memory reaches K - 1 steps back."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.config import PolicyConfig
from agents.deploy.runner import PolicyRunner
from agents.model.cores import StackCore
from agents.model.policy import RecurrentActorCritic
from agents.train import cli as train


def test_stack_reaches_k_minus_1_steps_back_and_no_further():
    core = StackCore(input_size=2, stack_len=3, reset_on_episode_start=True)
    x = torch.randn(6, 1, 2)
    state, starts = torch.zeros(1, 3, 1, 2), torch.zeros(6, 1)
    out, _ = core(x, state, starts)
    for t_changed, reached in ((3, True), (2, True), (1, False)):  # output at t = 4 (K = 3: steps 2, 3, 4)
        y = x.clone()
        y[t_changed] += 1.0
        changed = not torch.equal(core(y, state, starts)[0][4], out[4])
        assert changed == reached, t_changed
    torch.testing.assert_close(out[4, 0], x[2:5, 0].reshape(-1), atol=0, rtol=0)  # oldest first


def test_episode_start_pads_with_zeros_in_reset_mode_and_carries_in_carry_mode():
    x, state = torch.randn(3, 2, 4), torch.randn(1, 3, 2, 4)
    starts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    reset, _ = StackCore(4, 3, True)(x, state, starts)
    torch.testing.assert_close(reset[1, 0], torch.cat((torch.zeros(8), x[1, 0])), atol=0, rtol=0)
    torch.testing.assert_close(reset[2, 0], torch.cat((torch.zeros(4), x[1, 0], x[2, 0])), atol=0, rtol=0)
    carry, _ = StackCore(4, 3, False)(x, state, starts)
    torch.testing.assert_close(carry[1, 0], torch.cat((state[0, 2, 0], x[0, 0], x[1, 0])), atol=0, rtol=0)


def test_state_is_k_encodings_wide_not_hidden_size():
    cfg = PolicyConfig(core="stack", stack_len=5, encoder_sizes=(24,), hidden_size=64, separate_critic=True)
    policy = RecurrentActorCritic(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2), cfg)
    assert policy.state_shape == (1, 5, 24)  # the stack has no weights: the critic reads the same stack
    assert policy.critic_core is None and policy.actor_core.out_features == 5 * 24


def test_stack_trains_exports_and_runs_end_to_end(tmp_path):
    pytest.importorskip("onnxruntime")
    import gymnasium as gym

    import envs  # noqa: F401
    from agents.deploy.export import export_onnx
    from agents.deploy.onnx_runner import OnnxRunner

    run = tmp_path / "run"
    assert train.main(["--run-dir", str(run), "--env-id", "mnemo/TMaze-v0", "--core", "stack", "--stack-len", "3",
                       "--total-steps", "1024", "--num-envs", "4", "--num-steps", "64", "--eval-episodes", "2",
                       "--no-progress"]) == 0
    runner = PolicyRunner.load(run)
    assert runner.policy.state_shape[:2] == (1, 3)
    meta = export_onnx(runner.policy, tmp_path / "p.onnx")
    assert meta["state_inputs"] == ["stack"] and meta["stack_len"] == 3
    assert [o["name"] for o in meta["outputs"] if o["role"] == "state"] == ["stack_out"]
    onnx_runner = OnnxRunner(tmp_path / "p.onnx")
    env = gym.make(runner.config.env.env_id)
    obs, _ = env.reset(seed=0)
    for _ in range(40):
        action = runner.act(obs)
        assert onnx_runner.act(obs) == action
        np.testing.assert_allclose(onnx_runner.get_state(), runner.get_state().numpy(), atol=1e-5)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            runner.reset()
            onnx_runner.reset()
