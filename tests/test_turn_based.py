"""Turn-based games (docs/multiagent.md, "Turn-based games"): only some agents act each step.

Toy envs (tests/toy_multiagent_envs.py): ``TurnsEnv`` (three players, one or two acting per step, rewards paid to
waiting players, ends and truncations while waiting, a player that joins late), ``TurnsAEC`` (an AEC env),
``FirstMoveEnv`` / ``TurnsDuelEnv`` (the second mover must remember the first's move), and PettingZoo's
tictactoe. Bounds: the invariant and the per-agent references to 1e-5; everything else bitwise or exact.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from agents.config import ConfigError, OpponentsConfig, PolicyConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.multiagent_collector import MultiAgentCollector, MultiPolicyCollector
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.rollout.self_play import SelfPlayCollector
from agents.train.trainer import ResumeWarning, Trainer
from agents.trees import obs_to_tensor, tree_map

TURNS = "toy_multiagent_envs:make_turns"
TURNS_AEC = "toy_multiagent_envs:make_turns_aec"
FIRST_MOVE = "toy_multiagent_envs:make_first_move"
DUEL = "toy_multiagent_envs:make_turns_duel"
BPTT = 5


def snapshot(rollout):
    """A copy of a rollout's tensors (the collector's buffer is refilled by the next ``collect``)."""
    copy = {name: getattr(rollout, name).clone() for name in
            ("actions", "logprobs", "values", "rewards", "terminated", "truncated", "truncation_values",
             "episode_starts", "states", "bootstrap_value", "alive", "acting")}
    copy["obs"] = tree_map(lambda x: x.clone(), rollout.obs)
    copy["agent_inputs"] = None if rollout.agent_inputs is None else tree_map(lambda x: x.clone(),
                                                                              rollout.agent_inputs)
    return type("Snap", (), copy)


def collect(core="lstm", carry=False, num_steps=11, rollouts=4, seed=0, env_id=TURNS, copies=3, central=False):
    envs = make_multiagent_vector_env(env_id, copies, with_state=central)
    torch.manual_seed(seed)
    cfg = PolicyConfig(hidden_size=16, carry_across_episodes=carry, normalize_obs=False, core=core,
                       central_critic=central, agent_index_input=central)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg,
                                  agents=envs.agent_names if central else (), state_space=envs.state_space)
    collector = MultiAgentCollector(envs, num_steps)
    collector.start(policy, torch.device("cpu"), seed, seed)
    return policy, collector, [snapshot(collector.collect()) for _ in range(rollouts)]


def sequences(buf):
    return make_sequences(buf.episode_starts.numpy(), BPTT, True, alive=buf.alive.numpy())


def gae(buf, gamma=0.9, lam=0.8):
    return compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                       buf.bootstrap_value, gamma, lam, buf.acting)


# --------------------------------------------------------------------------- the env convention
def test_rows_wait_act_and_report_rewards_and_ends_while_waiting():
    envs = make_multiagent_vector_env(TURNS, 2)
    envs.reset(seed=1)
    assert envs.turn_based and envs.waiting.any() and not (envs.alive & envs.waiting).any()
    seen = {"waiting_reward": 0, "waiting_term": 0, "waiting_trunc": 0, "late_spawn": 0, "two_acting": 0}
    started = envs.alive.copy()
    rng = np.random.default_rng(0)
    for _ in range(200):
        was_waiting, was_alive = envs.waiting.copy(), envs.alive.copy()
        _, reward, term, trunc, spawn, info = envs.step(rng.integers(0, 2, envs.num_envs))
        assert not (reward[~(was_waiting | was_alive)]).any()  # only rows in their episode are paid
        seen["waiting_reward"] += int((reward[was_waiting] != 0).sum())
        seen["waiting_term"] += int(term[was_waiting].sum())
        seen["waiting_trunc"] += int(trunc[was_waiting].sum())
        for row in np.flatnonzero(trunc):
            assert info["final_obs"][row] is not None
        # A row spawns at its first acting step of an episode, never while waiting.
        assert not (spawn & ~envs.alive).any()
        started[(term | trunc)] = False
        for i in np.flatnonzero(info["env_done"]):
            started[envs.env_rows(i)] = False
        assert np.array_equal(spawn, envs.alive & ~started)
        seen["late_spawn"] += int((spawn & was_waiting).sum())  # waited, then spawned at its first turn
        started |= envs.alive
        seen["two_acting"] += int(any(envs.alive[envs.env_rows(i)].sum() == 2 for i in range(2)))
    assert min(seen.values()) > 0, seen


def test_a_parallel_env_without_the_flag_that_omits_an_observation_is_refused_in_one_line():
    envs = make_multiagent_vector_env("toy_multiagent_envs:make_forgot_flag", 1)
    with pytest.raises(ConfigError, match=r"metadata\['turn_based'\] = True") as info:
        envs.reset(seed=0)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- AEC envs
def _hand_aec_log(env, episodes, choose):
    """PettingZoo's own AEC loop: per agent, (obs at its turn, reward since its last move) and its end."""
    log: dict[str, list] = {}
    for episode in range(episodes):
        env.reset(seed=100 + episode if episode == 0 else None)
        for agent in env.agent_iter():
            obs, reward, term, trunc, _ = env.last()
            if term or trunc:
                log.setdefault(agent, []).append(("end", obs, reward, term, trunc))
                env.step(None)
            else:
                log.setdefault(agent, []).append(("turn", obs, reward))
                env.step(choose(obs))
    return log


def _rows_log(env_id, env_kwargs, episodes, choose):
    """The same from the rows of ``MultiAgentVectorEnv`` over the AEC adapter (one copy)."""
    envs = make_multiagent_vector_env(env_id, 1, env_kwargs)
    obs, _ = envs.reset(seed=100)
    log: dict[str, list] = {}
    since = np.zeros(envs.num_envs)
    def leaves(o, r):
        return tree_map(lambda x: x[r], o)

    done_episodes = 0
    while done_episodes < episodes:
        actions = np.zeros(envs.num_envs, dtype=np.int64)
        for row in np.flatnonzero(envs.alive):
            agent = envs.agent_names[envs.agent_index[row]]
            row_obs = leaves(obs, row)
            log.setdefault(agent, []).append(("turn", row_obs, since[row]))
            since[row] = 0.0
            actions[row] = choose(row_obs)
        obs, reward, term, trunc, _, info = envs.step(actions)
        since += reward
        for row in np.flatnonzero(term | trunc):
            agent = envs.agent_names[envs.agent_index[row]]
            log.setdefault(agent, []).append(("end", info["final_obs"][row], since[row], term[row], trunc[row]))
            since[row] = 0.0
        done_episodes += int(info["env_done"].sum())
    return log


def _same_log(hand, rows):
    assert hand.keys() == rows.keys()
    for agent in hand:
        assert len(hand[agent]) == len(rows[agent]), agent
        for a, b in zip(hand[agent], rows[agent], strict=True):
            assert a[0] == b[0] and float(a[2]) == pytest.approx(float(b[2])), (agent, a, b)
            flat_a = a[1] if not isinstance(a[1], dict) else a[1]["observation"]
            flat_b = b[1] if not isinstance(b[1], dict) else b[1]["observation"]
            assert np.array_equal(np.asarray(flat_a), np.asarray(flat_b)), (agent, a, b)
            if a[0] == "end":
                assert (bool(a[3]), bool(a[4])) == (bool(b[3]), bool(b[4]))


@pytest.mark.parametrize("kwargs", [{}, {"truncate_second": True}])
def test_the_aec_adapter_gives_the_rows_what_pettingzoos_own_loop_gives(kwargs):
    from toy_multiagent_envs import TurnsAEC

    def choose(obs):
        return int(np.asarray(obs)[0] > 0.3)

    hand = _hand_aec_log(TurnsAEC(**kwargs), 3, choose)
    rows = _rows_log(TURNS_AEC, kwargs, 3, choose)
    _same_log(hand, rows)
    assert any(entry[0] == "end" and entry[4] for entry in rows["second"]) == bool(kwargs)


def test_the_aec_adapter_on_tictactoe():
    tictactoe = pytest.importorskip("pettingzoo.classic.tictactoe_v3")

    def choose(obs):
        legal = np.flatnonzero(obs["action_mask"])
        return int(legal[int(np.asarray(obs["observation"]).sum()) % len(legal)])

    hand = _hand_aec_log(tictactoe.env(), 4, choose)
    rows = _rows_log("toy_multiagent_envs:make_tictactoe", {}, 4, choose)
    _same_log(hand, rows)
    assert any(entry[0] == "end" and entry[2] != 0 for entry in rows["player_1"])
    # Its state is plain data under the adapter (the per-agent dicts of spaces are skipped): resumes are exact.
    envs = make_multiagent_vector_env("toy_multiagent_envs:make_tictactoe", 1)
    envs.reset(seed=0)
    assert envs.snapshot().get("error") is None


# --------------------------------------------------------------------------- GAE and sequences
def test_gae_with_alive_is_bitwise_the_masked_gae_for_agents_that_come_and_go():
    from test_multiagent_rollout import collect as respawn_collect

    _, _, buf = respawn_collect(num_steps=30)
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    adv2, ret2 = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                             buf.bootstrap_value, 0.99, 0.95, buf.alive)
    assert (buf.alive == 0).any()
    assert torch.equal(adv * buf.alive, adv2) and torch.equal(ret * buf.alive, ret2 * buf.alive)


def test_sequences_compact_kept_steps_to_the_front_and_prefixes_stay_as_they_were():
    starts = np.zeros((8, 2))
    alive = np.array([[1, 1], [0, 1], [1, 1], [0, 0], [1, 1], [1, 0], [0, 0], [1, 0]], dtype=np.float32)
    seqs = make_sequences(starts, 4, True, alive=alive)
    kept = [seqs.time_index[:int(seqs.mask[:, m].sum()), m].tolist() for m in range(seqs.num_sequences)]
    assert kept == [[0, 2], [4, 5, 7], [0, 1, 2], [4]]
    assert seqs.start_time.tolist() == [0, 4, 0, 4] and seqs.mask.shape == (4, 4)
    # Prefixes (agents that come and go) give the sequences cut as before, only the absent tails dropped.
    prefix = np.array([[1, 1], [1, 1], [0, 1], [0, 0], [1, 0], [1, 0], [1, 0], [0, 0]], dtype=np.float32)
    full, kept_prefix = make_sequences(starts, 4, True), make_sequences(starts, 4, True, alive=prefix)
    assert torch.equal(kept_prefix.mask, full.mask[:, [0, 1, 2]] * torch.tensor([[1, 1, 1], [1, 1, 1], [0, 1, 1],
                                                                                  [0, 0, 0]], dtype=torch.float32))
    for m in range(seqs.num_sequences):
        n = int(seqs.mask[:, m].sum())
        times = seqs.time_index[:n, m].tolist()
        env = int(seqs.env_index[0, m])
        assert times == sorted(times) and all(alive[t, env] for t in times)
        assert int(seqs.start_time[m]) == times[0]
    assert int(seqs.mask.sum()) == int(alive.sum())


# --------------------------------------------------------------------------- the invariant and references
@pytest.mark.parametrize(("core", "carry", "central"), [("lstm", False, False), ("lstm", True, False),
                                                        ("none", False, False), ("gru", True, False),
                                                        ("lstm", False, True)])
def test_invariant_with_turns(core, carry, central):
    """With ``central``: a central critic (the global state at each step, carried pending steps included) and
    the agent-index input."""
    policy, _, bufs = collect(core, carry, central=central)
    carried = 0
    for buf in bufs:
        seqs = sequences(buf)
        adv, ret = gae(buf)
        batch = gather_sequences(buf, seqs, adv, ret)
        with torch.no_grad():
            logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                                agent_inputs=batch.agent_inputs)
        real = batch.mask.bool()
        assert int(real.sum()) == int(buf.alive.sum())
        assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
        assert (value[real] - batch.values[real]).abs().max() < 1e-5
        carried += int(buf.alive[0].sum())
    assert carried > 0  # pending steps crossed rollout boundaries and were trained there


def _per_row_turns(bufs):
    """Each row's acting transitions in order across the rollouts: (rollout, step) of every trained step, plus
    the still-pending ones at the end."""
    rows = bufs[0].alive.shape[1]
    turns: list[list[tuple[int, int]]] = [[] for _ in range(rows)]
    for k, buf in enumerate(bufs):
        for t in range(buf.alive.shape[0]):
            for r in np.flatnonzero(buf.alive[t].numpy()):
                turns[r].append((k, t))
    return turns


def test_each_agents_states_and_values_are_its_own_turns_run_step_by_step():
    policy, _, bufs = collect("lstm", carry=False, rollouts=4)
    turns = _per_row_turns(bufs)
    checked = 0
    with torch.no_grad():
        for r, steps in enumerate(turns):
            state = None
            for k, t in steps:
                buf = bufs[k]
                stored = buf.states[t, :, :, r:r + 1]
                start = buf.episode_starts[t, r:r + 1]
                if state is not None:
                    # The state held across the row's waiting steps (and rollout ends) is the one after its last
                    # turn; a spawn zeroes it.
                    expect = state * (1.0 - start).view(1, 1, -1, 1)
                    assert (stored - expect).abs().max() < 1e-5, (r, k, t)
                    checked += 1
                obs = tree_map(lambda x, t=t, r=r: x[t, r:r + 1], buf.obs)
                out = policy.step(obs, stored, start, deterministic=True)
                assert abs(float(out.value[0]) - float(buf.values[t, r])) < 1e-5
                state = out.state
    assert checked > 50


def test_gae_returns_match_a_per_agent_reference_over_its_own_turns():
    """Every acting step is trained exactly once, with the rewards paid while its agent waited summed onto it,
    its end flags, and as next value the value of the agent's next turn, across rollout ends (lambda 0)."""
    gamma = 0.9
    _, collector, bufs = collect("lstm", rollouts=4)
    turns = _per_row_turns(bufs)
    # Trained exactly once: the steps rows acted at (non-zero observations at steps >= 1) are the trained ones
    # plus those still pending after the last rollout.
    acted = sum(int((bufs[k].obs[1:].abs().sum(-1) > 0).sum()) for k in range(len(bufs)))
    pending = int((collector._pending >= 0).sum())
    assert acted == sum(len(s) for s in turns) + pending
    assert pending > 0
    # Reference: the env's rewards per row, summed between its turns, from a second identical run.
    ref_rewards = _reference_credit(len(bufs))
    checked = 0
    for r, steps in enumerate(turns):
        assert len(ref_rewards[r]) >= len(steps)
        for i, (k, t) in enumerate(steps):
            buf = bufs[k]
            reward, term, trunc = ref_rewards[r][i]
            assert float(buf.rewards[t, r]) == pytest.approx(reward), (r, k, t)
            assert (bool(buf.terminated[t, r]), bool(buf.truncated[t, r])) == (term, trunc)
            _, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                                 buf.bootstrap_value, gamma, 0.0, buf.acting)
            if term:
                target = reward
            elif trunc:
                target = reward + gamma * float(buf.truncation_values[t, r])
            elif i + 1 < len(steps):
                k2, t2 = steps[i + 1]
                target = reward + gamma * float(bufs[k2].values[t2, r])
            else:
                continue
            assert float(ret[t, r]) == pytest.approx(target, abs=1e-5), (r, k, t)
            checked += 1
    assert checked > 50


def test_gae_with_lambda_matches_a_per_agent_reference_over_each_rollouts_turns():
    """GAE(lambda) over each agent's own turns of a rollout, as a plain list per agent: one discount per turn,
    the advantage cut at ends and at the rollout's last turn, whose next value is the bootstrap (the value of
    the agent's next turn, or of its pending step)."""
    gamma, lam = 0.9, 0.8
    _, _, bufs = collect("lstm", rollouts=3)
    checked = 0
    for buf in bufs:
        _, ret = gae(buf, gamma, lam)
        for r in range(buf.alive.shape[1]):
            steps = np.flatnonzero(buf.alive[:, r].numpy()).tolist()
            advantage, next_value = 0.0, float(buf.bootstrap_value[r])
            for t in reversed(steps):
                term, trunc = float(buf.terminated[t, r]), float(buf.truncated[t, r])
                done = max(term, trunc)
                target = float(buf.truncation_values[t, r]) * (1 - term) if done else next_value
                delta = float(buf.rewards[t, r]) + gamma * target - float(buf.values[t, r])
                advantage = delta + gamma * lam * (1 - done) * advantage
                assert float(ret[t, r]) == pytest.approx(advantage + float(buf.values[t, r]), abs=1e-5)
                next_value = float(buf.values[t, r])
                checked += 1
    assert checked > 100


def _reference_credit(rollouts, num_steps=11, copies=3, seed=0):
    """Per row, per own turn: (reward summed from that turn until its next turn or end, terminated, truncated),
    read straight from the env's step outputs of the same run (the collector's own actions, replayed)."""
    _, collector, _ = collect("lstm", rollouts=0, seed=seed, num_steps=num_steps, copies=copies)
    envs = collector.envs
    credit: list[list[list]] = [[] for _ in range(envs.num_envs)]
    open_turn = [None] * envs.num_envs
    original_step = envs.step

    def step(actions):
        acting = envs.alive.copy()
        result = original_step(actions)
        _, reward, term, trunc, _, _ = result
        for r in range(envs.num_envs):
            if acting[r]:
                open_turn[r] = [0.0, False, False]
                credit[r].append(open_turn[r])
            if open_turn[r] is not None:
                open_turn[r][0] += float(reward[r])
                if term[r] or trunc[r]:
                    open_turn[r][1], open_turn[r][2] = bool(term[r]), bool(trunc[r])
                    open_turn[r] = None
        return result

    envs.step = step
    for _ in range(rollouts):
        collector.collect()
    return [[tuple(c) for c in row] for row in credit]


# --------------------------------------------------------------------------- resume
def test_a_collector_resumes_bitwise_with_rows_waiting_and_pending():
    _, _, straight = collect("lstm", rollouts=4)
    policy, collector, _ = collect("lstm", rollouts=2)
    assert (collector._pending >= 0).any() and collector.envs.waiting.any()
    state = collector.state_dict()
    envs = make_multiagent_vector_env(TURNS, 3)
    resumed = MultiAgentCollector(envs, 11)
    resumed.start(policy, torch.device("cpu"), 99, 99)
    assert resumed.load_state_dict(state) is None
    for k in (2, 3):
        buf = snapshot(resumed.collect())
        for name in ("actions", "logprobs", "values", "rewards", "terminated", "truncated", "truncation_values",
                     "episode_starts", "states", "bootstrap_value", "alive", "acting", "obs"):
            assert torch.equal(getattr(buf, name), getattr(straight[k], name)), (k, name)


SELF_PLAY = {"env_id": DUEL, "self_play": True, "snapshot_every": 128, "pool_size": 2}
SMALL = {**SELF_PLAY, "total_steps": 434, "num_envs": 2, "num_steps": 31, "bptt_len": 4, "num_minibatches": 2,
         "update_epochs": 2, "eval_episodes": 2, "progress": False, "checkpoint_every": 186, "seed": 3,
         "hidden_size": 16, "normalize_obs": True, "normalize_reward": True}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


SHARED = {"self_play": False, "env_id": TURNS, "snapshot_every": 10_000, "pool_size": 10}


TRAINING_CASES = {
    "self-play": {},
    "self-play-fused": {"fuse_opponents": True},
    "shared": SHARED,
    "central-critic-agent-index-carry": {**SHARED, "central_critic": True, "agent_index_input": True,
                                         "carry_across_episodes": True},
    "policy-map": {**SHARED, "policy_map": "p0=solo,*=pair"},
    "policy-map-central-critic-agent-index": {**SHARED, "policy_map": "p0=solo,*=pair", "central_critic": True,
                                              "agent_index_input": True},
}


@pytest.mark.parametrize("overrides", list(TRAINING_CASES.values()), ids=list(TRAINING_CASES))
def test_training_with_turns_crashes_and_resumes_bitwise(tmp_path, overrides):
    straight = make(tmp_path / "straight", **overrides)
    straight.train()
    run = tmp_path / "run"

    pending = {}

    def crash(trainer: Trainer) -> None:
        pending[trainer.global_step] = bool((trainer.collector._pending >= 0).any())
        if trainer.iteration == 4:
            raise Crash

    with pytest.raises(Crash):
        make(run, **overrides).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        resumed = make(run, resume=True, **overrides)
    assert resumed.resume_note is None
    assert pending[resumed.global_step]  # a pending step crossed the checkpoint the run resumed from
    resumed.train()
    for name, learner in straight.learners.items():
        for key, value in learner.policy.state_dict().items():
            assert torch.equal(value, resumed.learners[name].policy.state_dict()[key]), (name, key)
    assert (straight.agent_steps, list(straight.recent_returns)) == (resumed.agent_steps, list(resumed.recent_returns))


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_self_play_with_turns_holds_opponents_state_while_waiting(fuse):
    envs = make_multiagent_vector_env(DUEL, 4)
    torch.manual_seed(0)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space,
                                  PolicyConfig(hidden_size=16))
    collector = SelfPlayCollector(envs, 9, OpponentsConfig(self_play=True, snapshot_every=1, pool_size=2,
                                                           play_latest=0.0, fuse_opponents=fuse))
    collector.start(policy, torch.device("cpu"), 0, 0)
    opponent_turns = 0
    for _ in range(3):
        before = collector.state.clone()
        buf = collector.collect()
        # Training rows are the learner's own turns only: the opponents' turns are acting, not training.
        assert bool(((buf.alive > 0) <= (buf.acting > 0)).all())
        opponent_turns += int(((buf.acting > 0) & (buf.alive == 0)).sum())
        assert before.shape == collector.state.shape
    assert opponent_turns > 0
    assert (collector.unfused_because is None) == fuse  # the fused path acts where it is on
    waiting = torch.as_tensor(collector.envs.waiting)
    obs_t = obs_to_tensor(collector.next_obs, "cpu")
    with torch.no_grad():
        _, _, next_state = collector._act(obs_t, collector.state, None, collector.alive)
    assert torch.equal(next_state[:, :, waiting], collector.state[:, :, waiting])


@pytest.mark.parametrize("central", [False, True])
def test_several_policies_with_turns_keep_the_invariant_and_carry_pending_steps(central):
    """``--policy-map``: each policy's rows act, wait and carry their pending steps in its own buffer; with
    ``central``, each policy's central critic and agent-index input (carried steps keep their global state)."""
    envs = make_multiagent_vector_env(TURNS, 3, policy_map="p0=solo,*=pair", with_state=central)
    torch.manual_seed(0)
    cfg = PolicyConfig(hidden_size=16, central_critic=central, agent_index_input=central)
    policies = {block.name: RecurrentActorCritic(block.observation_space, block.action_space, cfg,
                                                 agents=block.agents, state_space=envs.state_space)
                for block in envs.policies}
    collector = MultiPolicyCollector(envs, 11)
    collector.start(policies, torch.device("cpu"), 0, 0)
    carried = dict.fromkeys(policies, 0)
    for _ in range(4):
        for name, buf in collector.collect().items():
            assert buf.rewards.shape[0] == 12 and buf.acting is not None
            assert (buf.agent_inputs is not None) == central
            adv, ret = gae(buf)
            batch = gather_sequences(buf, sequences(buf), adv, ret)
            with torch.no_grad():
                logprob, _, value = policies[name].evaluate(batch.obs, batch.start_states, batch.episode_starts,
                                                            batch.actions, batch.agent_inputs)
            real = batch.mask.bool()
            assert int(real.sum()) == int(buf.alive.sum())
            assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
            assert (value[real] - batch.values[real]).abs().max() < 1e-5
            carried[name] += int(buf.alive[0].sum())
    assert min(carried.values()) > 0, carried


def test_one_named_policy_with_turns_and_a_central_critic_collects_bitwise_as_the_shared_policy():
    """``--policy-map '*=all'`` with a central critic and the agent index on a turn-based env: every rollout
    tensor is the shared path's (waiting rows' truncation values, carried pending steps and their global states
    included; ``test_invariant_with_turns`` checks that path)."""

    def run(named: bool):
        envs = make_multiagent_vector_env(TURNS, 3, policy_map="*=all" if named else None, with_state=True)
        torch.manual_seed(0)
        cfg = PolicyConfig(hidden_size=16, central_critic=True, agent_index_input=True)
        block = envs.policies[0]
        policy = RecurrentActorCritic(block.observation_space, block.action_space, cfg, agents=block.agents,
                                      state_space=envs.state_space)
        collector = (MultiPolicyCollector if named else MultiAgentCollector)(envs, 11)
        collector.start({"all": policy} if named else policy, torch.device("cpu"), 1, 2)
        return [snapshot(rollout["all"] if named else rollout) for rollout in (collector.collect() for _ in range(4))]

    cut_at_env_end = 0
    for shared, named in zip(run(False), run(True), strict=True):
        for field in ("actions", "logprobs", "values", "rewards", "terminated", "truncated", "truncation_values",
                      "episode_starts", "states", "bootstrap_value", "alive", "acting", "obs"):
            assert torch.equal(getattr(shared, field), getattr(named, field)), field
        for key in ("agent_index", "global_state"):
            assert torch.equal(shared.agent_inputs[key], named.agent_inputs[key]), key
        # The env's end (t = 23) truncates every player and resets: their values read the state before it.
        cut_at_env_end += int(((shared.truncated > 0) & (shared.agent_inputs["global_state"][..., 0] > 0.9)).sum())
    assert cut_at_env_end > 0


# --------------------------------------------------------------------------- learning
def test_the_second_mover_learns_to_remember_the_first_movers_move_with_memory_and_not_without(tmp_path):
    """FirstMoveEnv: the second mover is paid for repeating, at its second turn, the move it saw at its first.
    The mean return over both players' episodes (the first mover learns its own part either way): with an LSTM
    1.0 at seed 0 after 6,000 steps, memoryless 0.75 (its second mover guesses; it can beat 0.5 only while the
    first mover's moves are still biased)."""
    scores = {}
    for core in ("lstm", "none"):
        config = TrainConfig().with_overrides({
            "env_id": FIRST_MOVE, "core": core, "total_steps": 6_000, "num_envs": 8, "num_steps": 32,
            "hidden_size": 16, "learning_rate": 3e-3, "bptt_len": 4, "eval_episodes": 0, "progress": False,
            "seed": 0, "torch_threads": 1, "run_dir": str(tmp_path / core)}).validate()
        trainer = Trainer(config)
        trainer.train()
        scores[core] = float(np.mean(list(trainer.recent_returns)))
    assert scores["lstm"] >= 0.95 and scores["none"] <= 0.85, scores


def test_evaluation_counts_the_rewards_paid_while_an_agent_waits():
    """TurnsDuelEnv pays the first mover -1 at the second mover's last turn, while the first waits: its episode
    returns (its own rewards are 0 or 1) go below 0 only if that reward is counted."""
    from agents.train.evaluation import evaluate_multiagent

    envs = make_multiagent_vector_env(DUEL, 1)
    torch.manual_seed(0)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space,
                                  PolicyConfig(hidden_size=16))
    returns = evaluate_multiagent(policy, DUEL, 40, seed=0, deterministic=False, num_envs=4,
                                  generator=torch.Generator().manual_seed(0))
    assert len(returns) == 80 and returns.min() == -1.0 and returns.max() == 1.0


def test_episode_lengths_count_an_agents_own_turns_and_returns_its_waiting_rewards():
    """TurnsDuelEnv: each player has 2 turns in a 4-step game; the first mover's -1 arrives while it waits."""
    _, collector, _ = collect(env_id=DUEL, rollouts=0, copies=2)
    rollout = collector.collect()
    assert rollout.episode_lengths and set(rollout.episode_lengths) == {2}
    assert min(rollout.episode_returns) == -1.0


def test_reward_scalings_running_return_advances_per_own_turn():
    from agents.train.reward_scale import RewardScaler

    rewards = torch.tensor([[1.0], [0.0], [2.0], [0.0], [3.0]])
    acting = torch.tensor([[1.0], [0.0], [1.0], [0.0], [1.0]])
    dones = torch.zeros(5, 1)
    scaler = RewardScaler(1, gamma=0.5)
    scaler.scale_rollout(rewards, dones, acting, acting)
    # Turns only: 1, then 0.5 * 1 + 2 = 2.5, then 0.5 * 2.5 + 3 = 4.25 (the waiting steps do not discount).
    assert float(scaler.returns[0]) == 4.25
    # Without turns (every step a turn), the same rewards discount at every step.
    plain = RewardScaler(1, gamma=0.5)
    plain.scale_rollout(rewards, dones)
    assert float(plain.returns[0]) == 0.5 ** 4 * 1 + 0.5 ** 2 * 2 + 3
