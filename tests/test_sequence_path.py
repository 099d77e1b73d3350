"""The sequence path (training) equals the step-by-step path (rollout, runtime).

Outputs, values and final states agree for LSTM, GRU and the frame stack, 1 and 2 layers,
shared and separate critic, reset and carry mode, with episode starts inside
the sequence.
"""

import itertools

import numpy as np
import pytest
import torch
from gymnasium import spaces
from registry_cases import core_names, core_settings

from agents.config import ConfigError, PolicyConfig, TrainConfig
from agents.model.cores import make_core
from agents.model.policy import RecurrentActorCritic

CASES = list(itertools.product(core_names(), [1, 2], [False, True], [False, True]))


def _core(kind: str, input_size: int, width: int, layers: int, reset: bool):
    config = PolicyConfig(**core_settings(kind, layers), hidden_size=width, carry_across_episodes=not reset)
    return make_core(config, input_size)


def _episode_starts(t_len: int, batch: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    starts = rng.random((t_len, batch)) < 0.2
    starts[0] = True
    starts[5, :] = True  # a time where every env starts together
    starts[6, 0] = True  # and one where only some do
    return torch.as_tensor(starts, dtype=torch.float32)


@pytest.mark.parametrize(("kind", "layers", "separate", "carry"), CASES)
def test_policy_sequence_equals_steps(kind, layers, separate, carry):
    check_policy_sequence_equals_steps(kind, layers, separate, carry)


def check_policy_sequence_equals_steps(kind: str, layers: int, separate: bool, carry: bool) -> None:
    """forward_sequence over 20 steps with episode starts inside equals it one step at a time (1e-5)."""
    torch.manual_seed(0)
    obs_space = spaces.Box(-1, 1, (5,), np.float32)
    cfg = PolicyConfig(hidden_size=16, separate_critic=separate, carry_across_episodes=carry,
                       **core_settings(kind, layers))
    policy = RecurrentActorCritic(obs_space, spaces.Discrete(4), cfg)
    t_len, batch = 20, 6
    obs = torch.randn(t_len, batch, 5)
    starts = _episode_starts(t_len, batch, seed=1)
    state0 = torch.randn(*policy.state_shape[:2], batch, policy.state_shape[2])
    actions = torch.randint(0, 4, (t_len, batch))

    with torch.no_grad():
        dist, seq_values, seq_final = policy.forward_sequence(obs, state0, starts)
        seq_logp = dist.log_prob(actions.reshape(-1)).view(t_len, batch)

        state = state0
        step_logp, step_values = [], []
        for t in range(t_len):
            d, v, state = policy.forward_sequence(obs[t:t + 1], state, starts[t:t + 1])
            step_logp.append(d.log_prob(actions[t]))
            step_values.append(v[0])
    torch.testing.assert_close(seq_logp, torch.stack(step_logp), atol=1e-5, rtol=0)
    torch.testing.assert_close(seq_values, torch.stack(step_values), atol=1e-5, rtol=0)
    torch.testing.assert_close(seq_final, state, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("kind", "layers"), list(itertools.product(core_names(), [1, 2])))
def test_core_reset_zeroes_state_before_the_step(kind, layers):
    """Reset mode: an episode start behaves exactly like starting from a zero state."""
    torch.manual_seed(0)
    core = _core(kind, 3, 8, layers, reset=True)
    x = torch.randn(4, 2, 3)
    s, slots, width = core.state_shape
    state = torch.randn(s, slots, 2, width)
    starts = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    with torch.no_grad():
        out, _ = core(x, state, starts)
        fresh, _ = core(x[1:, 1:], torch.zeros(s, slots, 1, width), torch.zeros(3, 1))
    torch.testing.assert_close(out[1:, 1:], fresh, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", core_names())
def test_carry_mode_ignores_episode_starts(kind):
    torch.manual_seed(0)
    core = _core(kind, 3, 8, 1, reset=False)
    s, slots, width = core.state_shape
    x, state = torch.randn(4, 2, 3), torch.randn(s, slots, 2, width)
    with torch.no_grad():
        with_starts, _ = core(x, state, torch.ones(4, 2))
        without, _ = core(x, state, torch.zeros(4, 2))
    torch.testing.assert_close(with_starts, without)


def test_none_core_has_empty_state_and_same_api():
    cfg = PolicyConfig(core="none")
    policy = RecurrentActorCritic(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2), cfg)
    state = policy.initial_state(4)
    assert state.shape == (0, 1, 4, cfg.hidden_size)
    out = policy.step(torch.randn(4, 3), state, torch.ones(4))
    assert out.action.shape == (4,) and out.state.shape == state.shape


@pytest.mark.parametrize("ortho_init", [True, False])
def test_forget_bias_shifts_only_the_forget_gates(ortho_init):
    def core_biases(forget_bias):
        torch.manual_seed(0)
        cfg = PolicyConfig(num_layers=2, hidden_size=8, ortho_init=ortho_init, forget_bias=forget_bias,
                           chrono_init=None)
        policy = RecurrentActorCritic(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2), cfg)
        rnn = policy.actor_core.rnn
        return [(getattr(rnn, f"bias_ih_l{k}").detach(), getattr(rnn, f"bias_hh_l{k}").detach()) for k in range(2)]

    for (ih0, hh0), (ih1, hh1) in zip(core_biases(0.0), core_biases(1.5), strict=True):
        delta = ih1 - ih0
        torch.testing.assert_close(delta[8:16], torch.full((8,), 1.5))  # gate order i, f, g, o
        assert delta[:8].abs().max() == 0 and delta[16:].abs().max() == 0
        torch.testing.assert_close(hh1, hh0)


@pytest.mark.parametrize("ortho_init", [True, False])
def test_chrono_init_spreads_memory_spans_up_to_its_horizon(ortho_init):
    torch.manual_seed(0)
    hidden, horizon = 64, 100
    cfg = PolicyConfig(num_layers=2, hidden_size=hidden, ortho_init=ortho_init, forget_bias=1.5, chrono_init=horizon,
                       chrono_gates="both", chrono_fraction=1.0)
    rnn = RecurrentActorCritic(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2), cfg).actor_core.rnn
    for k in range(2):
        total = (getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).detach()
        forget, entry = total[hidden:2 * hidden], total[:hidden]  # gate order i, f, g, o
        span = 1 / (1 - torch.sigmoid(forget))  # 1 + u steps for u in [1, T - 1]
        assert span.min() >= 2 - 1e-4 and span.max() <= horizon + 1e-3
        assert span.max() > horizon / 2 and span.min() < horizon / 4  # spread, not one value (--forget-bias ignored)
        torch.testing.assert_close(entry, -forget)


def test_chrono_init_on_the_forget_gates_only_leaves_the_input_gates_as_they_were():
    def biases(**chrono):
        torch.manual_seed(0)
        cfg = PolicyConfig(hidden_size=32, forget_bias=1.0, chrono_fraction=1.0, **chrono)
        rnn = RecurrentActorCritic(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2), cfg).actor_core.rnn
        return (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()

    plain, both = biases(chrono_init=None), biases(chrono_init=100, chrono_gates="both")
    forget_only = biases(chrono_init=100, chrono_gates="forget")
    torch.testing.assert_close(forget_only[32:64], both[32:64])  # the same spread of memory spans
    torch.testing.assert_close(forget_only[:32], plain[:32])  # input gates untouched (both: -log u)
    torch.testing.assert_close(forget_only[64:], plain[64:])
    assert (both[:32] - plain[:32]).abs().max() > 1


def test_chrono_gates_other_than_the_default_without_chrono_init_is_refused():
    other = "both" if PolicyConfig.chrono_gates == "forget" else "forget"
    with pytest.raises(ConfigError, match=f"--chrono-gates {other} only applies with --chrono-init"):
        TrainConfig().with_overrides({"chrono_init": None, "chrono_gates": other}).validate()


@pytest.mark.parametrize("gates", ["both", "forget"])
def test_chrono_fraction_sets_the_first_units_and_leaves_the_rest_at_the_forget_bias(gates):
    def biases(**chrono):
        torch.manual_seed(0)
        cfg = PolicyConfig(num_layers=2, hidden_size=32, forget_bias=1.0, **chrono)
        rnn = RecurrentActorCritic(spaces.Box(-1, 1, (3,), np.float32), spaces.Discrete(2), cfg).actor_core.rnn
        return [(getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).detach() for k in range(2)]

    plain, every = biases(chrono_init=None), biases(chrono_init=100, chrono_gates=gates, chrono_fraction=1.0)
    quarter = biases(chrono_init=100, chrono_gates=gates, chrono_fraction=0.25)
    for p, e, q in zip(plain, every, quarter, strict=True):
        torch.testing.assert_close(q[32:40], e[32:40])  # 8 of 32 forget gates: the same spans as on every unit
        torch.testing.assert_close(q[40:64], p[40:64])  # the rest: --forget-bias
        torch.testing.assert_close(q[:8], e[:8])  # their input gates as --chrono-gates says
        torch.testing.assert_close(q[8:32], p[8:32])
        torch.testing.assert_close(q[64:], p[64:])
        assert (q[32:40] - p[32:40]).abs().max() > 0.5


@pytest.mark.parametrize("overrides, message", [
    ({"chrono_init": None, "chrono_fraction": 0.25}, "--chrono-fraction 0.25 only applies with --chrono-init"),
    ({"chrono_init": 128, "chrono_fraction": 0.0}, r"--chrono-fraction must be in \(0, 1\]"),
    ({"chrono_init": 128, "chrono_fraction": 1.5}, r"--chrono-fraction must be in \(0, 1\]"),
])
def test_bad_chrono_fraction_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig().with_overrides(overrides).validate()
