"""Self-play (agents/rollout/self_play.py): the pool, the draws, opponents' hidden state, Elo, resume, refusals.

Toy envs (tests/toy_multiagent_envs.py): ``RespawnEnv`` with sides ``a0`` against ``a1`` + ``a2`` (agents die
and respawn inside rollouts and BPTT sequences) and ``CueDuelEnv`` (a zero-sum two-agent memory duel). Bounds:
the invariant to 1e-5; everything else bitwise or exact.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from agents import ratings
from agents.config import OpponentsConfig, PolicyConfig, PPOConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.rollout.self_play import PLAY_LATEST, OpponentPool, SelfPlayCollector, assign_sides
from agents.train import cli as train
from agents.train.ppo_loss import make_minibatch, ppo_loss
from agents.train.trainer import ResumeWarning, Trainer
from agents.trees import obs_to_tensor, tree_map

RESPAWN = "toy_multiagent_envs:make_respawn"
DUEL = "toy_multiagent_envs:make_cue_duel"
BPTT = 6


def make_collector(env_id=RESPAWN, num_copies=3, num_steps=40, seed=0, carry=False, policy_settings=None,
                   env_kwargs=None, noise_correlation=0.0, **settings):
    respawn_like = env_id == RESPAWN or "respawn" in env_id
    settings = {"self_play": True, "sides": "a0=x,*=y" if respawn_like else None, "snapshot_every": 1,
                "pool_size": 2, "play_latest": 0.3, **settings}
    envs = make_multiagent_vector_env(env_id, num_copies, env_kwargs)
    torch.manual_seed(seed)
    cfg = PolicyConfig(**{"hidden_size": 16, "carry_across_episodes": carry, "normalize_obs": True,
                          **(policy_settings or {})})
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg,
                                  agents=envs.agent_names)
    collector = SelfPlayCollector(envs, num_steps, OpponentsConfig(**settings), noise_correlation)
    collector.start(policy, torch.device("cpu"), seed, seed)
    return policy, collector


def learn_a_little(policy, buf, seed: int) -> None:
    """Stand-in for an update between rollouts: the next snapshot differs from the last."""
    live = buf.alive > 0
    policy.update_obs_normalizer(tree_map(lambda x, live=live: x[live], buf.obs))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def collect(rollouts=3, **kwargs):
    policy, collector = make_collector(**kwargs)
    buf = collector.collect()
    for k in range(rollouts - 1):
        learn_a_little(policy, buf, k)
        buf = collector.collect()
    return policy, collector, buf


def batch_of(buf):
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    seqs = make_sequences(buf.episode_starts.numpy(), BPTT, True, alive=buf.alive.numpy())
    return gather_sequences(buf, seqs, adv * buf.alive, ret * buf.alive)


# --------------------------------------------------------------------------- Elo
def test_elo_against_hand_values():
    assert ratings.expected_score(1200, 1200) == 0.5
    assert ratings.expected_score(1600, 1200) == pytest.approx(10 / 11)  # 400 points: odds of 10 to 1
    assert ratings.update(1200, 1200, ratings.WIN, 16) == (1208.0, 1192.0)
    assert ratings.update(1200, 1200, ratings.DRAW, 16) == (1200.0, 1200.0)
    # 1400 loses to 1200: expected 1 / (1 + 10^-0.5) = 0.7597469, so it loses 16 x 0.7597469 = 12.15595.
    a, b = ratings.update(1400, 1200, ratings.LOSS, 16)
    assert a == pytest.approx(1387.84405, abs=1e-5) and b == pytest.approx(1212.15595, abs=1e-5)
    assert a + b == pytest.approx(2600)
    assert [ratings.game_score(1, 0), ratings.game_score(0.5, 0.5), ratings.game_score(-1, 2)] == [1.0, 0.5, 0.0]


def test_pool_rates_games_against_snapshots_only_and_new_snapshots_start_at_the_learners_rating():
    _, collector = make_collector(num_copies=1)
    pool = OpponentPool(2, k=16)
    policy = collector.policy
    first = pool.add(policy, 0)
    pool.record_game(first, ratings.WIN)
    assert (pool.learner_rating, pool.records[first].rating) == (1208.0, 1192.0)
    pool.record_game(PLAY_LATEST, ratings.LOSS)  # against itself: nobody is rated
    assert (pool.learner_rating, pool.self_games, pool.learner_games) == (1208.0, 1, 1)
    second = pool.add(policy, 100)
    assert pool.records[second].rating == 1208.0 and pool.records[second].step == 100


# --------------------------------------------------------------------------- the pool
def test_snapshot_cadence_and_the_pool_keeps_the_last_w():
    """Rollouts of 3 copies x 40 steps = 120 env steps; a snapshot at the first rollout starting at or after each
    multiple of 200: steps 0, 240 (>= 200), 480 (>= 400), 600, 840 (>= 800); the pool keeps the last 2."""
    policy, collector = make_collector(snapshot_every=200, pool_size=2)
    weights = []
    for k in range(8):
        weights.append({n: t.clone() for n, t in policy.state_dict().items()})
        buf = collector.collect()
        learn_a_little(policy, buf, k)
    steps = [record.step for record in collector.pool.records.values()]
    assert steps == [0, 240, 480, 600, 840]
    assert collector.pool.pool == [3, 4]
    # A snapshot holds the weights (normaliser statistics too) the learner had when it was taken, frozen.
    for snapshot_id, network in collector.pool.networks.items():
        taken = weights[collector.pool.records[snapshot_id].step // 120]
        assert all(torch.equal(t, taken[n]) for n, t in network.state_dict().items())
        assert not any(p.requires_grad for p in network.parameters())
    # Snapshots out of the pool keep their network only while they are still played.
    in_use = {collector.current_snapshot, *collector.opponent.tolist()} - {PLAY_LATEST}
    assert set(collector.pool.networks) == set(collector.pool.pool) | in_use


def test_swaps_draw_the_current_snapshot_from_the_pool_and_episodes_keep_theirs():
    """--swap-every 240 with 120-step rollouts: a swap at every other rollout start; a copy's episode that began
    before a swap keeps the snapshot it drew, later episodes draw the new one."""
    _, collector = make_collector(snapshot_every=120, swap_every=240, pool_size=3, num_steps=40)
    current, seen = [], set()
    for _ in range(12):
        before = collector.current_snapshot
        collector.collect()
        current.append(collector.current_snapshot)
        rollout_start = collector.steps_done - 120
        assert collector.next_swap == (rollout_start // 240 + 1) * 240
        for opponent in collector.opponent:
            assert opponent in (PLAY_LATEST, collector.current_snapshot, before)
        seen.update(collector.opponent.tolist())
    assert all(current[k] == current[k - 1] for k in range(1, len(current), 2))  # held between swaps
    assert len(set(current)) > 2 and len(seen - {PLAY_LATEST}) > 2


def test_draws_are_deterministic_per_seed_and_differ_between_seeds():
    def history(seed):
        _, collector = make_collector(seed=seed, num_steps=30)
        draws = []
        for _ in range(4):
            buf = collector.collect()
            draws.append((collector.learner_side.copy(), collector.opponent.copy(), buf.actions.clone()))
        return draws

    a, b, c = history(0), history(0), history(1)
    for (side_a, opp_a, act_a), (side_b, opp_b, act_b) in zip(a, b, strict=True):
        assert np.array_equal(side_a, side_b) and np.array_equal(opp_a, opp_b) and torch.equal(act_a, act_b)
    assert any(not np.array_equal(x[0], y[0]) or not np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def test_sides_from_patterns_and_refusals():
    assert assign_sides(["left", "right"], None)[0] == ["left", "right"]
    names, side_of = assign_sides(["a0", "a1", "a2"], "a0=x,*=y")
    assert names == ["x", "y"] and side_of.tolist() == [0, 1, 1]
    with pytest.raises(Exception, match="has 3 agents"):
        assign_sides(["a0", "a1", "a2"], None)
    with pytest.raises(Exception, match="no pattern matches agent 'a2'"):
        assign_sides(["a0", "a1", "a2"], "a0=x,a1=y")
    with pytest.raises(Exception, match="exactly two"):
        assign_sides(["a0", "a1", "a2"], "a0=x,a1=y,a2=z")


# --------------------------------------------------------------------------- hidden state and the loss
@pytest.mark.parametrize(("carry", "both"), [(False, False), (True, False), (False, True)])
def test_invariant_on_learner_rows(carry, both):
    policy, collector, buf = collect(carry=carry, train_both_sides=both)
    # Deaths, spawns, opponent rows (snapshots and the learner itself) all inside this rollout.
    assert buf.terminated.sum() > 0 and buf.truncated.sum() > 0 and (buf.episode_starts[1:] > 0).any()
    assert (collector.opponent >= 0).any()
    batch = batch_of(buf)
    assert int(batch.mask.sum()) == int(buf.alive.sum()) > 0
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
    with torch.no_grad():
        terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
    assert abs(float(terms.approx_kl)) < 1e-6 and float(terms.clipfrac) == 0.0


def _loss_and_grads(policy, buf):
    batch = batch_of(buf)
    mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
    policy.zero_grad(set_to_none=True)
    terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
    terms.loss.backward()
    return terms.loss.detach().clone(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]


def test_opponent_steps_contribute_nothing_to_the_loss():
    """Garbage observations, actions, states, values and rewards at every step that is not the learner's (the
    opponents' and absent ones): bitwise the same loss and gradients."""
    policy, collector, buf = collect()
    assert (collector.learner_rows == 0).any()
    loss, grads = _loss_and_grads(policy, buf)
    other = buf.alive == 0
    gen = torch.Generator().manual_seed(1)

    def garble(x: torch.Tensor) -> torch.Tensor:
        noise = (torch.rand(x.shape, generator=gen) * 100).to(x.dtype)
        return torch.where(other.view(*other.shape, *([1] * (x.dim() - 2))), noise, x)

    buf.obs = tree_map(garble, buf.obs)
    buf.actions = torch.where(other, torch.ones_like(buf.actions), buf.actions)
    buf.states = torch.where(other.view(other.shape[0], 1, 1, other.shape[1], 1), 7.0, buf.states)
    buf.values, buf.rewards, buf.logprobs = garble(buf.values), garble(buf.rewards), garble(buf.logprobs)
    loss2, grads2 = _loss_and_grads(policy, buf)
    assert torch.equal(loss, loss2)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads2, strict=True))


@pytest.mark.parametrize("both", [False, True])
def test_only_learner_steps_train_and_only_learner_episodes_are_reported(both):
    """Training rows: the learning side's; with --train-both-sides also the other side's in the copies where the
    learning policy plays itself, never a snapshot's. Reported episodes: the learning side's only."""
    _, collector = make_collector(num_steps=1, train_both_sides=both)
    copy_of_row = collector.envs.copy_of_row
    self_games = 0
    for _ in range(60):  # one step per rollout: each step's rows as the collector saw them
        learner, alive = collector.learner_rows.clone(), collector.alive.clone()
        itself = torch.as_tensor(collector.opponent[copy_of_row] == PLAY_LATEST, dtype=torch.float32)
        self_games += int(((1 - learner) * itself * alive).sum())
        buf = collector.collect()
        training = torch.maximum(learner, itself) if both else learner
        assert torch.equal(buf.alive[0], alive * training)
        assert len(buf.episode_returns) == int((torch.maximum(buf.terminated[0], buf.truncated[0]) * learner).sum())
    assert self_games > 0


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("carry", [False, True])
def test_each_controller_acts_with_its_own_network_and_state_and_states_never_cross(carry, fuse):
    """Step by step: a learner row's next state is the learning policy's step from its own state; an opponent
    row's is its snapshot's step from its own; the learner itself as opponent acts with the learner's network;
    an absent row's state is held; and where a copy's env episode ends (its controllers are drawn again) every
    row of the copy is zero, in carry mode too."""
    policy, collector = make_collector(num_steps=1, snapshot_every=10**9, play_latest=0.4, carry=carry,
                                       fuse_opponents=fuse)
    with torch.no_grad():  # the learner moves away from the first snapshot, the one every draw picks
        for p in policy.parameters():
            p.add_(0.1)
    ended_log = []
    after_step = collector._after_step

    def spy(reward, env_done):
        ended_log.append(env_done.copy())
        after_step(reward, env_done)

    collector._after_step = spy
    copy_of_row = collector.envs.copy_of_row
    counts = {"learner": 0, "snapshot": 0, "itself": 0, "ended": 0}
    for _ in range(90):
        obs = obs_to_tensor(collector.next_obs, "cpu")
        start, alive = collector.next_episode_start.clone(), collector.alive.clone()
        state = collector.state * (1.0 - start).view(1, 1, -1, 1)
        learner, opponent = collector.learner_rows.clone(), collector.opponent.copy()
        collector.collect()
        with torch.no_grad():
            by_learner = policy.step(obs, state, start, deterministic=True).state
            by_snapshot = collector.pool.networks[0].step(obs, state, start, deterministic=True).state
        ended = ended_log[-1]
        for r in range(collector.num_envs):
            now = collector.state[:, :, r]
            if ended[copy_of_row[r]]:
                counts["ended"] += 1
                assert bool((now == 0).all())
            elif alive[r] == 0:
                assert torch.equal(now, state[:, :, r])
            elif learner[r] > 0 or opponent[copy_of_row[r]] == PLAY_LATEST:
                counts["learner" if learner[r] > 0 else "itself"] += 1
                assert torch.allclose(now, by_learner[:, :, r], atol=1e-6)
            else:
                counts["snapshot"] += 1
                assert torch.allclose(now, by_snapshot[:, :, r], atol=1e-6)
                assert not torch.allclose(now, by_learner[:, :, r], atol=1e-3)
    assert min(counts.values()) > 0, counts


# --------------------------------------------------------------------------- the fused forward
FUSED_CASES = {
    "lstm": {},
    "lstm-2-layers-carry": {"policy_settings": {"num_layers": 2}, "carry": True},
    "gru": {"policy_settings": {"core": "gru"}},
    "none": {"policy_settings": {"core": "none"}},
    "lstm-readout-products": {"policy_settings": {"readout_products": 6}},
    "none-readout-products": {"policy_settings": {"core": "none", "readout_products": 6}},
    "stack": {"policy_settings": {"core": "stack", "stack_len": 3}},
    "agent-index-relu-no-head-mlp": {"policy_settings": {"agent_index_input": True, "activation": "relu",
                                                         "encoder_sizes": (24, 16), "head_sizes": ()}},
    "raw-obs": {"policy_settings": {"normalize_obs": False}},
    "masked": {"env_id": "toy_multiagent_envs:make_masked_respawn"},
    "box-correlated-noise": {"env_id": "toy_multiagent_envs:make_action_kind_respawn",
                             "env_kwargs": {"action_kind": "box"}, "noise_correlation": 0.5},
    "multi-discrete": {"env_id": "toy_multiagent_envs:make_action_kind_respawn",
                       "env_kwargs": {"action_kind": "multi_discrete"}},
    "multi-binary": {"env_id": "toy_multiagent_envs:make_action_kind_respawn",
                     "env_kwargs": {"action_kind": "multi_binary"}},
}


def assert_same_rollout(a, b) -> None:
    """Observations, states and every outcome equal (so every row took the same action); float outputs equal to
    1e-6; the learner's stored actions, log-probs and values (and truncation values) at its training steps, the
    only ones read (an opponent row stores placeholders)."""
    assert torch.equal(a.alive, b.alive)
    training = a.alive > 0
    for name in ("actions", "logprobs", "values", "truncation_values"):
        x, y = getattr(a, name)[training], getattr(b, name)[training]
        if x.is_floating_point():
            torch.testing.assert_close(x, y, atol=1e-6, rtol=0, msg=name)
        else:
            assert torch.equal(x, y), name
    for name in ("rewards", "terminated", "truncated", "episode_starts", "states", "bootstrap_value"):
        x, y = getattr(a, name), getattr(b, name)
        if x.is_floating_point():
            torch.testing.assert_close(x, y, atol=1e-6, rtol=0, equal_nan=True, msg=name)
        else:
            assert torch.equal(x, y), name
    leaves = [obs.values() if isinstance(obs, dict) else [obs] for obs in (a.obs, b.obs)]
    assert all(torch.equal(x, y) for x, y in zip(*leaves, strict=True))
    assert (a.episode_returns, a.episode_lengths) == (b.episode_returns, b.episode_lengths)


@pytest.mark.parametrize("case", list(FUSED_CASES))
def test_fused_collection_equals_one_call_per_network(case):
    """The fused forward (learner and snapshots in one batched call) collects what one call per network
    collects: same actions, states, values and log-probs, same generator draws, rollout after rollout, with up to
    3 snapshots in use at one step; the fused path really runs (several snapshots stacked at once)."""
    kwargs = {"num_copies": 4, "pool_size": 3, "swap_every": 1, "play_latest": 0.3, **FUSED_CASES[case]}
    runs = [make_collector(fuse_opponents=fuse, **kwargs) for fuse in (True, False)]
    (_, fused), (_, unfused) = runs
    assert fused.unfused_because is None and unfused.unfused_because == "--fuse-opponents is off"
    most_stacked = 0
    for k in range(4):
        bufs = [collector.collect() for _, collector in runs]
        assert_same_rollout(*bufs)
        most_stacked = max(most_stacked, *(len(ids) for ids in fused._fused))
        torch.testing.assert_close(fused.state, unfused.state, atol=1e-6, rtol=0)
        for (policy, _), buf in zip(runs, bufs, strict=True):
            learn_a_little(policy, buf, k)
    assert most_stacked >= 2
    assert torch.equal(fused.generator.get_state(), unfused.generator.get_state())
    assert torch.equal(fused.opponent_generator.get_state(), unfused.opponent_generator.get_state())
    assert np.array_equal(fused.opponent, unfused.opponent) and fused.pool.summary() == unfused.pool.summary()


def _dist_tensor(dist):
    return dist.mean if hasattr(dist, "mean") else dist.logits


@pytest.mark.parametrize("case", ["lstm", "lstm-2-layers-carry", "gru", "stack", "masked", "box-correlated-noise",
                                  "lstm-readout-products", "none-readout-products"])
def test_fused_block_equals_each_networks_own_step(case):
    """Per row block: ``FusedNetworks.step`` gives network k's own ``_one_step`` on its rows (distribution, new
    state; the value for the learner's block), for networks with different weights and normaliser statistics."""
    from agents.model.fused import FusedNetworks

    kwargs = {"num_copies": 4, "pool_size": 3, "fuse_opponents": True, **FUSED_CASES[case]}
    policy, collector = make_collector(**kwargs)
    networks = [policy]
    for k in range(2):
        learn_a_little(policy, collector.collect(), k)
        networks.append(collector.pool.networks[collector.pool.add(policy, 0)])
    learn_a_little(policy, collector.collect(), 9)
    rows = collector.num_envs
    gen = torch.Generator().manual_seed(5)
    obs = obs_to_tensor(collector.next_obs, "cpu")
    inputs = collector._agent_inputs()
    state = torch.randn(policy.initial_state(rows).shape, generator=gen)
    start = (torch.rand(rows, generator=gen) < 0.3).float()
    # Each row is one network's; the blocks are padded to the largest (5 rows) with their last row.
    assert rows == 12
    own_rows = [np.array([4, 6, 7, 8, 9]), np.array([1, 3, 10, 11]), np.array([0, 2, 5])]
    blocks = [np.concatenate((block, np.full(5 - len(block), block[-1]))) for block in own_rows]
    block_index = torch.as_tensor(np.concatenate(blocks))
    source = np.zeros(rows, dtype=np.int64)
    for k, block in enumerate(own_rows):
        source[block] = 5 * k + np.arange(len(block))
    fused = FusedNetworks(networks)
    with torch.inference_mode():
        raw, raw_rows, value, new_state = fused.step(obs, state, start, block_index, torch.as_tensor(source), inputs)
        legal = policy.legal_actions(obs)
        for k, (network, block) in enumerate(zip(networks, own_rows, strict=True)):
            own, n = torch.as_tensor(block), len(block)
            dist, own_value, own_state = network._one_step(
                tree_map(lambda x, own=own: x.index_select(0, own), obs), state.index_select(2, own),
                start.index_select(0, own), None if inputs is None else tree_map(lambda x, own=own: x[own], inputs))
            fused_dist = network.action_head.distribution(raw[k, :n], None if legal is None else legal[own])
            torch.testing.assert_close(_dist_tensor(fused_dist), _dist_tensor(dist), atol=1e-6, rtol=0)
            torch.testing.assert_close(new_state[:, :, own], own_state, atol=1e-6, rtol=0)
            assert torch.equal(raw_rows[own], raw[k, :n])
            if k == 0:
                torch.testing.assert_close(value[own], own_value, atol=1e-6, rtol=0)
    # Each block has its own weights: network 0 on the same rows gives other outputs.
    other = own_rows[1]
    with torch.inference_mode():
        dist, _, _ = policy._one_step(tree_map(lambda x: x[torch.as_tensor(other)], obs), state[:, :, other],
                                      start[other], None if inputs is None else tree_map(lambda x: x[other], inputs))
    assert not torch.allclose(_dist_tensor(networks[1].action_head.distribution(raw[1, :len(other)])),
                              _dist_tensor(dist), atol=1e-3)


def test_architectures_that_cannot_fuse_act_one_network_after_the_other():
    """A critic core of its own is not fused: the collector says why and keeps one call per network, which
    collects what it collects with --fuse-opponents off."""
    runs = [make_collector(fuse_opponents=fuse, num_copies=4, policy_settings={"separate_critic": True})
            for fuse in (True, False)]
    fused = runs[0][1]
    assert "critic has a recurrent core" in fused.unfused_because
    for k in range(2):
        bufs = [collector.collect() for _, collector in runs]
        assert_same_rollout(*bufs)
        for (policy, _), buf in zip(runs, bufs, strict=True):
            learn_a_little(policy, buf, k)
    assert not fused._fused  # nothing was stacked


# --------------------------------------------------------------------------- training, resume, refusals
SMALL = {"env_id": RESPAWN, "sides": "a0=x,*=y", "self_play": True, "snapshot_every": 256, "pool_size": 3,
         "total_steps": 1536, "num_envs": 2, "num_steps": 64, "bptt_len": 8, "num_minibatches": 2,
         "update_epochs": 2, "eval_episodes": 0, "progress": False, "checkpoint_every": 512, "seed": 3,
         "hidden_size": 16, "normalize_obs": True, "normalize_reward": True}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


@pytest.mark.parametrize("inputs", [{}, {"fuse_opponents": True},
                                    {"env_id": "toy_multiagent_envs:make_respawn_state", "central_critic": True,
                                     "agent_index_input": True, "carry_across_episodes": True,
                                     "fuse_opponents": True}],
                         ids=["plain", "fused", "central-critic-agent-index-carry"])
def test_crash_and_resume_is_bitwise_exact_pool_and_ratings_included(tmp_path, inputs):
    """Snapshots act with the multi-agent inputs too (the slot one-hot, a central critic's global state)."""
    straight = make(tmp_path / "straight", **inputs)
    straight.train()
    run = tmp_path / "run"

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 1280:
            raise Crash

    with pytest.raises(Crash):
        make(run, **inputs).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        resumed = make(run, resume=True, **inputs)
    assert resumed.resume_note is None and resumed.global_step == 1024
    assert len(resumed.collector.pool.records) == 4  # snapshots at 0, 256, 512, 768
    # --fuse-opponents: the plain policy acts fused with its snapshots; the central critic's (a core of its own)
    # one network after the other.
    assert (resumed.collector.unfused_because is None) == (inputs == {"fuse_opponents": True})
    resumed.train()
    for key, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[key]), key
    a, b = straight.collector, resumed.collector
    assert a.pool.summary() == b.pool.summary() and a.pool.learner_rating == b.pool.learner_rating
    assert [r.rating for r in a.pool.records.values()] == [r.rating for r in b.pool.records.values()]
    for sid, network in a.pool.networks.items():
        assert all(torch.equal(t, b.pool.networks[sid].state_dict()[n]) for n, t in network.state_dict().items())
    assert torch.equal(a.state, b.state) and np.array_equal(a.opponent, b.opponent)
    assert np.array_equal(a.learner_side, b.learner_side) and np.array_equal(a.side_returns, b.side_returns)
    assert torch.equal(a.draw_generator.get_state(), b.draw_generator.get_state())
    assert torch.equal(a.opponent_generator.get_state(), b.opponent_generator.get_state())
    assert (straight.agent_steps, list(straight.recent_returns)) == (resumed.agent_steps, list(resumed.recent_returns))


def test_a_cli_run_logs_ratings_to_summary_and_tensorboard(tmp_path, capsys):
    from test_crash_resume import scalar_steps

    run = tmp_path / "run"
    code = train.main(["--env-id", DUEL, "--self-play", "--snapshot-every", "128", "--pool-size", "2",
                       "--run-dir", str(run), "--total-steps", "512", "--num-envs", "2", "--num-steps", "64",
                       "--hidden-size", "16", "--bptt-len", "8", "--update-epochs", "1", "--eval-episodes", "2",
                       "--progress", "false"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    self_play = summary["self_play"]
    assert self_play["pool"] == [2, 3] and sorted(self_play["snapshots"]) == ["0", "1", "2", "3"]
    games = sum(s["games"] for s in self_play["snapshots"].values())
    assert games == self_play["games_against_snapshots"] > 0
    # Every game ends an env episode of 6 steps: 512 env steps hold at most 512 / 6 of them.
    assert games + self_play["games_against_itself"] <= 512 // 6
    assert json.loads((run / "config.json").read_text())["opponents"]["self_play"] is True
    assert [s for s, _ in scalar_steps(run, "self_play/learner_elo")] == [128, 256, 384, 512]
    assert len(scalar_steps(run, "self_play/pool_elo_min")) == 4


FAST = ["--total-steps", "256", "--num-envs", "2", "--num-steps", "64", "--hidden-size", "16", "--bptt-len", "8",
        "--progress", "false"]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--env-id", "mnemo/TMaze-v0", "--self-play"], "is a single-agent env; drop --self-play"),
    (["--env-id", RESPAWN, "--self-play"], "has 3 agents"),
    (["--env-id", RESPAWN, "--self-play", "--sides", "a0=x,a1=y"], "no pattern matches agent 'a2'"),
    (["--env-id", RESPAWN, "--self-play", "--sides", "a0=x"], "exactly two sides"),
    (["--env-id", DUEL, "--self-play", "--policy-map", "*=p"], "--self-play with --policy-map is not supported"),
    (["--env-id", DUEL, "--self-play", "--backend", "ray"], "--self-play with --backend ray is not supported"),
    (["--env-id", DUEL, "--pool-size", "3"], "--pool-size only applies with --self-play"),
    (["--env-id", DUEL, "--fuse-opponents"], "--fuse-opponents only applies with --self-play"),
    (["--env-id", DUEL, "--self-play", "--play-latest", "1.5"], "--play-latest is a probability"),
    (["--env-id", DUEL, "--self-play", "--pool-size", "0"], "--pool-size must be a positive integer"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, flags, expected):
    run = tmp_path / "run"
    code = train.main(["--run-dir", str(run), *FAST, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expected in err[0], err
    assert not run.exists()


def test_a_resume_with_other_self_play_settings_is_refused(tmp_path):
    run = tmp_path / "run"
    make(run, total_steps=256).train()
    with pytest.raises(Exception, match=r"other self-play settings.*--pool-size"):
        make(run, resume=True, total_steps=512, pool_size=5)


@pytest.mark.slow
def test_the_learners_elo_rises_above_its_first_snapshot_with_memory_and_not_without(tmp_path):
    """CueDuel: the agent that recalls its own cue 5 steps later beats the one that does not. An LSTM learner
    ends well above the initial policy's rating (seed 0: about +180); a memoryless one cannot improve on it
    (about -50)."""
    gaps = {}
    for core in ("lstm", "none"):
        config = TrainConfig().with_overrides({
            "env_id": DUEL, "self_play": True, "core": core, "total_steps": 24_000, "num_envs": 8,
            "num_steps": 64, "hidden_size": 32, "learning_rate": 3e-3, "snapshot_every": 4096, "swap_every": 1024,
            "eval_episodes": 0, "progress": False, "seed": 0, "run_dir": str(tmp_path / core)}).validate()
        Trainer(config).train()
        summary = json.loads((tmp_path / core / "summary.json").read_text())["self_play"]
        pool = summary["snapshots"]
        assert pool["0"]["games"] > 100
        gaps[core] = summary["learner_elo"] - pool["0"]["elo"]
    assert gaps["lstm"] >= 100, gaps
    assert gaps["none"] < 50, gaps
