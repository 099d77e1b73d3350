"""The product readout (``--readout-products``): what it computes, that the state and its rules stay the core's,
and that every path that acts (rollout, runner, ONNX and TorchScript exports, inspector) computes it alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.config import ConfigError, PolicyConfig, TrainConfig
from agents.model.cores import inspect_step, memory_view
from agents.model.policy import RecurrentActorCritic
from agents.model.readout import ProductReadout, memory_core

BOX = spaces.Box(0.0, 1.0, (4,), np.float32)


def _policy(core: str = "lstm", products: int = 5, hidden_size: int = 16, **settings) -> RecurrentActorCritic:
    torch.manual_seed(0)
    config = PolicyConfig(core=core, hidden_size=hidden_size, readout_products=products, **settings)
    return RecurrentActorCritic(BOX, spaces.Discrete(3), config).eval()


def test_off_by_default_and_the_flag_is_checked():
    plain = _policy(products=0)
    assert not isinstance(plain.actor_core, ProductReadout) and memory_core(plain.actor_core) is plain.actor_core
    with pytest.raises(ConfigError, match="--readout-products"):
        TrainConfig().with_overrides({"readout_products": -1}).validate()


@pytest.mark.parametrize("core", ["lstm", "none"])
def test_the_heads_read_the_core_output_and_its_products_with_the_features(core):
    """[h, (U h + a) * (V x + b)] with h the inner core's output and x the step's features; the state is the inner
    core's, so a policy with the readout has the same state shape and the same memory as one without."""
    policy, plain = _policy(core, recall_coef=1.0), _policy(core, products=0)
    wrapper = policy.actor_core
    inner = memory_core(wrapper)
    with torch.no_grad():  # non-zero biases, so the affine parts are checked too
        wrapper.memory_readout.bias.uniform_(-1, 1)
        wrapper.input_readout.bias.uniform_(-1, 1)
    assert policy.state_shape == plain.state_shape and wrapper.state_names == inner.state_names
    assert wrapper.out_features == inner.out_features + 5 == policy.actor_mlp[0].in_features
    x, state = torch.rand(3, 64), torch.rand(*policy.state_shape[:2], 3, policy.state_shape[2])
    start = torch.tensor([1.0, 0.0, 0.0])
    out, new_state = wrapper.step(x, state, start)
    hidden, inner_state = inner.step(x, state, start)
    u, v = wrapper.memory_readout, wrapper.input_readout
    expected = torch.cat((hidden, (hidden @ u.weight.T + u.bias) * (x @ v.weight.T + v.bias)), dim=-1)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(new_state, inner_state)
    # The recall head reads the memory's output alone.
    assert policy.recall_head.in_features == inner.out_features
    assert torch.equal(policy.recall_input(out), hidden)


@pytest.mark.parametrize("core", ["lstm", "gru", "none", "stack"])
def test_the_runner_and_the_exports_compute_the_readout(core, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_export import check_exports_match_torch
    from test_runner import check_runner_matches_policy_step, make_policy

    policy = make_policy(core=core, readout_products=5)  # decisive logits: greedy actions cannot tie
    check_runner_matches_policy_step(policy)
    check_exports_match_torch(policy, tmp_path)


def test_the_inspector_shows_the_inner_memory():
    policy, plain = _policy(), _policy(products=0)
    assert memory_view(policy.actor_core) == memory_view(plain.actor_core)
    plain.actor_core.load_state_dict(memory_core(policy.actor_core).state_dict())
    x, state, start = torch.rand(2, 64), policy.initial_state(2), torch.ones(2)
    columns, new_state = inspect_step(policy.actor_core, x, state, start)
    plain_columns, plain_state = inspect_step(plain.actor_core, x, state, start)
    assert torch.equal(new_state, plain_state)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(columns, plain_columns, strict=True) for k in a)
