"""The invariant that proves the bookkeeping (README, "The recurrent bookkeeping").

Before the first gradient step, log-probabilities and values recomputed by the
sequence path (padded sequences, stored start states, one fused call) equal
those the rollout stored, to 1e-5, in reset and carry mode, with terminations
and truncations inside the rollout -- for every core and action kind. On CUDA
the bound holds with cuDNN's TF32 off; PyTorch's default (TF32 on) rounds the
recurrent matmuls differently in the one-step and the sequence kernels (README,
"The recurrent bookkeeping").
"""

import itertools

import numpy as np
import pytest
import torch
import toy_envs  # noqa: F401  (registers tests/Boundary-v0)
from registry_cases import core_names, core_settings

from agents.config import PolicyConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, length_buckets, make_sequences
from agents.rollout.collector import VectorCollector, make_vector_env


def collect(core="lstm", layers=1, separate=False, carry=False, action_kind="discrete", num_steps=24, seed=0,
            rollouts=2, noise_correlation=0.0, device="cpu", masked=False, exploration="none"):
    kwargs = {"action_kind": action_kind, **({"masked": True} if masked else {})}
    envs = make_vector_env("tests/Boundary-v0", 4, kwargs)
    torch.manual_seed(seed)
    cfg = PolicyConfig(hidden_size=16, separate_critic=separate, carry_across_episodes=carry, normalize_obs=True,
                       exploration=exploration, **core_settings(core, layers))
    device = torch.device(device)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg).to(device)
    collector = VectorCollector(envs, num_steps, noise_correlation=noise_correlation)
    collector.start(policy, device, seed, seed)
    buf = collector.collect()
    for _ in range(rollouts - 1):  # later rollouts start from a carried, non-zero state
        policy.update_obs_normalizer(buf.obs)  # as the trainer does after each update
        buf = collector.collect()
    return policy, collector, buf


CASES = list(itertools.product(core_names(), [1, 2], [False, True], [False, True]))


@pytest.mark.parametrize(("core", "layers", "separate", "carry"), CASES)
def test_recomputed_logprobs_and_values_match_rollout(core, layers, separate, carry):
    policy, _collector, buf = collect(core, layers, separate, carry)
    assert_sequence_path_reproduces(policy, buf, carry)


def assert_sequence_path_reproduces(policy, buf, carry: bool) -> None:
    """The invariant on one rollout (with both episode ends in it): log-probs and values recomputed by the
    sequence path equal the stored ones to 1e-5."""
    assert buf.terminated.sum() > 0 and buf.truncated.sum() > 0, "the rollout must contain both episode ends"
    seqs = make_sequences(buf.episode_starts.numpy(), bptt_len=5, cut_at_episode_starts=not carry)
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    batch = gather_sequences(buf, seqs, adv, ret)
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    if policy.has_intrinsic_value:  # --exploration: the intrinsic head's stored values too
        assert buf.values_int is not None and buf.bootstrap_value_int is not None
        batch = gather_sequences(buf, seqs, adv, ret, returns_int=ret)
        with torch.no_grad():
            _, critic_hidden, _ = policy.memory(batch.obs, batch.start_states, batch.episode_starts)
            value_int = policy.intrinsic_value_from(critic_hidden[real])
        assert (value_int - batch.values_int[real]).abs().max() < 1e-5
        assert batch.values_int[real].abs().max() > 0  # the head is there and not zero


@pytest.mark.parametrize(("core", "separate", "carry"), [("lstm", False, False), ("gru", True, True),
                                                         ("none", False, False)])
def test_invariant_holds_for_the_intrinsic_value_head(core, separate, carry):
    """--exploration: the second value head's values, stored by the collector step by step, equal those the
    sequence path recomputes, to 1e-5, as the extrinsic values do."""
    policy, _collector, buf = collect(core, 1, separate, carry, exploration="rnd")
    assert_sequence_path_reproduces(policy, buf, carry)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("tf32", "bound"), [(False, 1e-5), (True, 1e-3)])
def test_invariant_on_cuda(tf32, bound, masked):
    """TF32 off: the CPU's bound. On (PyTorch's default for cuDNN): a looser one, harmless for PPO (README)."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=tf32):
        policy, _collector, buf = collect("lstm", 2, True, False, device="cuda", masked=masked)
        seqs = make_sequences(buf.episode_starts.cpu().numpy(), bptt_len=5, cut_at_episode_starts=True)
        zeros = torch.zeros_like(buf.rewards)
        batch = gather_sequences(buf, seqs, zeros, zeros)
        with torch.no_grad():
            logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < bound
    assert (value[real] - batch.values[real]).abs().max() < bound


@pytest.mark.parametrize("noise_correlation", [0.0, 0.95])
@pytest.mark.parametrize("action_kind", ["discrete", "box", "multidiscrete", "multibinary"])
def test_invariant_holds_for_every_action_space(action_kind, noise_correlation):
    # Correlated sampling noise changes which actions are drawn, never the log-probs stored for them.
    policy, _collector, buf = collect(action_kind=action_kind, separate=True, noise_correlation=noise_correlation)
    seqs = make_sequences(buf.episode_starts.numpy(), bptt_len=8, cut_at_episode_starts=True)
    zeros = torch.zeros_like(buf.rewards)
    batch = gather_sequences(buf, seqs, zeros, zeros)
    with torch.no_grad():
        logprob, entropy, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    assert torch.isfinite(entropy[real]).all()


@pytest.mark.parametrize("noise_correlation", [0.0, 0.95])
@pytest.mark.parametrize(("core", "carry"), [("lstm", False), ("gru", True), ("none", False)])
@pytest.mark.parametrize("action_kind", ["discrete", "multidiscrete"])
def test_invariant_holds_with_action_masks(action_kind, core, carry, noise_correlation):
    """A masked env (a fresh random mask every step; the env raises on an illegal action): the stored masks
    rescore the stored actions exactly, the legal set's probabilities sum to 1, and no illegal action was taken."""
    policy, _collector, buf = collect(core=core, carry=carry, action_kind=action_kind, separate=True, masked=True,
                                      noise_correlation=noise_correlation)
    assert policy.masked and buf.illegal_actions == 0
    assert_sequence_path_reproduces(policy, buf, carry)
    seqs = make_sequences(buf.episode_starts.numpy(), bptt_len=5, cut_at_episode_starts=not carry)
    zeros = torch.zeros_like(buf.rewards)
    batch = gather_sequences(buf, seqs, zeros, zeros)
    with torch.no_grad():
        dist, _, _ = policy.forward_sequence(batch.obs, batch.start_states, batch.episode_starts)
    legal = batch.obs["action_mask"].reshape(-1, policy.action_head.num_outputs) > 0
    probs = policy.action_head.export_reference(dist)  # (N, num_outputs) log-probs, the parts side by side
    assert np.all(np.exp(probs)[~legal.numpy()] == 0.0)
    _, entropy, _ = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    assert torch.isfinite(entropy).all()


def test_masked_entropy_is_the_legal_sets_and_an_all_zero_row_stays_finite():
    """Entropy over the legal actions only (log k for k equal logits); an all-zero mask (an absent multi-agent
    row's zero observation) gives finite log-probs and entropy, not NaN."""
    from gymnasium import spaces

    from agents.model.action_heads import CategoricalHead, MultiCategoricalHead
    head = CategoricalHead(spaces.Discrete(5), 4)
    out = torch.zeros(3, 5)
    legal = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    dist = head.distribution(out, legal)
    torch.testing.assert_close(dist.entropy()[:2], torch.tensor([np.log(2), np.log(5)], dtype=torch.float32))
    assert torch.isfinite(dist.entropy()).all() and torch.isfinite(dist.log_prob(torch.tensor([0, 4, 2]))).all()
    multi = MultiCategoricalHead(spaces.MultiDiscrete([2, 3]), 4)
    legal = torch.tensor([[1, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    dist = multi.distribution(torch.zeros(2, 5), legal)
    torch.testing.assert_close(dist.entropy()[0], torch.tensor(np.log(2), dtype=torch.float32))
    assert torch.isfinite(dist.entropy()).all()


def test_state_carries_across_rollouts():
    """The state at the end of rollout k is the stored start state of rollout k+1, for every env."""
    _policy, collector, buf = collect(rollouts=1)
    end_state = collector.state.clone()
    buf = collector.collect()
    torch.testing.assert_close(buf.states[0], end_state, atol=0, rtol=0)


def test_truncation_bootstraps_with_the_state_the_episode_reached():
    _policy, _collector, buf = collect(rollouts=1, num_steps=40)
    cut = (buf.truncated > 0) & (buf.terminated == 0)
    assert cut.any()
    # Terminated steps and steps that did not end carry no bootstrap value.
    assert (buf.truncation_values[~cut] == 0).all()
    assert (buf.truncation_values[cut] != 0).all()


def test_stored_state_is_reset_semantics_consistent():
    """In reset mode, the output at an episode start does not depend on the stored (pre-reset) state."""
    policy, _collector, buf = collect(rollouts=2)
    starts = buf.episode_starts > 0
    t, n = np.argwhere(starts.numpy()[1:])[0]
    t += 1
    obs_t = {k: v[t:t + 1, n:n + 1] for k, v in buf.obs.items()}
    with torch.no_grad():
        _, v_stored, _ = policy.forward_sequence(obs_t, buf.states[t][:, :, n:n + 1], torch.ones(1, 1))
        _, v_zero, _ = policy.forward_sequence(obs_t, torch.zeros_like(buf.states[t][:, :, n:n + 1]), torch.ones(1, 1))
    torch.testing.assert_close(v_stored, v_zero)


@pytest.mark.parametrize("carry", [False, True])
def test_update_runs_one_fused_recurrent_call_per_core_per_minibatch(carry, monkeypatch):
    """The speed rule: no Python loop over timesteps in the update (one fused call per core per minibatch)."""
    from agents.config import PPOConfig
    from agents.model.cores import RNNCore
    from agents.train.ppo import ppo_update

    policy, _collector, buf = collect(separate=True, carry=carry)
    seqs = make_sequences(buf.episode_starts.numpy(), bptt_len=6, cut_at_episode_starts=not carry)
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    batch = gather_sequences(buf, seqs, adv, ret)
    calls = []
    original = RNNCore._run
    monkeypatch.setattr(RNNCore, "_run", lambda self, x, s: calls.append(x.shape[0]) or original(self, x, s))
    monkeypatch.setattr("agents.train.ppo_loss.length_buckets", lambda lengths: [np.arange(len(lengths))])  # one group
    cfg = PPOConfig(num_minibatches=3, update_epochs=2)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    ppo_update(policy, optimizer, batch, cfg, 0.2, np.random.default_rng(0))
    assert len(calls) == 2 * cfg.num_minibatches * cfg.update_epochs  # actor + critic core, once each
    assert all(length > 1 for length in calls)


def test_length_groups_change_nothing_but_the_work(monkeypatch):
    """Splitting a minibatch into length groups gives the same loss and gradients as one padded call."""
    from agents.config import PPOConfig
    from agents.train.ppo_loss import make_minibatch, ppo_loss

    policy, _collector, buf = collect(separate=True)
    seqs = make_sequences(buf.episode_starts.numpy(), bptt_len=8, cut_at_episode_starts=True)
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    batch = gather_sequences(buf, seqs, adv, ret)
    lengths = batch.lengths.numpy()
    ids = np.arange(len(lengths))
    assert len(length_buckets(lengths, call_cost=0.0)) > 1
    results = []
    for grouping in ([ids], length_buckets(lengths, call_cost=0.0)):
        monkeypatch.setattr("agents.train.ppo_loss.length_buckets", lambda _lengths, grouping=grouping: grouping)
        policy.zero_grad()
        terms = ppo_loss(policy, make_minibatch(batch, ids, lengths), PPOConfig(ent_coef=0.01), 0.2)
        terms.loss.backward()
        results.append((terms.loss.detach(), [p.grad.clone() for p in policy.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_length_buckets_minimise_padded_work():
    lengths = np.array([32, 3, 3, 3, 3, 3, 3, 3, 3, 30, 31, 2])
    groups = length_buckets(lengths, max_buckets=4, call_cost=4.0)
    work = sum(lengths[g].max() * len(g) for g in groups)
    assert work < 32 * len(lengths) / 2
    assert len(length_buckets(np.full(10, 7))) == 1


TRAINER_CASES = [("lstm", False, False, "discrete"), ("lstm", True, False, "box"), ("gru", True, True, "discrete"),
                 ("none", False, False, "multidiscrete"), ("lstm", False, True, "multibinary")]


@pytest.mark.parametrize(("core", "separate", "carry", "action_kind"), TRAINER_CASES)
def test_trainers_first_minibatch_reproduces_the_rollout(tmp_path, monkeypatch, core, separate, carry, action_kind,
                                                        extra=None):
    """The trainer's own loss path (Trainer -> ppo_update -> loss_and_backward -> the policy's named heads), on
    its first minibatch, before any gradient step: the log-probs and values it recomputes are the stored ones,
    so approx_kl and clipfrac are 0 to rounding."""
    from agents.config import TrainConfig
    from agents.train import ppo
    from agents.train.trainer import Trainer

    first: dict[str, object] = {}
    recording = {"on": False}
    real_loss, real_score, real_value = (ppo.loss_and_backward, RecurrentActorCritic.score_actions,
                                         RecurrentActorCritic.value_from)
    real_value_int = RecurrentActorCritic.intrinsic_value_from

    def loss(policy, mb, cfg, clip_coef, parallel=None):
        recording["on"] = "terms" not in first
        terms = real_loss(policy, mb, cfg, clip_coef, parallel)
        recording["on"] = False
        first.setdefault("mb", mb)
        first.setdefault("terms", terms)
        return terms

    def score_actions(self, hidden, actions, legal=None):
        if extra is not None and "masked" in extra.get("env_kwargs", {}):
            assert legal is not None  # the stored masks reach the loss path
        out = real_score(self, hidden, actions, legal)
        if recording["on"]:
            first.setdefault("logprob", out[0].detach())
        return out

    def value_from(self, critic_hidden):
        out = real_value(self, critic_hidden)
        if recording["on"]:
            first.setdefault("value", out.detach())
        return out

    def intrinsic_value_from(self, critic_hidden):
        out = real_value_int(self, critic_hidden)
        if recording["on"]:
            first.setdefault("value_int", out.detach())
        return out

    monkeypatch.setattr(RecurrentActorCritic, "intrinsic_value_from", intrinsic_value_from)
    monkeypatch.setattr(ppo, "loss_and_backward", loss)
    monkeypatch.setattr(RecurrentActorCritic, "score_actions", score_actions)
    monkeypatch.setattr(RecurrentActorCritic, "value_from", value_from)
    config = TrainConfig().with_overrides({
        "env_id": "tests/Boundary-v0", "env_import": ("toy_envs",), "env_kwargs": {"action_kind": action_kind},
        "core": core, "separate_critic": separate, "carry_across_episodes": carry, "hidden_size": 16,
        "normalize_obs": True, "num_envs": 4, "num_steps": 48, "bptt_len": 6, "num_minibatches": 2,
        "update_epochs": 1, "total_steps": 192, "eval_episodes": 0, "progress": False, "device": "cpu",
        "run_dir": str(tmp_path / "run"), **(extra or {})})
    Trainer(config.validate()).train()
    mb, terms = first["mb"], first["terms"]
    assert (first["logprob"] - mb.old_logprob).abs().max() < 1e-5
    assert (first["value"] - mb.old_value).abs().max() < 1e-5
    if (extra or {}).get("exploration", "none") != "none":
        assert (first["value_int"] - mb.old_value_int).abs().max() < 1e-5
    else:
        assert "value_int" not in first and mb.returns_int is None
    assert abs(float(terms.approx_kl)) < 1e-10 and abs(float(terms.old_approx_kl)) < 1e-5
    assert float(terms.clipfrac) == 0.0


@pytest.mark.parametrize("action_kind", ["discrete", "multidiscrete"])
def test_the_invariant_holds_on_the_trainers_loss_path_with_action_masks(tmp_path, monkeypatch, action_kind):
    """A masked env through the trainer: the loss path rescores each stored action under its stored mask, so the
    first minibatch's approx_kl and clipfrac are 0; the run's summary counts 0 illegal actions."""
    extra = {"env_kwargs": {"action_kind": action_kind, "masked": True}}
    test_trainers_first_minibatch_reproduces_the_rollout(tmp_path, monkeypatch, "lstm", True, False, action_kind,
                                                        extra)
    import json
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["action_masks"]["training"] == {"checked": 192, "illegal": 0}


@pytest.mark.parametrize("extra", [{"normalize_value": True}, {"normalize_value": True, "clip_vloss": True},
                                   {"prev_action_reward": True},
                                   {"recall_coef": 1.0, "readout_products": 4}])
def test_the_invariant_holds_with_value_normalisation_and_previous_inputs(tmp_path, monkeypatch, extra):
    """PopArt rescales the value head before the first minibatch (its outputs stay the same), the previous
    action and reward are part of the stored observation, and the recall head (--recall-coef) adds a loss term
    on the actor core's outputs (here beside --readout-products' products, which the heads read and the recall
    head does not): the trainer's first minibatch still reproduces the rollout."""
    test_trainers_first_minibatch_reproduces_the_rollout(tmp_path, monkeypatch, "lstm", True, False, "discrete", extra)


@pytest.mark.parametrize(("exploration", "separate"), [("rnd", True), ("noveld", False)])
def test_the_invariant_holds_on_the_trainers_loss_path_with_an_exploration_bonus(tmp_path, monkeypatch, exploration,
                                                                                 separate):
    """--exploration: the trainer's first minibatch reproduces the stored extrinsic and intrinsic values and the
    log-probs (approx_kl and clipfrac 0), with the combined advantages and the intrinsic value loss on."""
    test_trainers_first_minibatch_reproduces_the_rollout(tmp_path, monkeypatch, "lstm", separate, False, "discrete",
                                                        {"exploration": exploration})
