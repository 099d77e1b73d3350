"""The central critic (``--central-critic``, MAPPO) and the agent-index input (``--agent-index-input``).

The critic reads the env's global state and the agent's slot one-hot; the actor its observation (and, with
``--agent-index-input``, the slot one-hot). Checked here: the rollout invariant with agents dying and spawning
inside rollouts and BPTT sequences; truncation values that read the state at the agent's end; the parallel
critic thread; bitwise resume; the refusals; exports and runners that stay actor-only and follow the trained
actor; and that with both flags off nothing changes.
"""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import torch
from registry_cases import core_names, core_settings

pytest.importorskip("pettingzoo")

from agents.config import PolicyConfig, PPOConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.multiagent_collector import MultiAgentCollector
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.train import cli as train
from agents.train.parallel_critic import ParallelCritic
from agents.train.ppo import loss_and_backward
from agents.train.ppo_loss import make_minibatch, ppo_loss
from agents.train.trainer import ResumeWarning, Trainer
from agents.trees import tree_map

STATE_ENV = "toy_multiagent_envs:make_respawn_state"
BPTT = 6


def collect(core="lstm", layers=1, carry=False, index=True, num_steps=40, rollouts=2, seed=0):
    envs = make_multiagent_vector_env(STATE_ENV, 3, with_state=True)
    torch.manual_seed(seed)
    cfg = PolicyConfig(hidden_size=16, central_critic=True, agent_index_input=index, carry_across_episodes=carry,
                       normalize_obs=True, **core_settings(core, layers))
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg,
                                  agents=envs.agent_names, state_space=envs.state_space)
    collector = MultiAgentCollector(envs, num_steps)
    collector.start(policy, torch.device("cpu"), seed, seed)
    buf = collector.collect()
    for _ in range(rollouts - 1):  # later rollouts: carried states, moved normalisers (the critic's too)
        live = buf.alive > 0
        policy.update_obs_normalizer(tree_map(lambda x, live=live: x[live], buf.obs),
                                     tree_map(lambda x, live=live: x[live], buf.agent_inputs))
        buf = collector.collect()
    return policy, collector, buf


def batch_of(buf):
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    seqs = make_sequences(buf.episode_starts.numpy(), BPTT, True, alive=buf.alive.numpy())
    return gather_sequences(buf, seqs, adv * buf.alive, ret * buf.alive), seqs


CASES = list(itertools.product(core_names(), [1, 2], [False, True], [False, True]))


@pytest.mark.parametrize(("core", "layers", "carry", "index"), CASES)
def test_invariant_with_a_central_critic_and_deaths_and_spawns(core, layers, carry, index):
    policy, _, buf = collect(core, layers, carry, index)
    assert buf.terminated.sum() > 0 and buf.truncated.sum() > 0 and (buf.alive == 0).any()
    assert (buf.episode_starts[1:] > 0).any()
    batch, seqs = batch_of(buf)
    done = torch.maximum(buf.terminated, buf.truncated)[seqs.time_index, seqs.env_index] * seqs.mask
    assert (done[1:] > 0).any()  # an agent ends inside a BPTT sequence
    assert policy.state_shape[0] == 2 * policy.actor_state_shape[0]  # the critic has its own core
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                            batch.agent_inputs)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
    with torch.no_grad():
        terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
    assert abs(float(terms.approx_kl)) < 1e-6 and float(terms.clipfrac) == 0.0


@pytest.mark.parametrize("separate", [False, True])
def test_invariant_with_the_agent_index_input_alone(separate):
    """--agent-index-input without a central critic, on an env without state(): the slot reaches the actor."""
    envs = make_multiagent_vector_env("toy_multiagent_envs:make_respawn", 3)
    torch.manual_seed(0)
    cfg = PolicyConfig(hidden_size=16, agent_index_input=True, separate_critic=separate)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg,
                                  agents=envs.agent_names)
    collector = MultiAgentCollector(envs, 40)
    collector.start(policy, torch.device("cpu"), 0, 0)
    buf = collector.collect()
    assert set(buf.agent_inputs) == {"agent_index"}
    batch, _ = batch_of(buf)
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                            batch.agent_inputs)
        other = dict(agent_index=(batch.agent_inputs["agent_index"] + 1) % 3)
        moved, _, _ = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions, other)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5
    assert not torch.allclose(logprob[real], moved[real])


def test_the_critic_reads_the_global_state_and_the_actor_does_not():
    """Values change with the global state; actions' log-probs do not. The stored state is each row's copy's."""
    policy, _, buf = collect(rollouts=1)
    batch, _ = batch_of(buf)
    moved = dict(batch.agent_inputs, global_state=batch.agent_inputs["global_state"] + 0.5)
    with torch.no_grad():
        lp, _, v = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions,
                                   batch.agent_inputs)
        lp2, _, v2 = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions, moved)
    real = batch.mask.bool()
    assert torch.equal(lp[real], lp2[real]) and not torch.allclose(v[real], v2[real])
    states = buf.agent_inputs["global_state"]  # (T, R, 7): the 3 rows of a copy share its state
    assert torch.equal(states[:, 0::3], states[:, 1::3]) and torch.equal(states[:, 0::3], states[:, 2::3])
    assert torch.equal(buf.agent_inputs["agent_index"], torch.arange(9).remainder(3).expand(40, 9))


def test_a_truncation_value_reads_the_global_state_at_the_agents_end():
    """At the env's end (t = episode_len) every agent still there is truncated and the env resets in the same
    step: its truncation value must read the state of the episode that ended (t / episode_len = 1), not the new
    one's (0)."""
    envs = make_multiagent_vector_env(STATE_ENV, 2, {"episode_len": 12}, with_state=True)
    torch.manual_seed(0)
    cfg = PolicyConfig(hidden_size=16, central_critic=True)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg,
                                  agents=envs.agent_names, state_space=envs.state_space)
    collector = MultiAgentCollector(envs, 20)
    collector.start(policy, torch.device("cpu"), 0, 0)
    seen = []
    value = policy.value

    def spy(obs, state, episode_start, agent_inputs=None):
        seen.append(agent_inputs["global_state"][:, 0].clone())
        return value(obs, state, episode_start, agent_inputs)

    policy.value = spy
    buf = collector.collect()
    at_end = buf.truncated[11] > 0  # step 11 takes t to 12: the env's end
    assert at_end.sum() >= 2
    times = torch.cat(seen[:-1])  # the last call is the bootstrap value after the rollout
    assert (times == 1.0).sum() >= int(at_end.sum())
    assert buf.agent_inputs["global_state"][12, 0, 0] == 0.0  # the next step reads the new episode's state


def test_the_parallel_critic_thread_gives_the_joint_gradients_bitwise():
    policy, _, buf = collect(rollouts=1)
    batch, _ = batch_of(buf)
    mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
    grads = []
    for parallel in (None, ParallelCritic()):
        policy.zero_grad(set_to_none=True)
        loss_and_backward(policy, mb, PPOConfig(), 0.2, parallel)
        grads.append([p.grad.clone() for p in policy.parameters()])
        if parallel is not None:
            parallel.close()
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_flags_off_build_the_same_network_whatever_the_env_offers():
    """Agents and a state space passed with both flags off change nothing: same modules, same weights."""
    envs = make_multiagent_vector_env(STATE_ENV, 1, with_state=True)
    cfg = PolicyConfig(hidden_size=16)
    torch.manual_seed(4)
    plain = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg)
    torch.manual_seed(4)
    offered = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg,
                                   agents=envs.agent_names, state_space=envs.state_space)
    a, b = plain.state_dict(), offered.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert offered.agents == () and offered.state_space is None and not offered.central_critic


# ----------------------------------------------------------------------------- training runs
SMALL = {"env_id": STATE_ENV, "total_steps": 1536, "num_envs": 2, "num_steps": 64, "bptt_len": 8,
         "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False, "checkpoint_every": 512,
         "seed": 3, "hidden_size": 16, "normalize_obs": True, "normalize_reward": True, "central_critic": True,
         "agent_index_input": True}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir, resume=False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


def test_crash_and_resume_with_a_central_critic_is_bitwise_exact(tmp_path):
    straight = make(tmp_path / "straight")
    straight.train()

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 1280:
            raise Crash

    with pytest.raises(Crash):
        make(tmp_path / "run").train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)
        resumed = make(tmp_path / "run", resume=True)
    assert resumed.resume_note is None and resumed.global_step == 1024
    alive = resumed.collector.alive
    assert 0 < alive.sum() < alive.numel()  # agents mid-episode, some absent
    resumed.train()
    for key, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[key]), key
    assert any(key.startswith("critic_preprocess") for key in straight.policy.state_dict())  # its normaliser
    assert (straight.global_step, straight.episodes, straight.agent_steps) == \
        (resumed.global_step, resumed.episodes, resumed.agent_steps)
    assert list(straight.recent_returns) == list(resumed.recent_returns)
    assert torch.equal(straight.collector.state, resumed.collector.state)


FAST = ["--total-steps", "256", "--num-envs", "2", "--num-steps", "64", "--hidden-size", "16", "--bptt-len", "8",
        "--update-epochs", "1", "--eval-episodes", "0", "--progress", "false"]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--env-id", "toy_multiagent_envs:make_respawn", "--central-critic"], "has no state() and state_space"),
    (["--env-id", "mnemo/TMaze-v0", "--central-critic"], "--central-critic needs a multi-agent env"),
    (["--env-id", "mnemo/TMaze-v0", "--agent-index-input"], "--agent-index-input needs a multi-agent env"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, flags, expected):
    run = tmp_path / "run"
    code = train.main(["--run-dir", str(run), *FAST, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expected in err[0], err
    assert not run.exists()


def test_global_states_of_the_built_in_games_lie_in_their_state_space():
    for env_id in ("mnemo/FogTeam-v0", "mnemo/StormHarvest-v0"):
        envs = make_multiagent_vector_env(env_id, 2, with_state=True)
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(150):  # past the default episode ends: resets inside
            assert all(envs.state_space.contains(s) for s in envs.global_state), env_id
            _, _, _, _, _, infos = envs.step(rng.integers(0, envs.single_action_space.n, envs.num_envs))
            assert all(envs.state_space.contains(s) for s in infos["final_state"]), env_id
        envs.close()


# ----------------------------------------------------------------------------- deployment
@pytest.fixture(scope="module")
def fog(tmp_path_factory):
    """A tiny FogTeam run with both flags, exported to ONNX."""
    pytest.importorskip("onnxruntime")
    from agents.deploy import export_cli

    root = tmp_path_factory.mktemp("fog_central")
    run = root / "run"
    assert train.main(["--env-id", "mnemo/FogTeam-v0", "--run-dir", str(run), "--env-kwargs",
                       json.dumps({"max_steps": 8}), "--central-critic", "--agent-index-input",
                       "--total-steps", "128", "--num-envs", "2", "--num-steps", "32", "--hidden-size", "16",
                       "--eval-episodes", "0", "--progress", "false"]) == 0
    assert export_cli.main([str(run), "--out", str(root / "policy.onnx")]) == 0
    return run, root / "policy.onnx"


def test_the_export_is_actor_only(fog):
    from agents.deploy.export import load_onnx_metadata
    from agents.run.checkpoint import load_policy

    run, onnx_path = fog
    policy, _ = load_policy(run)
    assert policy.central_critic and policy.state_shape == (4, 1, 16)
    meta = load_onnx_metadata(onnx_path)
    assert meta["central_critic"] and meta["state_inputs"] == ["h", "c"] and meta["state_shape"] == [2, 1, 16]
    assert "value" not in [o["name"] for o in meta["outputs"]]
    index = [i for i in meta["inputs"] if i["role"] == "agent_index"]
    assert index == [{"name": "agent_index", "role": "agent_index", "shape": [None], "dtype": "int64",
                      "agents": ["agent_0", "agent_1"]}]


def test_runners_follow_the_trained_actor_by_agent_name(fog):
    """PolicyRunner and OnnxRunner drive agents by name (each name's slot one-hot) and play exactly the episodes
    of training's evaluation path (``policy.step`` over rows); values are NaN (no env.state() in a game)."""
    from test_multiagent_deploy import _both_runners

    from agents.run.checkpoint import load_policy
    from agents.train.evaluation import evaluate_multiagent

    run, onnx_path = fog
    policy, config = load_policy(run)
    played = _both_runners(run, onnx_path, config.env.env_id, config.env.env_kwargs)
    assert all(np.isnan(values).all() for _, _, values, _ in played["steps"])
    expected = evaluate_multiagent(policy, config.env.env_id, 3, seed=5,  # the 3 env episodes the runners play
                                   env_kwargs=config.env.env_kwargs, num_envs=1)
    assert played["returns"] == pytest.approx(expected.tolist(), abs=1e-9)


def test_the_agent_index_reaches_the_actor_and_names_are_checked(fog):
    from agents import PolicyRunner
    from agents.deploy.agent_ids import UnknownAgentError
    from agents.deploy.onnx_runner import OnnxRunner
    from agents.rollout.multiagent_env import make_parallel_env

    run, onnx_path = fog
    env = make_parallel_env("mnemo/FogTeam-v0", {"max_steps": 8})
    obs = env.reset(seed=0)[0]["agent_0"]
    env.close()
    for runner in (PolicyRunner.load(run), OnnxRunner(onnx_path)):
        a0 = runner.act(obs, agent_ids="agent_0", return_info=True)[1].logprob
        runner.remove()
        a1 = runner.act(obs, agent_ids="agent_1", return_info=True)[1].logprob
        assert a0 != a1  # same observation and state, another slot: another distribution
        with pytest.raises(UnknownAgentError, match="not an agent of this run"):
            runner.act(obs, agent_ids="agent_9")


def test_watch_plays_the_trained_actor_with_each_agents_slot(fog):
    """mnemo watch (with the inspector on agent_1) needs no env.state(); its agent episodes are evaluation's."""
    from test_multiagent_watch import QUIET, ListSink

    from agents.run.checkpoint import load_policy
    from agents.train.evaluation import evaluate_multiagent
    from agents.watch.viewer import watch

    run, _ = fog
    result = watch(run, episodes=2, inspect=True, agent="agent_1", sink=ListSink(), seed=4, **QUIET)
    policy, config = load_policy(run)
    expected = evaluate_multiagent(policy, config.env.env_id, 2, seed=4,  # the 2 env episodes watched
                                   env_kwargs=config.env.env_kwargs, num_envs=1)
    assert result.agent_returns == pytest.approx(expected.tolist(), abs=1e-9)
