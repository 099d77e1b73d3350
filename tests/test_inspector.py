"""The memory inspector: gates recomputed from the weights equal nn.LSTM / nn.GRU; readouts and panel drawing."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from registry_cases import core_names, core_settings

from agents.config import PolicyConfig
from agents.model.cores import GRUCore, LSTMCore, RNNCore
from agents.model.policy import RecurrentActorCritic
from agents.watch.inspector import InspectorError, MemoryProbe, trace_core, trace_rnn
from agents.watch.memory_panel import BLUE_WHITE_RED, EMPTY, VIRIDIS, MemoryPanel, _nice_ceil, colormap
from envs.games.text import TextRenderer

T, B, F, H = 9, 3, 5, 7


def _episode_starts() -> torch.Tensor:
    """(T, B): every env starts at t = 0; env 1 again at t = 4, env 2 at t = 6 and t = 7."""
    start = torch.zeros(T, B)
    start[0] = 1.0
    start[4, 1] = start[6, 2] = start[7, 2] = 1.0
    return start


def _random_core(kind: str, layers: int, reset: bool = True) -> RNNCore:
    torch.manual_seed(0)
    core = {"lstm": LSTMCore, "gru": GRUCore}[kind](F, H, layers, reset)
    with torch.no_grad():
        for p in core.rnn.parameters():  # non-zero biases too (the policy zero-initialises them)
            p.normal_(0.0, 0.5)
    return core


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recomputed_states_match_torch_with_episode_resets(kind, layers):
    core = _random_core(kind, layers)
    s = 2 if kind == "lstm" else 1
    x, state, start = torch.randn(T, B, F), torch.randn(s, layers, B, H), _episode_starts()
    trace = trace_core(core, x, state, start)

    # Top-layer h over the sequence and the final state equal the policy's core (fused nn.LSTM/nn.GRU calls).
    with torch.no_grad():
        out, final = core(x, state, start)
    torch.testing.assert_close(trace.quantities["h"][:, -1], out, atol=1e-5, rtol=0)
    torch.testing.assert_close(trace.state, final, atol=1e-5, rtol=0)

    # Every layer's h (and c) at every step equal nn.LSTM/nn.GRU stepped one step at a time.
    st = state.clone()
    with torch.no_grad():
        for t in range(T):
            st = st * (1.0 - start[t]).view(1, 1, B, 1)
            if kind == "lstm":
                _, (h, c) = core.rnn(x[t:t + 1], (st[0], st[1]))
                torch.testing.assert_close(trace.quantities["c"][t], c, atol=1e-5, rtol=0)
                st = torch.stack((h, c))
            else:
                _, h = core.rnn(x[t:t + 1], st[0])
                st = h.unsqueeze(0)
            torch.testing.assert_close(trace.quantities["h"][t], h, atol=1e-5, rtol=0)


def test_lstm_gates_obey_the_cell_equations():
    core = _random_core("lstm", 2)
    x, state = torch.randn(T, B, F), torch.randn(2, 2, B, H)
    q = trace_rnn(core.rnn, x, state).quantities
    for name in ("i", "f", "o"):
        assert ((q[name] > 0) & (q[name] < 1)).all()
    c_prev = torch.cat([state[1].unsqueeze(0), q["c"][:-1]])
    torch.testing.assert_close(q["c"], q["f"] * c_prev + q["i"] * q["g"])
    torch.testing.assert_close(q["h"], q["o"] * torch.tanh(q["c"]))


def test_carry_mode_ignores_episode_starts():
    core = _random_core("lstm", 1, reset=False)
    x, state, start = torch.randn(T, B, F), torch.randn(2, 1, B, H), _episode_starts()
    with torch.no_grad():
        out, final = core(x, state, start)
    trace = trace_core(core, x, state, start)
    torch.testing.assert_close(trace.quantities["h"][:, -1], out, atol=1e-5, rtol=0)
    torch.testing.assert_close(trace.state, final, atol=1e-5, rtol=0)


def _policy(core: str, layers: int = 1, action_space: spaces.Space | None = None) -> RecurrentActorCritic:
    torch.manual_seed(1)
    obs_space = spaces.Box(0.0, 1.0, (4,), np.float32)
    config = PolicyConfig(**core_settings(core, layers), hidden_size=12)
    return RecurrentActorCritic(obs_space, action_space or spaces.Discrete(3), config)


def _play(policy: RecurrentActorCritic, probe: MemoryProbe, steps: int, panel: MemoryPanel | None = None):
    """Step the policy on random observations, reading each step (with the state-equality guard on)."""
    gen = torch.Generator().manual_seed(0)
    state, start = policy.initial_state(1), torch.ones(1)
    readouts = []
    for t in range(steps):
        obs = torch.rand(1, 4, generator=gen)
        with torch.no_grad():
            out = policy.step(obs, state, start, deterministic=False, generator=gen)
        r = probe.read(obs, state, start, out.action, out.state)
        assert r.value == pytest.approx(out.value.item(), abs=1e-6)
        readouts.append((r, out))
        if panel is not None:
            panel.push(r)
            panel.set_reward(1.0 if t % 3 == 0 else 0.0)
        state, start = out.state, torch.tensor([1.0 if t == 3 else 0.0])
    return readouts


@pytest.mark.parametrize("core,layers", [(core, layers) for core in core_names() for layers in (1, 2)])
def test_probe_reads_the_step_the_policy_took_and_the_panel_draws_it(core, layers):
    check_probe_and_panel(_policy(core, layers))


def check_probe_and_panel(policy: RecurrentActorCritic) -> MemoryProbe:
    """The probe reads 6 steps of ``policy`` (its state guard on): one row per quantity the core's view names, in
    each of its columns; the panel draws a frame of them."""
    probe = MemoryProbe(policy, action_labels=["north", "east", "south"])
    assert probe.action_labels == ["north", "east", "south"]
    panel = MemoryPanel(probe, history=8, text=TextRenderer(use_system_font=False))
    for r, out in _play(policy, probe, 6, panel):
        assert r.action_values.shape == (3,)
        assert r.action_values.sum() == pytest.approx(1.0, abs=1e-5)
        assert r.chosen == [int(out.action.item())]
        assert r.obs is not None and r.obs.shape == (4,)
        assert len(r.layers) == probe.num_layers == len(probe.column_names)
        for layer in r.layers:
            assert set(layer) == set(probe.quantities)
            assert all(v.shape == (probe.hidden_size,) for v in layer.values())
    for row in probe.rows:
        assert row.key in panel.layout.rows
    frame = panel.compose(np.zeros((20, 30, 3), np.uint8), ["caption"])
    assert frame.dtype == np.uint8 and frame.shape[1] > panel.size[0] and frame.shape[0] >= panel.size[1]
    return probe


def test_probe_shows_an_lstms_gates_and_its_top_h():
    policy = _policy("lstm", 2)
    probe = MemoryProbe(policy)
    assert probe.quantities == ("i", "f", "o", "c", "h") and probe.column_names == ["layer 1", "layer 2"]
    assert MemoryProbe(_policy("gru")).quantities == ("r", "z", "n", "h")
    for r, out in _play(policy, probe, 4):  # the top layer's h is what the heads read
        torch.testing.assert_close(torch.from_numpy(r.layers[-1]["h"]), out.state[0, -1, 0], atol=1e-5, rtol=0)


def test_probe_guard_catches_a_mismatching_core():
    policy = _policy("lstm")
    probe = MemoryProbe(policy)
    obs, state, start = torch.rand(1, 4), policy.initial_state(1), torch.ones(1)
    out = policy.step(obs, state, start, deterministic=True)
    with pytest.raises(InspectorError, match="no longer describe"):
        probe.read(obs, state, start, out.action, out.state + 1.0)


@pytest.mark.parametrize("space", [spaces.MultiDiscrete([2, 3]), spaces.Box(-2.0, 2.0, (2,), np.float32),
                                   spaces.MultiBinary(3)])
def test_probe_action_rows_for_other_action_spaces(space):
    policy = _policy("gru", action_space=space)
    probe = MemoryProbe(policy)
    panel = MemoryPanel(probe, history=8, text=TextRenderer(use_system_font=False))
    for r, _ in _play(policy, probe, 3, panel):
        assert r.action_values.shape == (len(probe.action_labels),)
        assert np.all(np.abs(r.action_values) <= 1.0)
    frame = panel.compose(np.zeros((20, 30, 3), np.uint8), ["caption"])
    assert frame.dtype == np.uint8 and frame.shape[2] == 3


def test_colormaps():
    assert tuple(colormap(np.array([0.0]), VIRIDIS, 0.0, 1.0)[0]) == tuple(VIRIDIS[0])
    assert tuple(colormap(np.array([1.0]), VIRIDIS, 0.0, 1.0)[0]) == tuple(VIRIDIS[-1])
    assert tuple(colormap(np.array([0.0]), BLUE_WHITE_RED, -1.0, 1.0)[0]) == (247, 247, 247)  # white at zero
    blue, red = colormap(np.array([-5.0, 5.0]), BLUE_WHITE_RED, -1.0, 1.0)  # clipped to the ends
    assert blue[2] > blue[0] and red[0] > red[2]
    assert tuple(colormap(np.array([np.nan]), VIRIDIS, 0.0, 1.0)[0]) == EMPTY
    # The cell state's colour range only takes round values, so it rarely changes during a video.
    assert [_nice_ceil(x) for x in (0.3, 1.4, 2.1, 4.3, 7.0, 11.0)] == [1.0, 2.0, 5.0, 5.0, 10.0, 20.0]


@pytest.mark.parametrize("use_system_font", [True, False])
def test_panel_frames_have_a_fixed_size_and_show_the_history(use_system_font):
    policy = _policy("lstm", 2)
    probe = MemoryProbe(policy)
    text = TextRenderer(use_system_font=use_system_font)
    panel = MemoryPanel(probe, history=10, text=text)
    game = np.full((60, 80, 3), 200, np.uint8)
    empty = panel.compose(game, ["mnemo/Test", "episode 1"])
    _play(policy, probe, 12, panel)
    full = panel.compose(game, ["mnemo/Test", "episode 1"])
    assert empty.shape == full.shape
    assert full.shape[1] == 300 + 2 * 14 + panel.size[0]  # game column (at least 300 px) + panel
    assert len(panel.readouts) == 10
    assert not np.array_equal(empty, full)
    # The game is drawn unchanged in the top-left column.
    x0 = 14 + (300 - 80) // 2
    assert np.array_equal(full[14:74, x0:x0 + 80], game)
    # Text was drawn (fallback pixel font included): the title row is not plain background.
    title_row = full[14:40, 328 + 14: 328 + 200]
    assert len(np.unique(title_row.reshape(-1, 3), axis=0)) > 1


def test_panel_for_a_memoryless_agent_shows_a_note():
    policy = _policy("none")
    probe = MemoryProbe(policy)
    panel = MemoryPanel(probe, history=6, text=TextRenderer(use_system_font=False))
    _play(policy, probe, 3, panel)
    lstm_panel = MemoryPanel(MemoryProbe(_policy("lstm")), history=6)
    assert "note" in panel.layout.rows and "i" not in panel.layout.rows
    assert panel.size[1] < lstm_panel.size[1]
    surface = panel.draw()
    assert surface.get_size() == panel.size


def test_envs_can_name_their_actions_for_the_panel():
    import gymnasium as gym

    import envs  # noqa: F401  (registers the mnemo/ ids)
    from agents.watch.inspector import action_labels_for

    # The T-maze declares metadata["action_names"]; through gym.make's wrappers too.
    assert action_labels_for(gym.make("mnemo/TMaze-v0")) == ["north", "east", "south"]
    assert action_labels_for(gym.make("mnemo/FogMaze-v0")) == ["up", "right", "down", "left"]
    assert action_labels_for(gym.make("mnemo/FlickerPong-v0")) == ["stay", "up", "down"]
    assert action_labels_for(gym.make("CartPole-v1")) is None  # nothing declared: the panel numbers them
    env = gym.make("mnemo/TMaze-v0")
    probe = MemoryProbe(_policy("lstm"), action_labels_for(env))
    assert probe.action_labels == ["north", "east", "south"]


def test_inspector_and_panel_modules_import_without_pygame():
    """The gate math and the probe are torch only; the panel and apps import pygame only when they draw."""
    import subprocess
    import sys

    code = ("import sys, agents.watch.inspector, agents.watch.memory_panel, envs.games.text, apps.versus; "
            "assert 'pygame' not in sys.modules, 'pygame imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_probe_and_panel_show_the_frame_stack():
    torch.manual_seed(1)
    config = PolicyConfig(core="stack", stack_len=3, encoder_sizes=(12,))
    policy = RecurrentActorCritic(spaces.Box(0.0, 1.0, (4,), np.float32), spaces.Discrete(3), config)
    probe = MemoryProbe(policy)
    assert probe.quantities == ("x",) and probe.column_names == ["t-2", "t-1", "t"]
    panel = MemoryPanel(probe, history=6, text=TextRenderer(use_system_font=False))
    for r, out in _play(policy, probe, 5, panel):
        assert len(r.layers) == 3  # one column per stacked step, oldest first
        for k, layer in enumerate(r.layers):
            torch.testing.assert_close(torch.from_numpy(layer["x"]), out.state[0, k, 0], atol=0, rtol=0)
    assert panel.draw().get_size() == panel.size
