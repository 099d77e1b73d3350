"""Named policies in one multi-agent run (``--policy-map``): the mapping's refusals, the rows each policy owns,
the rollout invariant per policy, isolation between policies, exact resume, the summary and curves by name, and
learning. With ``--central-critic`` / ``--agent-index-input``: tests/test_policy_map_mappo.py.

Toy env: tests/toy_multiagent_envs.py ``RolesEnv`` (a hunter with Box(3,) / Discrete(3), two prey with
Box(2,) / Discrete(2) that die and come back). Bounds: the invariant to 1e-5; everything else bitwise.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from PIL import Image
from registry_cases import core_names, core_settings

pytest.importorskip("pettingzoo")

from agents.config import PolicyConfig, PPOConfig, TrainConfig
from agents.deploy import export_cli
from agents.deploy.export import load_onnx_metadata
from agents.deploy.runner import PolicyRunner
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.multiagent_collector import MultiAgentCollector, MultiPolicyCollector
from agents.rollout.multiagent_env import make_multiagent_vector_env
from agents.run.checkpoint import CheckpointError, load_policies, load_policy
from agents.run.run_log import merge_policy_settings
from agents.train import cli as train
from agents.train.evaluation import evaluate_policies
from agents.train.ppo_loss import make_minibatch, ppo_loss
from agents.train.trainer import ResumeWarning, Trainer
from agents.watch import multiagent_viewer
from agents.watch.viewer import FrameSink, watch

ROLES = "toy_multiagent_envs:make_roles"
RESPAWN = "toy_multiagent_envs:make_respawn"
ROLE_MAP = "hunter_*=hunter,prey_*=prey"
FAST = ["--total-steps", "192", "--num-envs", "2", "--num-steps", "32", "--hidden-size", "8", "--bptt-len", "8",
        "--update-epochs", "1", "--eval-episodes", "4", "--progress", "false"]


# ------------------------------------------------------------------ the mapping
@pytest.mark.parametrize(("env_id", "policy_map", "expected"), [
    (ROLES, "hunter_*", "entry 'hunter_*' is not PATTERN=NAME"),
    (ROLES, "hunter_*=hunter,prey_*=pr*y", "policy name 'pr*y' must be letters"),
    (ROLES, "hunter_*=hunter", "no --policy-map pattern matches agent 'prey_0'"),
    (ROLES, "hunter_*=hunter,prey_*=prey,wolf_*=wolf", "gives policy 'wolf' no agent"),
    (ROLES, "*=all", "agents 'hunter_0' and 'prey_0' share policy 'all' but have different observation spaces"),
    (ROLES, None, "share policy 'policy' but have different observation spaces; give them the same spaces"),
    ("mnemo/TMaze-v0", ROLE_MAP, "mnemo/TMaze-v0 is a single-agent env; drop --policy-map"),
])
def test_bad_policy_maps_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, env_id, policy_map, expected):
    run = tmp_path / "run"
    flags = [] if policy_map is None else ["--policy-map", policy_map]
    code = train.main(["--env-id", env_id, "--run-dir", str(run), *FAST, *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and expected in err[0], err
    assert not run.exists()


def test_a_central_critic_with_named_policies_needs_the_envs_global_state(tmp_path, capsys):
    """--central-critic with --policy-map (tests/test_policy_map_mappo.py) on an env without state(): refused."""
    run = tmp_path / "run"
    code = train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), *FAST, "--central-critic"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no state() and state_space" in err[0], err
    assert not run.exists()


def test_policies_whose_states_differ_in_shape_are_refused(tmp_path, capsys):
    """A stack core without an encoder MLP keeps raw observations: 3 values for the hunter, 2 for the prey."""
    run = tmp_path / "run"
    code = train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), *FAST, "--core", "stack",
                       "--encoder-sizes", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "recurrent states differ in shape" in err[0], err
    assert "give --encoder-sizes" in err[0] and not run.exists()


def test_first_matching_pattern_wins_and_rows_are_blocks_per_policy():
    envs = make_multiagent_vector_env(ROLES, 3, policy_map="prey_1=solo,prey_*=rest,*=hunter")
    try:
        assert [(b.name, b.agents, b.first_row, b.num_rows) for b in envs.policies] == [
            ("solo", ("prey_1",), 0, 3), ("rest", ("prey_0",), 3, 3), ("hunter", ("hunter_0",), 6, 3)]
    finally:
        envs.close()
    envs = make_multiagent_vector_env(ROLES, 3, policy_map=ROLE_MAP)
    try:
        hunter, prey = envs.policies
        assert (hunter.first_row, hunter.num_rows, prey.first_row, prey.num_rows) == (0, 3, 3, 6)
        # Row first_row + i * len(agents) + j is agents[j] of env i.
        assert envs.env_rows(1) == [1, 5, 6] and envs.env_rows(2) == [2, 7, 8]
        obs, spawn = envs.reset(seed=0)
        assert [o.shape for o in obs] == [(3, 3), (6, 2)] and spawn.all()
        assert envs.single_observation_space is None  # each policy has its own spaces
    finally:
        envs.close()


# ------------------------------------------------------------------ the rollout
def collect(core="lstm", layers=1, carry=False, num_steps=40, rollouts=2, env_kwargs=None, seed=0):
    envs = make_multiagent_vector_env(ROLES, 3, env_kwargs, policy_map=ROLE_MAP)
    torch.manual_seed(seed)
    cfg = PolicyConfig(hidden_size=16, carry_across_episodes=carry, normalize_obs=True, **core_settings(core, layers))
    policies = {b.name: RecurrentActorCritic(b.observation_space, b.action_space, cfg) for b in envs.policies}
    collector = MultiPolicyCollector(envs, num_steps)
    collector.start(policies, torch.device("cpu"), seed, seed)
    for _ in range(rollouts):  # later rollouts start from carried states, absent rows' states held
        rollouts_by_name = collector.collect()
    return policies, collector, rollouts_by_name


def sequences(buf):
    return make_sequences(buf.episode_starts.numpy(), 6, True, alive=buf.alive.numpy())


@pytest.mark.parametrize("core", core_names())
@pytest.mark.parametrize("carry", [False, True])
def test_invariant_holds_for_each_policy_with_deaths_and_spawns(core, carry):
    policies, _, rollouts = collect(core, carry=carry)
    prey = rollouts["prey"]
    assert prey.terminated.sum() > 0 and (prey.alive == 0).any() and (prey.episode_starts[1:] > 0).any()
    assert rollouts["hunter"].alive.all()  # the hunter never leaves
    for name, buf in rollouts.items():
        adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                               buf.bootstrap_value, 0.99, 0.95)
        batch = gather_sequences(buf, sequences(buf), adv * buf.alive, ret * buf.alive)
        policy = policies[name]
        with torch.no_grad():
            logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
            real = batch.mask.bool()
            assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5, name
            assert (value[real] - batch.values[real]).abs().max() < 1e-5, name
            mb = make_minibatch(batch, np.arange(batch.mask.shape[1]), batch.lengths.numpy())
            terms = ppo_loss(policy, mb, PPOConfig(), 0.2)
        assert abs(float(terms.approx_kl)) < 1e-6 and float(terms.clipfrac) == 0.0, name


def test_each_rollout_holds_its_own_rows_and_agents_episodes():
    _, collector, rollouts = collect(rollouts=1)
    hunter, prey = rollouts["hunter"], rollouts["prey"]
    assert hunter.actions.shape == (40, 3) and prey.actions.shape == (40, 6)
    assert hunter.obs.shape == (40, 3, 3) and prey.obs.shape == (40, 6, 2)
    assert int(hunter.actions.max()) == 2 and int(prey.actions.max()) <= 1  # each its own action space
    # The hunter lives whole env episodes of 12 steps; a prey's episode ends at its death.
    assert set(hunter.episode_lengths) == {12} and min(prey.episode_lengths) < 12
    assert collector.state.shape[2] == 9 and collector.alive.shape == (9,)


def test_set_weights_loads_other_weights_by_name_and_leaves_the_rest():
    policies, collector, _ = collect(rollouts=1)
    prey_before = {k: v.clone() for k, v in policies["prey"].state_dict().items()}
    other = RecurrentActorCritic(policies["hunter"].observation_space, policies["hunter"].action_space,
                                 policies["hunter"].config)
    collector.set_weights({"hunter": other.state_dict(), "prey": policies["prey"].state_dict()})
    for key, value in other.state_dict().items():
        assert torch.equal(collector.policies["hunter"].state_dict()[key], value), key
    for key, value in prey_before.items():
        assert torch.equal(collector.policies["prey"].state_dict()[key], value), key


# ------------------------------------------------------------------ training
SMALL = {"env_id": ROLES, "policy_map": ROLE_MAP, "total_steps": 1536, "num_envs": 2, "num_steps": 64,
         "bptt_len": 8, "num_minibatches": 2, "update_epochs": 2, "eval_episodes": 0, "progress": False,
         "checkpoint_every": 512, "seed": 3, "hidden_size": 16, "normalize_obs": True, "normalize_reward": True,
         "noise_correlation": 0.5}


class Crash(Exception):
    """Stands in for a process dying between two iterations."""


def make(run_dir: Path, resume: bool = False, **overrides) -> Trainer:
    config = TrainConfig().with_overrides({**SMALL, "run_dir": str(run_dir), **overrides}).validate()
    return Trainer(config, resume=resume)


def assert_same_learners(a: Trainer, b: Trainer) -> None:
    assert list(a.learners) == list(b.learners) == ["hunter", "prey"]
    for name in a.learners:
        la, lb = a.learners[name], b.learners[name]
        for key, value in la.policy.state_dict().items():
            assert torch.equal(value, lb.policy.state_dict()[key]), (name, key)
        opt_a, opt_b = la.optimizer.state_dict()["state"], lb.optimizer.state_dict()["state"]
        for index in opt_a:
            for key in opt_a[index]:
                assert torch.equal(opt_a[index][key], opt_b[index][key]), (name, index, key)
        for key, value in la.reward_scaler.state_dict().items():
            assert torch.equal(value, lb.reward_scaler.state_dict()[key]), (name, key)


def test_crash_and_resume_with_named_policies_mid_episode_is_bitwise_exact(tmp_path):
    straight = make(tmp_path / "straight")
    straight.train()
    run = tmp_path / "run"

    def crash(trainer: Trainer) -> None:
        if trainer.global_step == 1280:
            raise Crash

    with pytest.raises(Crash):
        make(run).train(crash)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # an exact resume warns about nothing
        resumed = make(run, resume=True)
    assert resumed.resume_note is None and resumed.global_step == 1024
    alive = resumed.collector.alive  # prey mid-episode: some alive, some absent
    assert 0 < alive.sum() < alive.numel()
    resumed.train()
    assert_same_learners(straight, resumed)
    assert (straight.global_step, straight.episodes, straight.agent_steps) == \
        (resumed.global_step, resumed.episodes, resumed.agent_steps)
    assert list(straight.recent_returns) == list(resumed.recent_returns)
    assert torch.equal(straight.collector.state, resumed.collector.state)
    for name, noise in straight.collector.noises.items():
        assert torch.equal(noise.last, resumed.collector.noises[name].last), name


def test_resume_with_another_policy_map_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), *FAST]) == 0
    capsys.readouterr()
    code = train.main(["--resume", str(run), "--policy-map", "hunter_*=h,prey_*=p", "--total-steps", "384"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Drop --policy-map to resume" in err[0], err


def test_one_policys_rows_never_change_another_policys_parameters(tmp_path):
    """The prey's rewards differ between the two runs; the hunter trains bitwise the same, the prey does not."""
    base = make(tmp_path / "a", total_steps=512, checkpoint_every=10_000)
    base.train()
    other = make(tmp_path / "b", total_steps=512, checkpoint_every=10_000, env_kwargs={"prey_reward": -3.0})
    other.train()
    hunter_a, hunter_b = base.learners["hunter"], other.learners["hunter"]
    for key, value in hunter_a.policy.state_dict().items():
        assert torch.equal(value, hunter_b.policy.state_dict()[key]), key
    prey_a, prey_b = base.learners["prey"].policy, other.learners["prey"].policy
    assert any(not torch.equal(v, prey_b.state_dict()[k]) for k, v in prey_a.state_dict().items())


def test_summary_and_curves_report_every_policy_by_name(tmp_path, capsys):
    from test_crash_resume import scalar_steps

    run = tmp_path / "run"
    assert train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), *FAST]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary["policies"]) == ["hunter", "prey"]
    # --eval-episodes 4 counts env episodes; every agent episode in them counts (2 prey, who die and respawn).
    counts = {name: summary["policies"][name]["eval_episodes"] for name in ("hunter", "prey")}
    assert counts["hunter"] >= 4 and counts["prey"] >= 8
    # The top level is the mean over every agent episode, as a single-agent run reads.
    greedy = {n: summary["policies"][n]["eval_return_mean"] for n in ("hunter", "prey")}
    assert summary["eval_episodes"] == counts["hunter"] + counts["prey"]
    assert summary["eval_return_mean"] == pytest.approx(sum(greedy[n] * counts[n] for n in counts)
                                                         / summary["eval_episodes"])
    assert summary["derived"]["policies"]["value"] == {"hunter": ["hunter_0"], "prey": ["prey_0", "prey_1"]}
    # Derived from each policy's own spaces (the hunter's Box(3,), the prey's Box(2,)): recorded per policy.
    encoder = summary["derived"]["obs_encoder"]
    assert encoder["value"] == {"hunter": "flat", "prey": "flat"} and "hunter: float32 (3,)" in encoder["why"]
    config = json.loads((run / "config.json").read_text())
    assert config["env"]["policy_map"] == ROLE_MAP
    per_policy = {name: scalar_steps(run, f"charts/episodic_return/{name}") for name in ("hunter", "prey")}
    assert len(scalar_steps(run, "charts/episodic_return")) == sum(len(v) for v in per_policy.values())
    assert all(per_policy.values())
    for name in ("hunter", "prey"):
        assert len(scalar_steps(run, f"losses/pg_loss/{name}")) == 3  # one per iteration


def test_settings_derived_differently_per_policy_are_recorded_per_policy():
    bptt = {"value": 8, "why": "x"}
    per_policy = {"hunter": {"normalize_obs": {"value": True, "why": "unbounded"}, "bptt_len": bptt},
                  "prey": {"normalize_obs": {"value": False, "why": "bounded"}, "bptt_len": dict(bptt)}}
    assert merge_policy_settings(per_policy) == {
        "normalize_obs": {"value": {"hunter": True, "prey": False}, "why": "hunter: unbounded; prey: bounded"},
        "bptt_len": {"value": 8, "why": "x"}}


def test_each_role_learns_its_own_action(tmp_path):
    """The hunter is paid for action 2 of 3, the prey for action 0 of 2: each policy learns its own."""
    trainer = make(tmp_path / "run", total_steps=3072, eval_episodes=8, noise_correlation=0.0)
    summary = trainer.train()
    hunter = summary["policies"]["hunter"]["eval_return_mean"]
    assert hunter == 12.0  # 12 steps, paid each step (random play: 4)
    obs = torch.tensor([[x, 0.5] for x in np.linspace(-1, 1, 9)], dtype=torch.float32)
    prey = trainer.learners["prey"].policy
    with torch.no_grad():
        out = prey.step(obs, prey.initial_state(9, "cpu"), torch.ones(9), deterministic=True)
    assert (out.action == 0).all()


# ------------------------------------------------------------------ using a trained run
@pytest.fixture(scope="module")
def roles_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("roles") / "run"
    assert train.main(["--env-id", ROLES, "--policy-map", ROLE_MAP, "--run-dir", str(run), *FAST]) == 0
    return run


def test_policies_load_and_export_by_name_and_a_missing_name_lists_them(roles_run, tmp_path, capsys):
    hunter, config = load_policy(roles_run, policy="hunter")
    prey, _ = load_policy(roles_run, policy="prey")
    assert config.env.policy_map == ROLE_MAP
    assert hunter.action_space == spaces.Discrete(3) and prey.observation_space.shape == (2,)
    for name in (None, "wolf"):
        with pytest.raises(CheckpointError, match=r"holds the policies \['hunter', 'prey'\].*--policy hunter"):
            load_policy(roles_run, policy=name)
    runner = PolicyRunner.load(roles_run, policy="prey")
    obs = np.array([[0.3, 0.1], [-0.7, 0.4]], dtype=np.float32)
    with torch.no_grad():
        expected = prey.step(torch.as_tensor(obs), prey.initial_state(2), torch.ones(2), deterministic=True).action
    assert runner.act(obs, agent_ids=["prey_0", "prey_1"]).tolist() == expected.tolist()
    capsys.readouterr()
    out = tmp_path / "hunter.onnx"
    assert export_cli.main([str(roles_run), "--policy", "hunter", "--out", str(out)]) == 0
    assert "policy 'hunter' for hunter_0" in capsys.readouterr().out
    assert load_onnx_metadata(out)["multiagent"] == {"env_id": ROLES, "agents": ["hunter_0"], "num_agents": 1,
                                                     "policy": "hunter"}
    assert export_cli.main([str(roles_run), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "['hunter', 'prey']" in err[0] and "--policy hunter" in err[0], err


def test_a_run_of_one_policy_refuses_a_policy_name(tmp_path):
    run = tmp_path / "run"
    assert train.main(["--env-id", RESPAWN, "--run-dir", str(run), *FAST]) == 0
    with pytest.raises(CheckpointError, match=r"holds one policy .* not 'hunter'; drop the policy name"):
        load_policy(run, policy="hunter")


def test_watch_records_every_agent_by_its_policy_and_inspects_the_chosen_agent(roles_run, tmp_path, monkeypatch):
    out = tmp_path / "roles.gif"
    result = watch(roles_run, episodes=2, record=out, inspect=True, agent="prey_1", seed=1, log=lambda line: None)
    assert result.lengths == [12, 12] and result.frames == sum(result.lengths) + 2
    with Image.open(out) as gif:
        assert gif.n_frames == result.frames
    assert sum(result.agent_returns) == pytest.approx(sum(result.returns))
    # Training's rules and each agent's own policy: the agent episodes that evaluation plays on one env copy.
    policies, _ = load_policies(roles_run)
    expected = evaluate_policies(policies, ROLES, 2, seed=1, policy_map=ROLE_MAP, num_envs=1)
    played = list(result.agent_returns)
    for returns in expected.values():
        for value in returns:
            played.remove(float(value))  # raises when watch did not play that episode
    # The panel follows prey_1 with the prey's core, and reads a step of it whenever prey_1 is alive.
    panels, make_panel = [], multiagent_viewer.MemoryPanel

    def spy(probe, **kwargs):
        panels.append(make_panel(probe, **kwargs))
        return panels[-1]

    monkeypatch.setattr(multiagent_viewer, "MemoryPanel", spy)
    watch(roles_run, episodes=1, sink=Discard(), inspect=True, agent="prey_1", log=lambda line: None)
    (panel,) = panels
    prey = policies["prey"]
    assert all(torch.equal(v, prey.state_dict()[k]) for k, v in panel.probe.policy.state_dict().items())
    assert panel.probe.policy.action_space == spaces.Discrete(2)


class Discard(FrameSink):
    def add(self, frame, title=""):
        return True


# ------------------------------------------------------------------ one named policy is the shared policy

def test_one_named_policy_collects_bitwise_as_the_shared_policy():
    """``--policy-map '*=all'`` runs the named-policy path over the same rows as the shared one: with the same
    network and seeds, every rollout tensor is the same (so the named path keeps the tested hidden-state rules)."""

    def run(named: bool):
        envs = make_multiagent_vector_env(RESPAWN, 3, policy_map="*=all" if named else None)
        torch.manual_seed(0)
        cfg = PolicyConfig(hidden_size=16, normalize_obs=True)
        block = envs.policies[0]
        policy = RecurrentActorCritic(block.observation_space, block.action_space, cfg)
        collector = (MultiPolicyCollector if named else MultiAgentCollector)(envs, 24, noise_correlation=0.5)
        collector.start({"all": policy} if named else policy, torch.device("cpu"), 1, 2)
        rollouts = [collector.collect() for _ in range(2)]
        return [r["all"] if named else r for r in rollouts]

    for shared, named in zip(run(False), run(True), strict=True):
        for field in ("obs", "actions", "logprobs", "values", "rewards", "terminated", "truncated",
                      "truncation_values", "episode_starts", "states", "bootstrap_value", "alive"):
            assert torch.equal(getattr(shared, field), getattr(named, field)), field
        assert shared.episode_returns == named.episode_returns


def test_one_named_policy_trains_and_evaluates_bitwise_as_the_shared_policy(tmp_path):
    overrides = {"env_id": RESPAWN, "total_steps": 512, "eval_episodes": 6, "noise_correlation": 0.0,
                 "checkpoint_every": 10_000}
    shared = make(tmp_path / "shared", policy_map=None, **overrides)
    shared_summary = shared.train()
    named = make(tmp_path / "named", policy_map="*=all", **overrides)
    named_summary = named.train()
    for key, value in shared.policy.state_dict().items():
        assert torch.equal(value, named.learners["all"].policy.state_dict()[key]), key
    for key in ("eval_return_mean", "eval_sampled_return_mean", "train_return_recent", "episodes", "agent_steps"):
        assert shared_summary[key] == named_summary[key], key
    assert named_summary["policies"]["all"]["eval_return_mean"] == named_summary["eval_return_mean"]
