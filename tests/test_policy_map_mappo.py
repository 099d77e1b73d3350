"""Named policies (``--policy-map``) with ``--central-critic`` and ``--agent-index-input``: MAPPO per policy.

Each policy's critic reads its rows' env copy's global state (``env.state()``) and the agent's slot one-hot; the
agent-index input is the agent's slot among its own policy's agents. Checked here: the rollout invariant per
policy (reset and carry mode, agents dying and spawning), the inputs each policy's rows get, truncation values
that read the state before the autoreset, one named policy collecting bitwise as the shared policy with both
flags, bitwise crash-resume, export / runners / watch by policy name with the agent index, and that without the
flags nothing reads the state.

Toy env: tests/toy_multiagent_envs.py ``StateRolesEnv`` (a hunter with Box(3,) / Discrete(3), two prey with
Box(2,) / Discrete(2) that die and come back; a global state whose first entry is t / episode_len). Bounds: the
invariant to 1e-5; everything else bitwise.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from registry_cases import core_names, core_settings

pytest.importorskip("pettingzoo")

from agents.config import PolicyConfig, PPOConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.multiagent_collector import MultiAgentCollector, MultiPolicyCollector
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.train import cli as train
from agents.train.ppo_loss import make_minibatch, ppo_loss
from agents.train.trainer import ResumeWarning, Trainer
from agents.trees import tree_map

ROLES = "toy_multiagent_envs:make_roles_state"
RESPAWN = "toy_multiagent_envs:make_respawn_state"
ROLE_MAP = "hunter_*=hunter,prey_*=prey"
BPTT = 6


def policies_for(envs, cfg):
    return {b.name: RecurrentActorCritic(b.observation_space, b.action_space, cfg, agents=b.agents,
                                         state_space=envs.state_space) for b in envs.policies}


def collect(core="lstm", layers=1, carry=False, index=True, central=True, num_steps=40, rollouts=2, seed=0,
            env_kwargs=None):
    envs = make_multiagent_vector_env(ROLES, 3, env_kwargs, policy_map=ROLE_MAP, with_state=central)
    torch.manual_seed(seed)
    cfg = PolicyConfig(hidden_size=16, central_critic=central, agent_index_input=index, carry_across_episodes=carry,
                       normalize_obs=True, **core_settings(core, layers))
    policies = policies_for(envs, cfg)
    collector = MultiPolicyCollector(envs, num_steps)
    collector.start(policies, torch.device("cpu"), seed, seed)
    bufs = collector.collect()
    for _ in range(rollouts - 1):  # later rollouts: carried states, moved normalisers (the critics' too)
        for name, buf in bufs.items():
            live = buf.alive > 0
            inputs = None if buf.agent_inputs is None else tree_map(lambda x, live=live: x[live], buf.agent_inputs)
            policies[name].update_obs_normalizer(tree_map(lambda x, live=live: x[live], buf.obs), inputs)
        bufs = collector.collect()
    return policies, collector, bufs


def batch_of(buf):
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    seqs = make_sequences(buf.episode_starts.numpy(), BPTT, True, alive=buf.alive.numpy())
    return gather_sequences(buf, seqs, adv * buf.alive, ret * buf.alive), seqs


# ------------------------------------------------------------------ the rollout
@pytest.mark.parametrize(("core", "carry", "index"),
                         [(core, carry, index) for core in core_names() for carry in (False, True)
                          for index in (False, True)])
def test_invariant_for_each_policy_with_a_central_critic(core, carry, index):
    policies, _, bufs = collect(core, carry=carry, index=index)
    prey = bufs["prey"]
    assert prey.terminated.sum() > 0 and (prey.alive == 0).any() and (prey.episode_starts[1:] > 0).any()
    assert bufs["hunter"].truncated.sum() > 0  # the env's end truncates the hunter: a bootstrap from the state
    for name, buf in bufs.items():
        policy = policies[name]
        assert policy.state_shape[0] == 2 * policy.actor_state_shape[0]  # each critic has its own core
        batch, _ = batch_of(buf)
        with torch.no_grad():
            logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                                batch.agent_inputs)
        real = batch.mask.bool()
        assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5, name
        assert (value[real] - batch.values[real]).abs().max() < 1e-5, name
        mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
        with torch.no_grad():
            terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
        assert abs(float(terms.approx_kl)) < 1e-6 and float(terms.clipfrac) == 0.0, name


@pytest.mark.parametrize("carry", [False, True])
def test_invariant_for_each_policy_with_the_agent_index_alone(carry):
    """--agent-index-input without a central critic (no env.state() read): the slot reaches each actor."""
    policies, collector, bufs = collect(carry=carry, central=False)
    assert not collector.envs.with_state
    for name, buf in bufs.items():
        assert set(buf.agent_inputs) == {"agent_index"}
        batch, _ = batch_of(buf)
        policy = policies[name]
        with torch.no_grad():
            logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                                batch.agent_inputs)
        real = batch.mask.bool()
        assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5, name
        assert (value[real] - batch.values[real]).abs().max() < 1e-5, name
    prey, batch = policies["prey"], batch_of(bufs["prey"])[0]
    other = {"agent_index": 1 - batch.agent_inputs["agent_index"]}  # prey_0 <-> prey_1
    with torch.no_grad():
        logprob, _, _ = prey.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                      batch.agent_inputs)
        moved, _, _ = prey.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions, other)
    real = batch.mask.bool()
    assert not torch.allclose(logprob[real], moved[real])


def test_each_policy_reads_its_agents_slots_and_its_rows_copies_global_state():
    policies, collector, bufs = collect(rollouts=1)
    hunter, prey = bufs["hunter"], bufs["prey"]
    # The slot among the policy's own agents: the hunter is its policy's only agent; prey_0, prey_1 are 0, 1.
    assert policies["hunter"].agents == ("hunter_0",) and policies["prey"].agents == ("prey_0", "prey_1")
    assert torch.equal(hunter.agent_inputs["agent_index"], torch.zeros(40, 3, dtype=torch.int64))
    assert torch.equal(prey.agent_inputs["agent_index"], torch.tensor([0, 1]).repeat(3).expand(40, 6))
    # Every policy's critic reads the same global state: a copy's rows share it (rows copy by copy in a block).
    states = prey.agent_inputs["global_state"]  # (T, 6, 7)
    assert torch.equal(states[:, 0::2], states[:, 1::2]) and torch.equal(states[:, 0::2],
                                                                         hunter.agent_inputs["global_state"])
    # It is the env's: the hunter's observation carries t / episode_len, the state's first entry.
    assert torch.equal(hunter.obs[..., 1], hunter.agent_inputs["global_state"][..., 0])
    assert collector.envs.policy_slot.tolist() == [0, 0, 0, 0, 1, 0, 1, 0, 1]


def test_truncation_values_read_the_global_state_before_the_autoreset():
    """At the env's end (t = 12) everyone left is truncated and the env resets in the same step: each policy's
    truncation values must read the state of the episode that ended (first entry 1), not the new one's (0)."""
    envs = make_multiagent_vector_env(ROLES, 2, {"episode_len": 12}, policy_map=ROLE_MAP, with_state=True)
    torch.manual_seed(0)
    policies = policies_for(envs, PolicyConfig(hidden_size=16, central_critic=True, agent_index_input=True))
    collector = MultiPolicyCollector(envs, 20)
    collector.start(policies, torch.device("cpu"), 0, 0)
    seen = {name: [] for name in policies}
    for name, policy in policies.items():
        def spy(obs, state, episode_start, agent_inputs=None, name=name, value=policy.value):
            seen[name].append(agent_inputs["global_state"][:, 0].clone())
            return value(obs, state, episode_start, agent_inputs)

        policy.value = spy
    bufs = collector.collect()
    for name, buf in bufs.items():
        at_end = buf.truncated[11] > 0  # step 11 takes t to 12: the env's end
        assert int(at_end.sum()) >= 2, name
        truncation_calls = seen[name][:-1]  # the last call is the bootstrap value after the rollout
        assert truncation_calls and all(bool((times == 1.0).all()) for times in truncation_calls), name
        assert sum(len(times) for times in truncation_calls) == int((buf.truncated * (1 - buf.terminated)).sum())
        assert bool((buf.agent_inputs["global_state"][12, :, 0] == 0.0).all())  # the next step reads the new one


def test_one_named_policy_collects_bitwise_as_the_shared_policy_with_both_flags():
    """``--policy-map '*=all'`` with a central critic and the agent index: the same network and seeds give every
    rollout tensor of the shared path (whose truncation and carry rules tests/test_central_critic.py checks)."""

    def run(named: bool, carry: bool):
        envs = make_multiagent_vector_env(RESPAWN, 3, policy_map="*=all" if named else None, with_state=True)
        torch.manual_seed(0)
        cfg = PolicyConfig(hidden_size=16, normalize_obs=True, central_critic=True, agent_index_input=True,
                           carry_across_episodes=carry)
        block = envs.policies[0]
        policy = RecurrentActorCritic(block.observation_space, block.action_space, cfg, agents=block.agents,
                                      state_space=envs.state_space)
        collector = (MultiPolicyCollector if named else MultiAgentCollector)(envs, 24, noise_correlation=0.5)
        collector.start({"all": policy} if named else policy, torch.device("cpu"), 1, 2)
        out = []
        for _ in range(2):
            rollout = collector.collect()
            rollout = rollout["all"] if named else rollout
            out.append((tree_map(lambda x: x.clone(), rollout.agent_inputs),
                        {f: getattr(rollout, f).clone() for f in FIELDS}, list(rollout.episode_returns)))
        return out

    for carry in (False, True):
        for (s_in, shared, s_ret), (n_in, named, n_ret) in zip(run(False, carry), run(True, carry), strict=True):
            assert shared["truncated"].sum() > 0 and shared["terminated"].sum() > 0
            for field in FIELDS:
                assert torch.equal(shared[field], named[field]), field
            for key in ("agent_index", "global_state"):
                assert torch.equal(s_in[key], n_in[key]), key
            assert s_ret == n_ret


FIELDS = ("obs", "actions", "logprobs", "values", "rewards", "terminated", "truncated", "truncation_values",
          "episode_starts", "states", "bootstrap_value", "alive")


def test_without_the_flags_no_policy_reads_the_state_or_a_slot():
    policies, collector, bufs = collect(central=False, index=False, rollouts=1)
    assert not collector.envs.with_state and collector.envs.global_state is None
    assert all(buf.agent_inputs is None for buf in bufs.values())
    assert all(p.agents == () and p.state_space is None for p in policies.values())


def test_a_policy_built_for_other_agents_is_refused():
    envs = make_multiagent_vector_env(ROLES, 1, policy_map=ROLE_MAP, with_state=True)
    cfg = PolicyConfig(hidden_size=8, agent_index_input=True)
    policies = {b.name: RecurrentActorCritic(b.observation_space, b.action_space, cfg, agents=envs.agent_names)
                for b in envs.policies}
    with pytest.raises(ValueError, match=r"build it with agents=block\.agents"):
        MultiPolicyCollector(envs, 4).start(policies, torch.device("cpu"), 0, 0)


# ------------------------------------------------------------------ training
SMALL = {"env_id": ROLES, "policy_map": ROLE_MAP, "total_steps": 1536, "num_envs": 2, "num_steps": 64,
         "bptt_len": 8, "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False,
         "checkpoint_every": 512, "seed": 3, "hidden_size": 16, "normalize_obs": True, "normalize_reward": True,
         "noise_correlation": 0.5, "central_critic": True, "agent_index_input": True}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


@pytest.mark.parametrize("carry", [False, True])
def test_crash_and_resume_with_central_critics_per_policy_is_bitwise_exact(tmp_path, carry):
    straight = make(tmp_path / "straight", carry_across_episodes=carry)
    straight.train()
    run = tmp_path / "run"

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 1280:
            raise Crash

    with pytest.raises(Crash):
        make(run, carry_across_episodes=carry).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # an exact resume warns about nothing
        resumed = make(run, resume=True, carry_across_episodes=carry)
    assert resumed.resume_note is None and resumed.global_step == 1024
    alive = resumed.collector.alive  # prey mid-episode: some alive, some absent
    assert 0 < alive.sum() < alive.numel()
    resumed.train()
    assert list(straight.learners) == list(resumed.learners) == ["hunter", "prey"]
    for name in straight.learners:
        a, b = straight.learners[name], resumed.learners[name]
        assert a.policy.central_critic and a.policy.agents == b.policy.agents
        for key, value in a.policy.state_dict().items():
            assert torch.equal(value, b.policy.state_dict()[key]), (name, key)
        assert any(key.startswith("critic_preprocess") for key in a.policy.state_dict())  # its normaliser
        opt_a, opt_b = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
        for index in opt_a:
            for key in opt_a[index]:
                assert torch.equal(opt_a[index][key], opt_b[index][key]), (name, index, key)
    assert (straight.global_step, straight.episodes, straight.agent_steps) == \
        (resumed.global_step, resumed.episodes, resumed.agent_steps)
    assert list(straight.recent_returns) == list(resumed.recent_returns)
    assert torch.equal(straight.collector.state, resumed.collector.state)


# ------------------------------------------------------------------ using a trained run
FAST = ["--total-steps", "192", "--num-envs", "2", "--num-steps", "32", "--hidden-size", "8", "--bptt-len", "8",
        "--update-epochs", "1", "--eval-episodes", "4", "--progress", "false"]


@pytest.fixture(scope="module")
def mappo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mappo_roles") / "run"
    assert train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), *FAST,
                       "--central-critic", "--agent-index-input"]) == 0
    return run


def test_checkpoints_record_each_policys_agents_and_state_space(mappo_run):
    from agents.run.checkpoint import load_policies

    policies, _ = load_policies(mappo_run)
    assert policies["hunter"].agents == ("hunter_0",) and policies["prey"].agents == ("prey_0", "prey_1")
    assert all(p.central_critic and p.state_space.shape == (7,) for p in policies.values())


def test_runner_by_name_feeds_each_agents_slot_among_its_policy(mappo_run):
    from agents.deploy.agent_ids import UnknownAgentError
    from agents.deploy.runner import PolicyRunner
    from agents.run.checkpoint import load_policy

    prey, _ = load_policy(mappo_run, policy="prey")
    runner = PolicyRunner.load(mappo_run, policy="prey")
    obs = np.array([[0.3, 0.1], [0.3, 0.1]], dtype=np.float32)
    actions, info = runner.act(obs, agent_ids=["prey_1", "prey_0"], return_info=True)
    with torch.no_grad():
        out = prey.step(torch.as_tensor(obs), prey.initial_state(2), torch.ones(2), deterministic=True,
                        agent_inputs={"agent_index": torch.tensor([1, 0])})
    assert actions.tolist() == out.action.tolist()
    assert np.allclose(info.logprob, out.logprob.numpy(), atol=1e-6)
    assert info.logprob[0] != info.logprob[1]  # same observation and state, another slot: another distribution
    assert np.isnan(info.value).all()  # actor-only: the critic needs env.state()
    with pytest.raises(UnknownAgentError, match="not an agent of this run"):
        runner.act(obs[:1], agent_ids=["hunter_0"])


def test_export_by_name_has_the_policys_agent_index_and_no_critic(mappo_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from agents.deploy import export_cli
    from agents.deploy.export import load_onnx_metadata
    from agents.deploy.onnx_runner import OnnxRunner
    from agents.deploy.runner import PolicyRunner

    out = tmp_path / "prey.onnx"
    assert export_cli.main([str(mappo_run), "--policy", "prey", "--out", str(out)]) == 0
    assert "-> ok" in capsys.readouterr().out
    meta = load_onnx_metadata(out)
    assert meta["central_critic"] and "value" not in [o["name"] for o in meta["outputs"]]
    assert meta["multiagent"]["agents"] == ["prey_0", "prey_1"]
    index = [i for i in meta["inputs"] if i["role"] == "agent_index"]
    assert index == [{"name": "agent_index", "role": "agent_index", "shape": [None], "dtype": "int64",
                      "agents": ["prey_0", "prey_1"]}]
    obs = np.array([[0.3, 0.1], [-0.2, 0.4]], dtype=np.float32)
    torch_runner, onnx_runner = PolicyRunner.load(mappo_run, policy="prey"), OnnxRunner(out)
    for _ in range(3):  # a few steps: the state follows
        a, info = torch_runner.act(obs, agent_ids=["prey_1", "prey_0"], return_info=True)
        b, onnx_info = onnx_runner.act(obs, agent_ids=["prey_1", "prey_0"], return_info=True)
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(info.logprob, onnx_info.logprob, atol=1e-5)


def test_watch_plays_each_policy_with_its_agents_slots(mappo_run):
    """mnemo watch (inspecting prey_1) needs no env.state(); its agent episodes are evaluation's."""
    from test_multiagent_watch import QUIET, ListSink

    from agents.run.checkpoint import load_policies
    from agents.train.evaluation import evaluate_policies
    from agents.watch.viewer import watch

    result = watch(mappo_run, episodes=2, inspect=True, agent="prey_1", sink=ListSink(), seed=1, **QUIET)
    policies, _ = load_policies(mappo_run)
    expected = evaluate_policies(policies, ROLES, 2, seed=1, policy_map=ROLE_MAP, num_envs=1)
    played = list(result.agent_returns)
    for returns in expected.values():
        for value in returns:
            played.remove(float(value))  # raises when watch did not play that episode
    assert not played


def test_each_role_learns_its_own_action_with_central_critics(tmp_path):
    """The hunter is paid for action 2 of 3, the prey for action 0 of 2: with central critics and the agent index
    each policy learns its own (as tests/test_multiagent_policies.py checks without them)."""
    trainer = make(tmp_path / "run", total_steps=3072, eval_episodes=8, noise_correlation=0.0)
    summary = trainer.train()
    assert summary["policies"]["hunter"]["eval_return_mean"] == 12.0  # 12 steps, paid each step (random play: 4)
    prey = trainer.learners["prey"].policy
    obs = torch.tensor([[x, 0.5] for x in np.linspace(-1, 1, 9)], dtype=torch.float32)
    with torch.no_grad():
        for slot in (0, 1):
            out = prey.step(obs, prey.initial_state(9, "cpu"), torch.ones(9), deterministic=True,
                            agent_inputs={"agent_index": torch.full((9,), slot)})
            assert (out.action == 0).all(), slot
