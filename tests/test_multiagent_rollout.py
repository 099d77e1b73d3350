"""Agents that come and go (docs/architecture.md): the recurrent bookkeeping of multi-agent rows.

Agent slots are rows; an agent dies, times out and respawns at seeded random steps inside rollouts and inside
BPTT sequences (tests/toy_multiagent_envs.py ``RespawnEnv``). Bounds: the invariant to 1e-5; everything else
bitwise.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from registry_cases import core_names, core_settings

pytest.importorskip("pettingzoo")

from agents.config import PolicyConfig, PPOConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.multiagent_collector import MultiAgentCollector
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.train.ppo_loss import make_minibatch, ppo_loss
from agents.trees import tree_map

RESPAWN = "toy_multiagent_envs:make_respawn"
BPTT = 6


def collect(core="lstm", layers=1, separate=False, carry=False, num_steps=40, rollouts=2, seed=0, env_kwargs=None,
            env_id=RESPAWN):
    envs = make_multiagent_vector_env(env_id, 3, env_kwargs)
    torch.manual_seed(seed)
    cfg = PolicyConfig(hidden_size=16, separate_critic=separate, carry_across_episodes=carry, normalize_obs=True,
                       **core_settings(core, layers))
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg)
    collector = MultiAgentCollector(envs, num_steps)
    collector.start(policy, torch.device("cpu"), seed, seed)
    buf = collector.collect()
    for _ in range(rollouts - 1):  # later rollouts start from carried states, absent rows' states held
        live = buf.alive > 0
        policy.update_obs_normalizer(tree_map(lambda x, live=live: x[live], buf.obs))
        buf = collector.collect()
    return policy, collector, buf


def sequences(buf):
    return make_sequences(buf.episode_starts.numpy(), BPTT, True, alive=buf.alive.numpy())


def batch_of(buf, gamma=0.99, lam=0.95):
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, gamma, lam)
    return gather_sequences(buf, sequences(buf), adv * buf.alive, ret * buf.alive)


def assert_deaths_and_spawns_inside(buf) -> None:
    """The rollout has terminations, truncations, absent steps and mid-rollout spawns, and some agent ends
    after the first step of its sequence (a death inside a BPTT sequence)."""
    assert buf.terminated.sum() > 0 and buf.truncated.sum() > 0
    assert (buf.alive == 0).any() and (buf.episode_starts[1:] > 0).any()
    seqs = sequences(buf)
    done = torch.maximum(buf.terminated, buf.truncated)[seqs.time_index, seqs.env_index] * seqs.mask
    assert (done[1:] > 0).any()


CASES = list(itertools.product(core_names(), [1, 2], [False, True], [False, True]))


@pytest.mark.parametrize(("core", "layers", "separate", "carry"), CASES)
def test_invariant_with_deaths_and_spawns(core, layers, separate, carry):
    policy, _, buf = collect(core, layers, separate, carry)
    assert_deaths_and_spawns_inside(buf)
    batch = batch_of(buf)
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    # The trainer's loss path: approx_kl and the clip fraction are 0 to rounding before the first step.
    ids = np.arange(batch.mask.shape[1])
    mb = make_minibatch(batch, ids, batch.lengths.numpy())
    with torch.no_grad():
        terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
    assert abs(float(terms.approx_kl)) < 1e-6 and float(terms.clipfrac) == 0.0


@pytest.mark.parametrize(("core", "carry"), [("lstm", False), ("gru", True)])
def test_invariant_with_action_masks_deaths_and_spawns(core, carry):
    """PettingZoo's {"observation", "action_mask"} observations (toy MaskedRespawnEnv, which raises on an illegal
    action): absent rows' all-zero masks stay finite, the stored masks rescore every real step exactly, and the
    loss path's approx_kl and clipfrac are 0."""
    policy, _, buf = collect(core, 1, True, carry, env_id="toy_multiagent_envs:make_masked_respawn")
    assert policy.masked and buf.illegal_actions == 0
    assert_deaths_and_spawns_inside(buf)
    assert (buf.obs["action_mask"][buf.alive == 0] == 0).all()  # absent rows' masks are zeros
    assert torch.isfinite(buf.logprobs).all()
    batch = batch_of(buf)
    with torch.no_grad():
        logprob, entropy, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    assert torch.isfinite(entropy).all()
    mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
    with torch.no_grad():
        terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
    assert abs(float(terms.approx_kl)) < 1e-6 and float(terms.clipfrac) == 0.0


def test_an_agent_that_ended_inside_a_sequence_leaves_no_training_row():
    """Deaths mid-sequence: the sequence stops at the death step; the rows are exactly the alive steps."""
    _, _, buf = collect()
    seqs = sequences(buf)
    assert int(seqs.mask.sum()) == int(buf.alive.sum())
    assert bool((buf.alive[seqs.time_index, seqs.env_index][seqs.mask > 0] == 1).all())
    ends = torch.maximum(buf.terminated, buf.truncated)[seqs.time_index, seqs.env_index] * seqs.mask
    lengths = seqs.mask.sum(0).long()
    # Some sequence ends on a death before BPTT cut it: the absent tail after it was dropped.
    ended_early = [bool(ends[lengths[m] - 1, m] > 0) and int(lengths[m]) < BPTT for m in range(seqs.num_sequences)]
    assert any(ended_early)


def _loss_and_grads(policy, buf):
    batch = batch_of(buf)
    mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
    policy.zero_grad(set_to_none=True)
    terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
    terms.loss.backward()
    return terms.loss.detach().clone(), [p.grad.clone() for p in policy.parameters() if p.grad is not None], batch


def test_absent_steps_contribute_nothing():
    """Garbage observations, actions, states, values and rewards at absent steps: identical loss and gradients,
    and GAE at every alive step unchanged (nothing flows from an absent step into a live one)."""
    policy, _, buf = collect()
    loss, grads, batch = _loss_and_grads(policy, buf)
    assert int(batch.mask.sum()) == int(buf.alive.sum())
    adv, _ = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                         buf.bootstrap_value, 0.99, 0.95)

    absent = buf.alive == 0
    gen = torch.Generator().manual_seed(1)

    def garble(x: torch.Tensor) -> torch.Tensor:
        noise = (torch.rand(x.shape, generator=gen) * 100).to(x.dtype)
        return torch.where(absent.view(*absent.shape, *([1] * (x.dim() - 2))), noise, x)

    buf.obs = tree_map(garble, buf.obs)
    buf.actions = torch.where(absent, torch.ones_like(buf.actions), buf.actions)
    buf.states = torch.where(absent.view(absent.shape[0], 1, 1, absent.shape[1], 1), 7.0, buf.states)
    buf.values, buf.rewards, buf.logprobs = garble(buf.values), garble(buf.rewards), garble(buf.logprobs)
    loss2, grads2, _ = _loss_and_grads(policy, buf)
    assert torch.equal(loss, loss2)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads2, strict=True))
    adv2, _ = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                          buf.bootstrap_value, 0.99, 0.95)
    assert torch.equal(adv[~absent], adv2[~absent])


@pytest.mark.parametrize("carry", [False, True])
def test_a_spawned_agent_starts_from_zero_state(carry):
    _, _, buf = collect(carry=carry)
    spawn = buf.episode_starts > 0
    assert spawn[1:].any()
    t, r = torch.nonzero(spawn, as_tuple=True)
    assert bool((buf.states[t, :, :, r] == 0).all())
    # ...while the state it replaces (the slot's previous agent's, held) was not zero.
    mid = t > 0
    assert bool((buf.states[t[mid] - 1, :, :, r[mid]] != 0).any())


def test_an_absent_rows_state_is_held():
    _, collector, buf = collect()
    absent = (buf.alive[:-1] == 0) & (buf.episode_starts[1:] == 0)  # absent at t, no spawn at t + 1
    t, r = torch.nonzero(absent, as_tuple=True)
    assert t.numel() > 0
    assert torch.equal(buf.states[t + 1, :, :, r], buf.states[t, :, :, r])
    last = (buf.alive[-1] == 0).nonzero().squeeze(1)
    assert torch.equal(collector.state[:, :, last], buf.states[-1][:, :, last])


def test_what_one_agent_sees_never_reaches_another():
    """Perturb a1's observations: every other agent's stored states are bitwise the same, a1's are not. (One
    long rollout: the observation normaliser's statistics, updated between rollouts, are shared by design.)"""
    _, _, base = collect(rollouts=1, num_steps=80)
    _, _, bumped = collect(rollouts=1, num_steps=80, env_kwargs={"perturb": "a1"})
    slots = 3
    a1 = [r for r in range(base.alive.shape[1]) if r % slots == 1]
    others = [r for r in range(base.alive.shape[1]) if r % slots != 1]
    assert torch.equal(base.alive, bumped.alive)
    assert torch.equal(base.states[:, :, :, others], bumped.states[:, :, :, others])
    assert not torch.equal(base.states[:, :, :, a1], bumped.states[:, :, :, a1])


def test_gae_at_a_death_and_a_truncation_by_removal_on_paper():
    """Two rows, T = 5, gamma 0.9, lambda 0.8. Row 0 dies (terminated) at t=1, is absent at t=2, 3 (garbage
    values 9) and respawns at t=4; row 1 is removed truncated at t=1 with V(final obs) = 0.4.

    Row 0: t=4: 3 + 0.9 * 0.8 - 0.7 = 3.02; t=1: 2 - 0.6 = 1.4 (terminated: no next value);
    t=0: 1 + 0.9 * 0.6 - 0.5 = 1.04, + 0.9 * 0.8 * 1.4 = 2.048.
    Row 1: t=1: 2 + 0.9 * 0.4 - 0.6 = 1.76; t=0: 1.04 + 0.72 * 1.76 = 2.3072.
    Absent steps are masked to 0 (what the trainer does).
    """
    alive = torch.tensor([[1, 1, 0, 0, 1], [1, 1, 0, 0, 1]], dtype=torch.float32).T
    rewards = torch.tensor([[1, 2, 0, 0, 3], [1, 2, 0, 0, 3]], dtype=torch.float32).T
    values = torch.tensor([[0.5, 0.6, 9, 9, 0.7], [0.5, 0.6, 9, 9, 0.7]]).T
    terminated = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32).T
    truncated = torch.tensor([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.float32).T
    truncation_values = torch.tensor([[0, 0, 0, 0, 0], [0, 0.4, 0, 0, 0]]).T
    adv, _ = compute_gae(rewards, values, terminated, truncated, truncation_values, torch.tensor([0.8, 0.8]),
                         0.9, 0.8)
    adv = adv * alive
    expected = torch.tensor([[2.048, 1.4, 0, 0, 3.02], [2.3072, 1.76, 0, 0, 3.02]]).T
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-5)


def test_truncation_by_removal_bootstraps_and_termination_does_not():
    _, _, buf = collect(num_steps=60, rollouts=1)
    cut = (buf.truncated > 0) & (buf.terminated == 0)
    assert cut.any()
    assert bool((buf.truncation_values[~cut] == 0).all())
    assert bool((buf.truncation_values[cut] != 0).all())
    # Absent steps are neither terminated nor truncated and get reward 0.
    absent = buf.alive == 0
    assert bool((buf.terminated[absent] == 0).all() and (buf.truncated[absent] == 0).all())
    assert bool((buf.rewards[absent] == 0).all())


def test_the_same_seed_gives_the_same_rollout():
    _, _, a = collect(rollouts=1)
    _, _, b = collect(rollouts=1)
    assert torch.equal(a.states, b.states) and torch.equal(a.actions, b.actions) and torch.equal(a.alive, b.alive)


def test_env_done_marks_the_steps_where_an_env_episode_ends():
    """``info["env_done"]`` (N,) is True exactly when a copy's own episode ended (and the copy was reset)."""
    envs = make_multiagent_vector_env(RESPAWN, 2, {"episode_len": 5, "p_die": 0.0})
    envs.reset(seed=0)
    for t in range(1, 12):
        *_, spawn, info = envs.step(np.zeros(envs.num_envs, dtype=np.int64))
        assert info["env_done"].tolist() == [t % 5 == 0] * 2
        assert spawn.any() or t % 5 != 0  # a reset spawns its agents
    envs.close()
