"""PolicyRunner: same results as policy.step, one state per agent id, reset semantics, clear errors."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from registry_cases import core_names, core_settings

import envs  # noqa: F401  (registers mnemo/TMaze-v0)
from agents import PolicyRunner
from agents.config import PolicyConfig, TrainConfig
from agents.deploy.runner import SINGLE_AGENT_ID, ObservationError, UnknownAgentError
from agents.model.policy import RecurrentActorCritic
from agents.run.checkpoint import atomic_torch_save, build_payload
from agents.trees import obs_to_tensor, tree_stack

BOX = spaces.Box(0.0, 1.0, (4,), np.float32)
DISCRETE3 = spaces.Discrete(3)
ATOL = 1e-5


def make_policy(obs_space=BOX, act_space=DISCRETE3, seed=0, **kwargs) -> RecurrentActorCritic:
    torch.manual_seed(seed)
    kwargs.setdefault("hidden_size", 32)
    policy = RecurrentActorCritic(obs_space, act_space, PolicyConfig(**kwargs)).eval()
    # Larger head weights than the 0.01-gain init: decisive logits make greedy-action ties impossible.
    with torch.no_grad():
        policy.action_head.linear.weight.mul_(100.0)
    return policy


class Reference:
    """policy.step driven by hand: the training semantics the runner must reproduce."""

    def __init__(self, policy, batch=1, seed=None):
        self.policy, self.state = policy, policy.initial_state(batch)
        self.gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def step(self, obs_batch, episode_start, deterministic=True):
        with torch.inference_mode():
            out = self.policy.step(obs_to_tensor(obs_batch, "cpu"), self.state,
                                   torch.as_tensor(episode_start, dtype=torch.float32), deterministic, self.gen)
        self.state = out.state
        return self.policy.action_head.to_env(out.action), out


def random_obs(space, n, seed):
    space = copy.deepcopy(space)
    space.seed(seed)
    return [space.sample() for _ in range(n)]


RUNNER_CASES = [case for core in core_names()
                for case in (core_settings(core), {**core_settings(core, 2), "separate_critic": True})]


@pytest.mark.parametrize("kwargs", [*RUNNER_CASES, {"hidden_size": 64}])
def test_single_agent_matches_policy_step_across_episode_resets(kwargs):
    check_runner_matches_policy_step(make_policy(**kwargs))


def check_runner_matches_policy_step(policy: RecurrentActorCritic) -> None:
    """PolicyRunner's actions, values, log-probs and states equal policy.step's over 30 steps with resets."""
    runner = PolicyRunner(policy)
    ref = Reference(policy)
    episode_ends = {7, 8, 20}  # a one-step episode (7 -> 8) inside
    start = 1.0
    for t, obs in enumerate(random_obs(BOX, 30, seed=1)):
        action, info = runner.act(obs, return_info=True)
        ref_action, out = ref.step(obs[None], [start])
        assert action == ref_action[0]
        assert isinstance(action, np.integer)
        assert info.episode_start == bool(start)
        assert info.value == pytest.approx(out.value.item(), abs=ATOL)
        assert info.logprob == pytest.approx(out.logprob.item(), abs=ATOL)
        torch.testing.assert_close(runner.get_state(), ref.state[:, :, 0], atol=ATOL, rtol=0)
        start = float(t in episode_ends)
        if start:
            runner.reset()


def test_game_loop_on_tmaze_matches_policy_step():
    policy = make_policy()
    runner = PolicyRunner(policy)
    ref = Reference(policy)
    env = gym.make("mnemo/TMaze-v0", corridor_length=2, max_episode_steps=6)
    for episode in range(4):
        obs, _ = env.reset(seed=episode)
        runner.reset()
        start, done = 1.0, False
        while not done:
            action = runner.act(obs)
            assert action == ref.step(obs[None], [start])[0][0]
            obs, _, terminated, truncated, _ = env.step(action)
            start, done = 0.0, terminated or truncated
    env.close()


def test_carry_mode_keeps_memory_across_episodes_and_reset_gives_zero_state():
    policy = make_policy(carry_across_episodes=True)
    runner = PolicyRunner(policy)
    ref = Reference(policy)
    observations = random_obs(BOX, 12, seed=2)
    for t, obs in enumerate(observations):
        # In carry mode policy.step ignores episode_start: episodes at t = 0 and t = 5 share one memory.
        action, info = runner.act(obs, return_info=True)
        ref_action, out = ref.step(obs[None], [float(t in (0, 5))])
        assert action == ref_action[0]
        assert info.value == pytest.approx(out.value.item(), abs=ATOL)
    assert runner.get_state().abs().max() > 0
    runner.reset()  # a new series of episodes: a fresh zero state (documented)
    assert torch.count_nonzero(runner.get_state()) == 0
    fresh = Reference(policy)
    for obs in observations[:4]:
        assert runner.act(obs) == fresh.step(obs[None], [0.0])[0][0]


def test_agents_keep_separate_states_and_can_join_and_leave():
    policy = make_policy()
    runner = PolicyRunner(policy)
    refs = {}
    obs_stream = iter(random_obs(BOX, 400, seed=3))
    schedule = [[3, 7, 9]] * 3 + [[9, 3]] + [[3, 7, 9, 11]] * 2 + [[11, 7]] + [[3, 7, 9, 11]]
    for step, ids in enumerate(schedule):
        if step == 5:
            runner.remove([9])  # agent 9 leaves; when it comes back it starts fresh
            del refs[9]
        if step == 6:
            runner.reset(agent_ids=[7])
            refs[7] = Reference(policy)
        batch = np.stack([next(obs_stream) for _ in ids])
        actions, info = runner.act(batch, agent_ids=ids, return_info=True)
        assert actions.shape == (len(ids),)
        for i, agent in enumerate(ids):
            new = agent not in refs
            if new:
                refs[agent] = Reference(policy)
            ref_action, out = refs[agent].step(batch[i:i + 1], [0.0])
            assert actions[i] == ref_action[0]
            assert info.value[i] == pytest.approx(out.value.item(), abs=ATOL)
            torch.testing.assert_close(runner.get_state(agent), refs[agent].state[:, :, 0], atol=ATOL, rtol=0)
    assert runner.agent_ids == (3, 7, 11, 9)  # in the order they (re)joined


@pytest.mark.parametrize("kwargs", RUNNER_CASES)
def test_stepping_some_agents_leaves_the_others_state_untouched(kwargs):
    """A turn-based game: one agent (or a few) acts per step while the others wait. The waiting agents' states
    stay bit for bit as their own last act left them, and each agent's actions and states are those of
    policy.step over its own observations only."""
    policy = make_policy(**kwargs)
    runner = PolicyRunner(policy)
    ids = ["a", "b", "c", "d"]
    runner.act(np.stack(random_obs(BOX, 4, seed=6)), agent_ids=ids)  # all four join (slots 0-3)
    refs = {agent: Reference(policy) for agent in ids}
    for i, agent in enumerate(ids):
        refs[agent].step(np.stack(random_obs(BOX, 4, seed=6))[i:i + 1], [1.0])
    rng = np.random.default_rng(0)
    obs_stream = iter(random_obs(BOX, 200, seed=7))
    for _ in range(40):
        movers = [ids[k] for k in sorted(rng.choice(4, size=int(rng.integers(1, 3)), replace=False))]
        if rng.random() < 0.3:
            movers = movers[::-1]  # scattered slots: the gather / scatter path
        before = {agent: runner.get_state(agent).clone() for agent in ids}
        batch = np.stack([next(obs_stream) for _ in movers])
        actions = runner.act(batch, agent_ids=movers)
        for i, agent in enumerate(movers):
            assert actions[i] == refs[agent].step(batch[i:i + 1], [0.0])[0][0]
        for agent in ids:
            if agent in movers:
                torch.testing.assert_close(runner.get_state(agent), refs[agent].state[:, :, 0], atol=ATOL, rtol=0)
            else:
                assert torch.equal(runner.get_state(agent), before[agent]), agent


def test_episode_start_flags_and_numpy_or_string_ids():
    runner = PolicyRunner(make_policy())
    obs = np.stack(random_obs(BOX, 2, seed=4))
    _, info = runner.act(obs, agent_ids=np.array([5, 6]), return_info=True)
    assert info.episode_start.tolist() == [True, True]
    runner.reset(agent_ids=6)
    _, info = runner.act(obs, agent_ids=[5, 6], return_info=True)
    assert info.episode_start.tolist() == [False, True]
    _, info = runner.act(list(obs), agent_ids=["red", "blue"], return_info=True)  # a list of observations
    assert info.episode_start.tolist() == [True, True]
    assert runner.agent_ids == (5, 6, "red", "blue")


def test_many_agents_grow_the_storage_and_keep_states():
    policy = make_policy()
    runner = PolicyRunner(policy)
    ref = Reference(policy, batch=20)
    for t, batch in enumerate(np.stack(random_obs(BOX, 60, seed=5)).reshape(3, 20, 4)):
        ids = list(range(20)) if t != 1 else list(range(19, -1, -1))  # reversed ids: the scattered path
        order = np.array(ids)
        actions = runner.act(batch[order], agent_ids=ids)
        ref_actions, _ = ref.step(batch, np.full(20, float(t == 0)))
        np.testing.assert_array_equal(actions, ref_actions[order])
    torch.testing.assert_close(runner.get_state(13), ref.state[:, :, 13], atol=ATOL, rtol=0)


def test_sampling_is_seeded_and_matches_policy_step_with_the_same_generator():
    policy = make_policy(seed=1)
    with torch.no_grad():
        policy.action_head.linear.weight.div_(100.0)  # near-uniform: sampled actions vary
    observations = random_obs(BOX, 40, seed=6)
    runs = []
    for seed in (0, 0, 1):
        runner = PolicyRunner(policy, deterministic=False, seed=seed)
        runs.append([int(runner.act(o)) for o in observations])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    ref = Reference(policy, seed=0)
    expected = [int(ref.step(o[None], [float(t == 0)], deterministic=False)[0][0]) for t, o in enumerate(observations)]
    assert runs[0] == expected


@pytest.mark.parametrize("obs_space, act_space", [
    (spaces.Dict({"x": spaces.Box(-1.0, 1.0, (3,), np.float32), "t": spaces.Discrete(5)}),
     spaces.MultiDiscrete([2, 3])),
    (spaces.Tuple((spaces.MultiBinary(3), spaces.Discrete(4, start=1))), spaces.Box(-0.5, 0.5, (2,), np.float32)),
    (spaces.Discrete(6), spaces.MultiBinary(3)),
    (spaces.Box(0, 255, (8, 8, 1), np.uint8), spaces.Discrete(2, start=5)),
])
def test_every_space_kind_matches_policy_step(obs_space, act_space):
    policy = make_policy(obs_space, act_space)
    runner = PolicyRunner(policy)
    ref = Reference(policy, batch=2)
    obs_space.seed(7)
    for t in range(5):
        pair = [obs_space.sample(), obs_space.sample()]
        single = runner.act(pair[0])
        batch = runner.act(pair, agent_ids=["a", "b"])
        ref_actions, _ = ref.step(tree_stack(pair), [float(t == 0)] * 2)
        assert act_space.contains(single)
        np.testing.assert_allclose(single, batch[0], atol=ATOL)
        np.testing.assert_allclose(batch, ref_actions, atol=ATOL)
    runner.reset()
    assert torch.count_nonzero(runner.get_state("a")) == 0


def test_load_from_run_dir_and_checkpoint_file(tmp_path):
    policy = make_policy()
    config = TrainConfig(policy=policy.config)
    atomic_torch_save(build_payload(config, policy, None, {"global_step": 0}), tmp_path / "checkpoints" / "latest.pt")
    runner = PolicyRunner.load(tmp_path, seed=0)
    other = PolicyRunner.load(tmp_path / "checkpoints" / "latest.pt")
    assert runner.config.policy == policy.config
    original = PolicyRunner(policy)  # one runner, so that all three carry their memory the same way
    for obs in random_obs(BOX, 10, seed=8):
        assert runner.act(obs) == other.act(obs) == original.act(obs)


def test_bad_inputs_raise_clear_errors():
    runner = PolicyRunner(make_policy())
    obs = np.zeros(4, np.float32)
    with pytest.raises(ObservationError, match=r"expected shape \(4,\).*got \(5,\)"):
        runner.act(np.zeros(5, np.float32))
    with pytest.raises(ObservationError, match="looks like a batch: pass agent_ids"):
        runner.act(np.zeros((2, 4), np.float32))
    with pytest.raises(ObservationError, match=r"expected numbers.*got dtype <U"):
        runner.act(np.array(["a", "b", "c", "d"]))
    with pytest.raises(ObservationError, match="got 3 agent_ids but observations for 2 agents"):
        runner.act(np.zeros((2, 4), np.float32), agent_ids=[1, 2, 3])
    with pytest.raises(ObservationError, match="got 2 agent_ids but a list of 1 observations"):
        runner.act([obs], agent_ids=[1, 2])
    with pytest.raises(ValueError, match=r"distinct.*repeated: 1"):
        runner.act(np.zeros((2, 4), np.float32), agent_ids=[1, 1])
    assert runner.agent_ids == ()  # failed calls add no agents
    runner.act(obs)
    runner.reset(agent_ids=[7])  # an id that has not acted yet: nothing to reset (see test_tuple_ids...)
    assert runner.agent_ids == (0,)
    with pytest.raises(UnknownAgentError, match="remove: unknown"):
        runner.remove(8)
    with pytest.raises(ValueError, match=r"expected a state of shape \(S, L, H\) = \(2, 1, 32\), got \(2, 32\)"):
        runner.set_state(SINGLE_AGENT_ID, torch.zeros(2, 32))
    image = PolicyRunner(make_policy(spaces.Box(0, 255, (8, 8, 1), np.uint8)))
    with pytest.raises(ObservationError, match=r"expected dtype uint8 for image space.*got float32"):
        image.act(np.zeros((8, 8, 1), np.float32))
    tree = PolicyRunner(make_policy(spaces.Dict({"x": BOX, "t": spaces.Discrete(3)})))
    with pytest.raises(ObservationError, match=r"missing key\(s\) \['t'\]"):
        tree.act({"x": obs})
    with pytest.raises(ObservationError, match=r"observation\['t'\]: expected integer values.*float"):
        tree.act({"x": obs, "t": 1.0})
    with pytest.raises(ObservationError, match=r"observation\['t'\]: values out of range for Discrete\(3\): got 3"):
        tree.act({"x": obs, "t": 3})


def test_set_state_and_remove_all():
    policy = make_policy()
    runner = PolicyRunner(policy)
    obs = random_obs(BOX, 3, seed=9)
    runner.act(obs[0])
    saved = runner.get_state()
    first = runner.act(obs[1])
    runner.set_state(SINGLE_AGENT_ID, saved)  # rewind one step
    assert runner.act(obs[1]) == first
    runner.set_state("clone", saved)  # a new agent that starts with that memory
    assert runner.act(obs[1], agent_ids="clone") == first
    runner.remove()
    assert runner.agent_ids == ()


def test_tuple_ids_are_one_id_and_reset_of_an_unknown_id_is_a_no_op():
    policy = make_policy()
    obs = random_obs(BOX, 6, seed=3)
    runner, ref = PolicyRunner(policy), Reference(policy, batch=2)
    runner.reset(agent_ids=("red", 0))  # not acted yet: a no-op, it joins fresh at its first act()
    runner.reset(agent_ids=[("red", 0), ("blue", 0)])
    assert runner.agent_ids == ()
    for t in range(3):
        batch = np.stack([obs[2 * t], obs[2 * t + 1]])
        got = runner.act(batch, agent_ids=[("red", 0), ("blue", 0)])
        want, _ = ref.step(batch, np.ones(2) if t == 0 else np.zeros(2))
        np.testing.assert_array_equal(got, want)
    assert runner.agent_ids == (("red", 0), ("blue", 0))
    single = runner.act(obs[0], agent_ids=("green", 1))  # a tuple is one id: one observation, one action
    assert np.ndim(single) == 0 and ("green", 1) in runner.agent_ids
    runner.reset(("red", 0))
    assert runner.act(obs[0], agent_ids=("red", 0), return_info=True)[1].episode_start
    runner.remove([("red", 0)])
    with pytest.raises(UnknownAgentError, match="remove: unknown"):
        runner.remove(("red", 0))
    with pytest.raises(TypeError, match="hashable"):
        runner.act(obs[0], agent_ids=(["unhashable"], 1))
