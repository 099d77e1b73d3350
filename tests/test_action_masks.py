"""Action masks (docs/action_masks.md): an env that gives ``observation["action_mask"]`` never gets an illegal
action, from training, evaluation, ``PolicyRunner``, ``OnnxRunner`` or the exported graph.

- Property test (Hypothesis): random masks (at least one legal action per dimension) and random logits, for
  Discrete and MultiDiscrete: no illegal action is sampled (fresh noise, or saturated correlated noise) or chosen
  greedily, on the torch head and on the numpy side of an export.
- Detection and refusals: the mask's entry and length, the action space, a step without a legal action.
- Deploy: the runners take the env's observation unchanged; torch and ONNX agree (greedy actions, log-probs).
- The toy envs raise on an illegal action, so every run below would fail on one.
The rollout invariant with masks is in tests/test_rollout_invariant.py and tests/test_multiagent_rollout.py.
"""

from __future__ import annotations

import itertools
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import toy_envs
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import PolicyConfig, TrainConfig
from agents.deploy.numpy_actions import mask_logits, numpy_actions
from agents.model.action_heads import MASKED_LOGIT, make_action_head
from agents.model.policy import RecurrentActorCritic
from agents.rollout.collector import VectorCollector
from agents.spaces import (
    ActionMaskError,
    action_mask_start,
    illegal_action_rows,
    policy_observation_space,
    rows_without_legal_action,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- property test
@st.composite
def masked_heads(draw):
    """(action space, sizes, masks (B, sum(sizes)) with a legal action per dimension, logits (B, sum(sizes)))."""
    if draw(st.booleans()):
        n = draw(st.integers(1, 8))
        space, sizes = spaces.Discrete(n, start=draw(st.integers(-2, 2))), (n,)
    else:
        sizes = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
        space = spaces.MultiDiscrete(list(sizes))
    batch = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    masks = toy_envs.random_mask(rng, list(sizes))[None]
    masks = np.concatenate([masks, *[toy_envs.random_mask(rng, list(sizes))[None] for _ in range(batch - 1)]])
    # Logits of any scale, illegal ones often the largest: the mask, not the network, must keep them out.
    scale = draw(st.sampled_from([0.01, 1.0, 30.0, 1e4]))
    logits = rng.standard_normal(masks.shape).astype(np.float32) * scale
    logits[masks == 0] += draw(st.sampled_from([0.0, 50.0, 1e6]))
    return space, sizes, masks, logits


def _legal(masks: np.ndarray, actions: np.ndarray, sizes: tuple[int, ...], start: int = 0) -> bool:
    return not illegal_action_rows(masks, actions, sizes, start).any()


@FAST
@given(case=masked_heads(), seed=st.integers(0, 2**31))
def test_no_illegal_action_is_ever_sampled_or_chosen_greedily(case, seed):
    space, sizes, masks, logits = case
    head = make_action_head(space, 4)
    out, legal = torch.from_numpy(logits), torch.from_numpy(masks != 0)
    dist = head.distribution(out, legal)
    gen = torch.Generator().manual_seed(seed)
    start = action_mask_start(space)
    draws = [dist.sample(gen) for _ in range(20)]
    # Correlated noise turned into uniforms: a large normal saturates Phi to exactly 1 (+inf Gumbel noise).
    normal = torch.randn(dist.noise_shape, generator=gen) * 10.0
    draws.append(dist.sample(normal=normal))
    draws.append(dist.sample(normal=torch.full(dist.noise_shape, 40.0)))
    for raw in [*draws, dist.mode(), head.greedy(out, legal)]:
        env_action = head.to_env(head.shape_actions(raw))
        assert _legal(masks, env_action, sizes, start), (raw, masks)
        assert torch.isfinite(dist.log_prob(raw)).all()
    assert torch.isfinite(dist.entropy()).all()
    # Illegal actions have probability exactly 0; the legal ones sum to 1 per dimension.
    probs = np.exp(head.export_reference(dist))
    assert (probs[masks == 0] == 0).all()
    for a, b in itertools.pairwise(np.cumsum((0, *sizes))):
        np.testing.assert_allclose(probs[:, a:b].sum(1), 1.0, rtol=1e-5)
    # The numpy side of an export (OnnxRunner): the graph's masked logits, masked again on the host.
    kind = numpy_actions(head.kind)
    meta = {"action_start": start, "nvec": list(sizes),
            "outputs": [{"name": "action", "shape": [None, *head.action_shape]}]}
    masked = mask_logits(logits, masks)
    rng = np.random.default_rng(seed)
    for raw in [kind.greedy(masked, meta), *[kind.sample(masked, meta, rng) for _ in range(20)]]:
        assert _legal(masks, kind.to_env(raw, meta), sizes, start)
        assert np.isfinite(kind.log_prob(masked, raw, meta)).all()


def test_masked_log_probs_are_the_legal_softmax():
    """A legal action's log-prob is log_softmax over the legal logits alone (exact, not an approximation)."""
    head = make_action_head(spaces.Discrete(4), 4)
    logits = torch.tensor([[0.3, 2.0, -1.0, 0.5]])
    legal = torch.tensor([[True, False, True, True]])
    dist = head.distribution(logits, legal)
    expected = torch.log_softmax(logits[:, [0, 2, 3]], -1)
    torch.testing.assert_close(dist.log_prob(torch.tensor([0])), expected[:, 0], rtol=0, atol=1e-7)
    torch.testing.assert_close(dist.log_prob(torch.tensor([3])), expected[:, 2], rtol=0, atol=1e-7)
    assert float(dist.log_prob(torch.tensor([1]))) < MASKED_LOGIT / 2


# --------------------------------------------------------------------------- detection and refusals
def test_pettingzoos_layout_gives_the_policy_the_observation_entry_itself():
    env = toy_envs.MaskedCueEnv()
    assert policy_observation_space(env.observation_space) == env.observation_space["observation"]
    policy = RecurrentActorCritic(env.observation_space, env.action_space, PolicyConfig(hidden_size=8))
    assert policy.masked and policy.action_mask_sizes == (4,)
    assert policy.preprocess.out_features == 5  # the Box(5,) alone: the mask is not an input of the encoder
    other = toy_envs.BoundaryEnv(masked=True)
    assert set(policy_observation_space(other.observation_space).spaces) == {"x", "t"}
    plain = toy_envs.BoundaryEnv()
    assert not RecurrentActorCritic(plain.observation_space, plain.action_space, PolicyConfig(hidden_size=8)).masked


@pytest.mark.parametrize(("mask_space", "action_space", "says"), [
    (spaces.MultiBinary(3), spaces.Discrete(4), "length 4"),
    (spaces.MultiBinary(4), spaces.MultiDiscrete([2, 3]), "length 5"),
    (spaces.MultiBinary((2, 2)), spaces.Discrete(4), "flat mask"),
    (spaces.MultiBinary(2), spaces.Box(-1, 1, (2,), np.float32), "not Discrete or MultiDiscrete"),
    (spaces.Discrete(3), spaces.Discrete(3), "MultiBinary or Box"),
])
def test_a_mask_that_does_not_fit_is_refused_in_one_line(mask_space, action_space, says):
    obs_space = spaces.Dict({"observation": spaces.Box(-1, 1, (2,), np.float32), "action_mask": mask_space})
    with pytest.raises(ActionMaskError, match=says) as info:
        RecurrentActorCritic(obs_space, action_space, PolicyConfig(hidden_size=8))
    assert "\n" not in str(info.value)


def test_an_observation_of_only_a_mask_is_refused():
    with pytest.raises(ActionMaskError, match="holds only 'action_mask'"):
        RecurrentActorCritic(spaces.Dict({"action_mask": spaces.MultiBinary(3)}), spaces.Discrete(3),
                             PolicyConfig(hidden_size=8))


class EmptyMaskEnv(toy_envs.MaskedCueEnv):
    """Gives a mask with no legal action on its second step."""

    def _obs(self):
        obs = super()._obs()
        if self.t == 1:
            obs["action_mask"] = np.zeros(self.n, dtype=np.int8)
            self.mask = obs["action_mask"]
        return obs


def test_a_step_without_a_legal_action_is_refused():
    envs = gym.vector.SyncVectorEnv([EmptyMaskEnv for _ in range(2)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, PolicyConfig(hidden_size=8))
    collector = VectorCollector(envs, 8)
    collector.start(policy, torch.device("cpu"), 0, 0)
    with pytest.raises(ActionMaskError, match="env 0 gave an action mask with no legal action"):
        collector.collect()
    sizes = (2, 3)
    assert rows_without_legal_action(np.array([[1, 0, 0, 0, 1], [1, 1, 0, 0, 0]]), sizes).tolist() == [False, True]
    # No row to check (every agent of a policy absent this step): nothing to refuse or count.
    empty = np.zeros((0, 5), dtype=np.int8)
    assert rows_without_legal_action(empty, sizes).shape == (0,)
    assert illegal_action_rows(empty, np.zeros((0, 2), dtype=np.int64), sizes).shape == (0,)


# --------------------------------------------------------------------------- training, evaluation, deploy
def _train(tmp_path, env_id: str, env_import: str, steps: int = 768, **extra) -> dict:
    from agents.train.trainer import Trainer

    config = TrainConfig().with_overrides({
        "env_id": env_id, "env_import": (env_import,), "hidden_size": 16, "num_envs": 4, "num_steps": 32,
        "total_steps": steps, "eval_episodes": 6, "eval_mode": "both", "progress": False, "device": "cpu",
        "run_dir": str(tmp_path / "run"), **extra})
    return Trainer(config.validate()).train()


def test_training_and_evaluation_count_no_illegal_action(tmp_path):
    summary = _train(tmp_path, "tests/MaskedCue-v0", "toy_envs")
    counts = summary["action_masks"]
    assert counts["training"] == {"checked": 768, "illegal": 0}
    assert counts["evaluation"]["illegal"] == 0 and counts["evaluation"]["checked"] >= 2 * 6 * 5
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["action_masks"] == counts


def test_unmasked_runs_report_no_mask_counts(tmp_path):
    summary = _train(tmp_path, "tests/Boundary-v0", "toy_envs", steps=256, eval_episodes=2)
    assert "action_masks" not in summary


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _onnx_available(), reason="needs onnx and onnxruntime")
@pytest.mark.parametrize("action_kind", ["discrete", "multidiscrete"])
def test_runners_and_the_export_act_legally_and_agree(tmp_path, action_kind):
    """The runners take the env's observation as it comes; ``action_mask`` is an input of the graph; greedy
    actions are equal and log-probs agree (1e-5) between PolicyRunner and OnnxRunner; every action is legal."""
    from agents.deploy.export import export_onnx
    from agents.deploy.export_check import compare_with_torch, onnx_step_fn
    from agents.deploy.onnx_runner import OnnxRunner
    from agents.deploy.runner import PolicyRunner

    env = toy_envs.BoundaryEnv(action_kind, masked=True)
    torch.manual_seed(0)
    policy = RecurrentActorCritic(env.observation_space, env.action_space, PolicyConfig(hidden_size=16)).eval()
    with torch.no_grad():  # large logits, so that a missing mask would show
        policy.action_head.linear.weight.mul_(300.0)
    path = tmp_path / "masked.onnx"
    meta = export_onnx(policy, path)
    assert {"name": "action_mask", "role": "action_mask", "path": ["action_mask"], "shape": [None, sum(env.sizes)],
            "dtype": "int8"} in meta["inputs"]
    assert meta["action_mask"] == {"input": "action_mask", "sizes": env.sizes}
    check = compare_with_torch(policy, onnx_step_fn(path))
    assert check["actions_equal"] and check["max_abs_diff"] < 1e-4
    torch_runner, onnx_runner = PolicyRunner(policy, seed=0), OnnxRunner(path, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(150):
        greedy, info = torch_runner.act(obs, return_info=True)
        onnx_greedy, onnx_info = onnx_runner.act(obs, return_info=True)
        np.testing.assert_array_equal(greedy, onnx_greedy)
        assert abs(info.logprob - onnx_info.logprob) < 1e-4 and np.isfinite(info.logprob)
        for sampled in (torch_runner.act(obs, deterministic=False, agent_ids="s"),
                        onnx_runner.act(obs, deterministic=False, agent_ids="s")):
            toy_envs.check_legal(obs["action_mask"], env.sizes, sampled)
        obs, _, terminated, truncated, _ = env.step(greedy)  # the env raises on an illegal action
        if terminated or truncated:
            obs, _ = env.reset()
            torch_runner.reset()
            onnx_runner.reset()


@pytest.mark.skipif(not _onnx_available(), reason="needs onnx and onnxruntime")
def test_multiagent_masked_run_saves_loads_and_exports(tmp_path):
    """A PettingZoo-layout masked env end to end: training and evaluation count 0 illegal actions, the checkpoint
    records the mask, and a batch of agents acts legally through the loaded policy's runner and its export."""
    from toy_multiagent_envs import MaskedRespawnEnv

    from agents.deploy.export import export_onnx
    from agents.deploy.onnx_runner import OnnxRunner
    from agents.deploy.runner import PolicyRunner
    from agents.run.checkpoint import load_policy

    summary = _train(tmp_path, "toy_multiagent_envs:make_masked_respawn", "toy_multiagent_envs", steps=384,
                     num_envs=2, eval_episodes=2)
    assert summary["action_masks"]["training"]["illegal"] == 0
    assert summary["action_masks"]["evaluation"]["illegal"] == 0 and summary["action_masks"]["evaluation"]["checked"]
    policy, _ = load_policy(tmp_path / "run")
    assert policy.masked and policy.action_mask_sizes == (3,)
    export_onnx(policy, tmp_path / "ma.onnx")
    runners = [PolicyRunner(policy, deterministic=False, seed=1), OnnxRunner(tmp_path / "ma.onnx",
                                                                             deterministic=False, seed=1)]
    env = MaskedRespawnEnv()
    obs, _ = env.reset(seed=3)
    for t in range(60):
        ids = list(obs)
        batch = [obs[a] for a in ids]
        for runner in runners:
            actions = runner.act(batch, agent_ids=ids)
            for agent, action in zip(ids, actions, strict=True):
                toy_envs.check_legal(obs[agent]["action_mask"], [3], action)
        obs, *_ = env.step(dict(zip(ids, actions, strict=True)))
        if not env.agents:
            obs, _ = env.reset(seed=4 + t)
            for runner in runners:
                runner.remove()


# --------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_lstm_learns_a_memory_task_whose_legal_actions_change_every_step(tmp_path):
    """MaskedCue: the legal set is random every step, and on the last step only the cue (shown on the first step)
    and one other action are legal. Memory scores 1, memoryless play 0.5 (the mask alone halves the odds). With
    --core none the same budget stays near 0.5 (measured: 0.46 over 100 episodes at seed 1). Seed 1 scores 1.0 at
    15k, 20k and 30k steps."""
    from agents.train import cli as train

    run = tmp_path / "run"
    assert train.main(["--env-id", "tests/MaskedCue-v0", "--env-import", "toy_envs", "--total-steps", "20000",
                       "--seed", "1", "--no-progress", "--eval-episodes", "40", "--run-dir", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_return_mean"] >= 0.9
    training = summary["action_masks"]["training"]
    assert training["illegal"] == 0 and training["checked"] >= 20000
    assert summary["action_masks"]["evaluation"]["illegal"] == 0


def test_a_mask_given_in_info_works_once_wrapped(tmp_path):
    """InfoActionMask (the explicit opt-in for info["action_mask"]) makes PettingZoo's layout: training counts 0
    illegal actions (the env raises on one), and an env that forgets the mask is refused in one line."""
    from agents.rollout.info_mask import InfoActionMask

    summary = _train(tmp_path, "tests/InfoMaskCue-v0", "toy_envs", steps=256, eval_episodes=2)
    assert summary["action_masks"]["training"] == {"checked": 256, "illegal": 0}
    with pytest.raises(ActionMaskError, match="gave no info"):
        InfoActionMask(toy_envs.BoundaryEnv()).reset(seed=0)


def test_previous_inputs_keep_the_mask_where_the_policy_finds_it(tmp_path):
    """--prev-action-reward wraps the observation; a masked env's mask stays at the top level, so the run is
    still masked and acts legally."""
    summary = _train(tmp_path, "tests/MaskedCue-v0", "toy_envs", steps=256, eval_episodes=2, prev_action_reward=True)
    assert summary["action_masks"]["training"] == {"checked": 256, "illegal": 0}
    assert summary["action_masks"]["evaluation"]["illegal"] == 0


def test_the_inspector_reads_a_masked_step_with_illegal_actions_at_probability_zero():
    """watch --inspect: the probe reads a masked policy's step (the encoder rows without the mask); the action
    rows are the masked distribution's, so an illegal action shows probability 0."""
    from agents.watch.inspector import MemoryProbe

    env = toy_envs.MaskedCueEnv()
    policy = RecurrentActorCritic(env.observation_space, env.action_space, PolicyConfig(hidden_size=8)).eval()
    probe = MemoryProbe(policy)
    obs, _ = env.reset(seed=0)
    obs_t = {k: torch.as_tensor(v)[None] for k, v in obs.items()}
    state, start = policy.initial_state(1), torch.ones(1)
    with torch.no_grad():
        out = policy.step(obs_t, state, start)
    readout = probe.read(obs_t, state, start, out.action, out.state)
    assert readout.obs.shape == (5,)
    assert (readout.action_values[obs["action_mask"] == 0] == 0).all()
    assert readout.action_values.sum() == pytest.approx(1.0, abs=1e-5)


class WrongLengthMaskEnv(toy_envs.MaskedCueEnv):
    """Declares a mask one entry short of its Discrete(4) action space."""

    def __init__(self):
        super().__init__()
        self.observation_space = spaces.Dict({"observation": self.observation_space["observation"],
                                              "action_mask": spaces.MultiBinary(3)})


if "tests/WrongLengthMask-v0" not in gym.registry:
    gym.register("tests/WrongLengthMask-v0", entry_point=WrongLengthMaskEnv)
    gym.register("tests/EmptyMask-v0", entry_point=EmptyMaskEnv)


@pytest.mark.parametrize(("env_id", "says"), [("tests/WrongLengthMask-v0", "needs a flat mask of length 4"),
                                              ("tests/EmptyMask-v0", "no legal action")])
def test_the_command_line_refuses_a_bad_mask_with_exit_2(tmp_path, capsys, env_id, says):
    from agents.train import cli as train

    code = train.main(["--env-id", env_id, "--env-import", "test_action_masks", "--total-steps", "256",
                       "--num-envs", "2", "--num-steps", "32", "--no-progress", "--eval-episodes", "0",
                       "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and says in err[-1] and err[-1].startswith("error: ")


def test_named_policies_act_under_their_agents_masks(tmp_path):
    """--policy-map: each policy's rows carry their agents' masks (MultiPolicyCollector, evaluation by policy)."""
    summary = _train(tmp_path, "toy_multiagent_envs:make_masked_respawn", "toy_multiagent_envs", steps=256,
                     num_envs=2, eval_episodes=2, policy_map="a0=first,a1=rest,a2=rest")
    assert summary["action_masks"]["training"]["illegal"] == 0 and summary["action_masks"]["training"]["checked"]
    assert summary["action_masks"]["evaluation"]["illegal"] == 0 and summary["action_masks"]["evaluation"]["checked"]


def test_self_play_opponents_act_under_their_agents_masks(tmp_path):
    """--self-play: the pool's snapshots act on the opponent rows under those agents' masks (the toy env raises on
    an illegal action), and the count covers every live row, the opponents' included."""
    summary = _train(tmp_path, "toy_multiagent_envs:make_masked_respawn", "toy_multiagent_envs", steps=512,
                     num_envs=2, eval_episodes=2, self_play=True, sides="a0=first,*=rest", snapshot_every=128,
                     swap_every=128)
    assert summary["self_play"]["pool"], summary["self_play"]
    assert summary["action_masks"]["training"]["illegal"] == 0
    # Every live row is checked, learner or opponent: more checks than the learner's agent steps.
    assert summary["action_masks"]["training"]["checked"] > summary["agent_steps"]
