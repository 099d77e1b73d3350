"""A memory core, a collector backend and an action head added from outside the package, as the checklists in
docs/architecture.md say: each is written here and registered, nothing in ``agents`` is edited for it, and the
checks that the built-ins pass run on it (the rollout invariant, sequence against step, PolicyRunner and ONNX
parity, exact resume, the inspector and memory panel, the command line and config validation)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from gymnasium import spaces
from registry_cases import core_settings
from test_crash_resume import check_resume_is_bitwise_exact
from test_inspector import _policy, check_probe_and_panel
from test_rollout_invariant import assert_sequence_path_reproduces, collect
from test_runner import check_runner_matches_policy_step, make_policy
from test_sequence_path import check_policy_sequence_equals_steps
from torch import nn

from agents.config import ConfigError, PolicyConfig, TrainConfig
from agents.model.action_heads import ACTION_HEADS, CategoricalHead, make_action_head, register_action_head
from agents.registry import BACKENDS, CORES, register_backend, register_core
from agents.rollout.collector import local_collector
from agents.spaces import UnsupportedSpaceError
from agents.train import cli as train
from agents.train.trainer import Trainer

TOY_CORE, TOY_BACKEND = "tanh_rnn", "toy_local"


class TanhRNNCore(nn.Module):
    """One tanh layer, ``h' = tanh(W x + U h)``: state ``h`` (1, 1, B, H), output h (B, H)."""

    kind = TOY_CORE
    state_names = ("h",)
    num_state_tensors = 1

    def __init__(self, input_size: int, hidden_size: int, reset_on_episode_start: bool):
        super().__init__()
        self.reset_on_episode_start = reset_on_episode_start
        self.state_shape = (1, 1, hidden_size)
        self.out_features = hidden_size
        self.w = nn.Linear(input_size, hidden_size)
        self.u = nn.Linear(hidden_size, hidden_size, bias=False)

    @classmethod
    def from_config(cls, config: PolicyConfig, input_size: int) -> TanhRNNCore:
        return cls(input_size, config.hidden_size, not config.carry_across_episodes)

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, outputs = state[0, 0], []
        for t in range(x.shape[0]):
            if self.reset_on_episode_start:
                h = h * (1.0 - episode_start[t].to(x.dtype)).unsqueeze(-1)
            h = torch.tanh(self.w(x[t]) + self.u(h))
            outputs.append(h)
        return torch.stack(outputs), h.view(1, 1, *h.shape)

    def step(self, x: torch.Tensor, state: torch.Tensor,
             episode_start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, new_state = self(x.unsqueeze(0), state, episode_start.unsqueeze(0))
        return out[0], new_state

    def step_in_place(self, x: torch.Tensor, views: Sequence[torch.Tensor]) -> torch.Tensor:
        h = torch.tanh(self.w(x) + self.u(views[0]))
        views[0].copy_(h)
        return h

    def export_step(self, x: torch.Tensor, states: Sequence[torch.Tensor],
                    keep: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        (h,) = states
        if keep is not None:
            h = h * keep
        h = torch.tanh(self.w(x[0]) + self.u(h[0]))
        return h, [h.unsqueeze(0)]

    def export_metadata(self) -> dict:
        return {"hidden_size": self.out_features}


def toy_collector(config: TrainConfig):
    """A backend of one's own: here the local vector env under another name."""
    return local_collector(config)


@pytest.fixture(autouse=True, scope="module")
def registered():
    register_core(TOY_CORE, summary="one tanh layer")(TanhRNNCore)
    register_backend(TOY_BACKEND, summary="the local collector, registered by a test")(toy_collector)
    yield
    CORES.remove(TOY_CORE)
    BACKENDS.remove(TOY_BACKEND)


@pytest.mark.parametrize(("layers", "separate", "carry"), [(1, False, False), (1, True, True), (2, True, False)])
def test_rollout_invariant(layers, separate, carry):
    policy, _collector, buf = collect(TOY_CORE, layers, separate, carry)
    assert type(policy.actor_core) is TanhRNNCore
    assert_sequence_path_reproduces(policy, buf, carry)


@pytest.mark.parametrize(("separate", "carry"), [(False, False), (True, True)])
def test_sequence_path_equals_step_path(separate, carry):
    check_policy_sequence_equals_steps(TOY_CORE, 1, separate, carry)


def test_policy_runner_matches_policy_step():
    check_runner_matches_policy_step(make_policy(**core_settings(TOY_CORE)))
    check_runner_matches_policy_step(make_policy(**core_settings(TOY_CORE), separate_critic=True))


def test_onnx_and_torchscript_exports_and_the_onnx_runner_match_torch(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from test_export import check_exports_match_torch
    from test_onnx_runner import check_onnx_runner_equals_policy_runner

    policy = make_policy(**core_settings(TOY_CORE), separate_critic=True)
    check_exports_match_torch(policy, tmp_path)
    check_onnx_runner_equals_policy_runner(policy, tmp_path)


def test_resume_is_bitwise_exact(tmp_path):
    check_resume_is_bitwise_exact(tmp_path, TOY_CORE)


def test_inspector_and_panel_show_its_state_rows():
    probe = check_probe_and_panel(_policy(TOY_CORE))
    assert probe.quantities == ("h",) and probe.column_names == ["slot 1"]


def test_command_line_and_config_accept_it():
    args = ["--core", TOY_CORE, "--backend", TOY_BACKEND]
    config, _ = train.resolve_config(args)
    assert (config.policy.core, config.run.backend) == (TOY_CORE, TOY_BACKEND)
    choices = {action.dest: action.choices for action in train.build_parser()._actions}
    assert TOY_CORE in choices["core"] and TOY_BACKEND in choices["backend"]
    with pytest.raises(ConfigError, match="applies to --core stack only"):
        TrainConfig().with_overrides({"core": TOY_CORE, "stack_len": 3}).validate()
    CORES.remove(TOY_CORE)
    try:
        with pytest.raises(ConfigError, match=f"--core must be one of lstm, gru, none, stack, got '{TOY_CORE}'"):
            config.validate()
    finally:
        register_core(TOY_CORE)(TanhRNNCore)


def test_a_registered_backend_collects_for_the_trainer(tmp_path):
    """The same short run through the toy backend and through the local one ends with the same weights."""
    small = {"env_id": "mnemo/TMaze-v0", "total_steps": 256, "num_envs": 2, "num_steps": 64, "num_minibatches": 2,
             "update_epochs": 1, "eval_episodes": 0, "progress": False, "seed": 5}
    weights = []
    for backend in ("local", TOY_BACKEND):
        config = TrainConfig().with_overrides({**small, "backend": backend, "run_dir": str(tmp_path / backend)})
        trainer = Trainer(config.validate())
        trainer.train()
        weights.append(trainer.policy.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


class SignedDiscrete(spaces.Discrete):
    """A Discrete space whose actions are -n//2 .. n - 1 - n//2 (an action space of one's own)."""

    def __init__(self, n: int):
        super().__init__(n, start=-(n // 2))


def test_a_registered_action_head_is_picked_for_its_space():
    @register_action_head
    class SignedHead(CategoricalHead):
        kind = "signed_categorical"
        space_type = SignedDiscrete
        space_description = "SignedDiscrete"

    try:
        head = make_action_head(SignedDiscrete(5), 6)
        assert type(head) is SignedHead
        assert type(make_action_head(spaces.Discrete(5), 6)) is CategoricalHead
        assert head.to_env(torch.tensor([0, 4])).tolist() == [-2, 2]
        with pytest.raises(UnsupportedSpaceError, match="SignedDiscrete"):
            make_action_head(spaces.Text(3), 6)  # the supported-spaces message lists it
    finally:
        del ACTION_HEADS[SignedDiscrete]
    assert type(make_action_head(SignedDiscrete(5), 6)) is CategoricalHead  # a subclass falls back to its base's
