"""Property tests (Hypothesis): random spaces, random episode-boundary patterns, random env arguments.

- Any supported observation / action space (nested Dict / Tuple included) and any network shape: the
  policy builds, ``step`` and ``evaluate`` agree on shapes, sampled actions lie in the action space, and
  one step scored by ``evaluate`` has the log-probability ``step`` gave it.
- Any pattern of episode starts: sequences cover every step once, never exceed ``bptt_len``, start at
  every episode start (reset mode), carry their stored start state, and the recomputed log-probabilities
  and values equal the rollout's (the invariant of README's "The recurrent bookkeeping") for episodes
  that end by termination or truncation anywhere.
- Any arguments for the built-in envs: the env is made and steps inside its spaces and snapshots exactly,
  or the trainer's env factory refuses with a ConfigError that names --env-kwargs; nothing else escapes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from registry_cases import core_names

from agents.config import ConfigError, PolicyConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences
from agents.rollout.collector import VectorCollector, make_vector_env
from agents.rollout.env_state import restore_env, snapshot_env
from agents.trees import obs_to_tensor, tree_stack

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- random spaces
small = st.integers(1, 4)
box_leaf = st.builds(lambda shape: spaces.Box(-2.0, 2.0, shape, np.float32), st.lists(small, min_size=1, max_size=2)
                     .map(tuple))
image_leaf = st.builds(lambda c, last: spaces.Box(0, 255, (8, 8, c) if last else (c, 8, 8), np.uint8),
                       st.sampled_from([1, 3]), st.booleans())
discrete_leaf = st.builds(lambda n, start: spaces.Discrete(n, start=start), st.integers(1, 5), st.integers(-2, 2))
multidiscrete_leaf = st.builds(lambda nvec: spaces.MultiDiscrete(nvec), st.lists(st.integers(1, 4), min_size=1,
                                                                                   max_size=3))
multibinary_leaf = st.builds(spaces.MultiBinary, st.integers(1, 4))
obs_leaf = st.one_of(box_leaf, image_leaf, discrete_leaf, multidiscrete_leaf, multibinary_leaf)
obs_space = st.recursive(
    obs_leaf,
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from("abcd"), inner, min_size=1, max_size=3).map(spaces.Dict),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: spaces.Tuple(parts)),
    ),
    max_leaves=4,
)
action_space = st.one_of(
    st.builds(spaces.Discrete, st.integers(1, 5)),
    st.builds(lambda k: spaces.Box(-1.0, 1.0, (k,), np.float32), small),
    multidiscrete_leaf,
    multibinary_leaf,
)
policy_config = st.builds(
    PolicyConfig,
    core=st.sampled_from(core_names()),
    hidden_size=st.integers(2, 12),
    num_layers=st.integers(1, 2),
    separate_critic=st.booleans(),
    carry_across_episodes=st.booleans(),
    encoder_sizes=st.sampled_from([(), (8,)]),
    head_sizes=st.sampled_from([(), (8,)]),
    normalize_obs=st.booleans(),
)


def sample_batch(space: spaces.Space, batch: int, seed: int):
    space.seed(seed)
    return tree_stack([space.sample() for _ in range(batch)])


@FAST
@given(obs=obs_space, act=action_space, cfg=policy_config, batch=st.integers(1, 3), seed=st.integers(0, 99))
def test_policy_builds_and_step_and_evaluate_agree_for_random_spaces(obs, act, cfg, batch, seed):
    torch.manual_seed(seed)
    policy = RecurrentActorCritic(obs, act, cfg)
    x = obs_to_tensor(sample_batch(obs, batch, seed), "cpu")
    state = policy.initial_state(batch)
    start = torch.ones(batch)
    with torch.no_grad():
        out = policy.step(x, state, start)
    head = policy.action_head
    assert out.action.shape == (batch, *head.action_shape)
    assert out.logprob.shape == out.value.shape == (batch,)
    assert out.state.shape == state.shape == (*policy.state_shape[:2], batch, policy.state_shape[2])
    env_actions = head.to_env(out.action)
    for i in range(batch):
        assert act.contains(np.asarray(env_actions[i], dtype=act.dtype)), (act, env_actions[i])

    # One step as a length-1 sequence: same log-probability and value as the rollout step.
    seq = _time_major(x)
    with torch.no_grad():
        logprob, entropy, value = policy.evaluate(seq, state, start[None], out.action[None])
    assert logprob.shape == entropy.shape == value.shape == (1, batch)
    torch.testing.assert_close(logprob[0], out.logprob, atol=1e-5, rtol=0)
    torch.testing.assert_close(value[0], out.value, atol=1e-5, rtol=0)


def _time_major(tree):
    if isinstance(tree, dict):
        return {k: _time_major(v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_time_major(v) for v in tree)
    return tree.unsqueeze(0)


# --------------------------------------------------------------------------- episode-boundary patterns
starts_pattern = st.integers(1, 24).flatmap(
    lambda t: st.integers(1, 5).flatmap(
        lambda n: st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=t, max_size=t)))


@FAST
@given(pattern=starts_pattern, bptt=st.integers(1, 9), cut=st.booleans())
def test_sequences_cover_every_step_once_and_respect_boundaries(pattern, bptt, cut):
    starts = np.array(pattern, dtype=np.float32)
    t_len, n_envs = starts.shape
    seqs = make_sequences(starts, bptt, cut_at_episode_starts=cut)
    mask = seqs.mask.numpy().astype(bool)
    ti, ei = seqs.time_index.numpy(), seqs.env_index.numpy()
    seen = np.zeros((t_len, n_envs), dtype=np.int64)
    np.add.at(seen, (ti[mask], ei[mask]), 1)
    assert (seen == 1).all()
    lengths = mask.sum(0)
    assert (lengths >= 1).all() and (lengths <= bptt).all()
    for m in range(seqs.num_sequences):
        length = lengths[m]
        assert mask[:length, m].all() and not mask[length:, m].any()  # real steps first, then padding
        times, env = ti[:length, m], ei[:length, m]
        assert (env == env[0]).all() and (np.diff(times) == 1).all()
        assert (seqs.start_time[m], seqs.start_env[m]) == (times[0], env[0])
        if cut:
            assert not starts[times[1:], env[0]].any()  # an episode start only ever opens a sequence
    opened = {(int(t), int(e)) for t, e in zip(seqs.start_time, seqs.start_env, strict=True)}
    if cut:
        assert {(int(t), int(e)) for t, e in zip(*np.nonzero(starts), strict=True)} <= opened
    else:
        assert opened == {(t, e) for t in range(0, t_len, bptt) for e in range(n_envs)}


class ScriptedEnv(gym.Env):
    """Episodes whose lengths and ends (terminated / truncated) follow a script, cycled, offset per env."""

    metadata = {"render_modes": []}

    def __init__(self, lengths=(3,), terminates=(True,)):
        self.lengths, self.terminates = list(lengths), list(terminates)
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.episode = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.episode = seed  # envs start at different points of the script
        self.t, self.length = 0, self.lengths[self.episode % len(self.lengths)]
        self.ends_by_termination = self.terminates[self.episode % len(self.terminates)]
        self.episode += 1
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        end = self.t >= self.length
        obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return obs, float(action), end and self.ends_by_termination, end and not self.ends_by_termination, {}


if "tests/Scripted-v0" not in gym.registry:
    gym.register("tests/Scripted-v0", entry_point=ScriptedEnv)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5), terminates=st.lists(st.booleans(), min_size=1,
                                                                                         max_size=4),
       cfg=policy_config, bptt=st.integers(1, 8), num_steps=st.integers(4, 20), seed=st.integers(0, 99))
def test_recomputed_logprobs_equal_the_rollout_for_random_episode_boundaries(lengths, terminates, cfg, bptt,
                                                                              num_steps, seed):
    bptt = min(bptt, num_steps)
    envs = make_vector_env("tests/Scripted-v0", 3, {"lengths": lengths, "terminates": terminates})
    torch.manual_seed(seed)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space, cfg)
    collector = VectorCollector(envs, num_steps)
    collector.start(policy, torch.device("cpu"), seed, seed)
    buf = collector.collect()
    for _ in range(1):  # the second rollout starts from a carried state
        policy.update_obs_normalizer(buf.obs)  # as the trainer does after each update
        buf = collector.collect()
    collector.close()
    seqs = make_sequences(buf.episode_starts.numpy(), bptt, cut_at_episode_starts=not cfg.carry_across_episodes)
    adv, ret = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                           buf.bootstrap_value, 0.99, 0.95)
    batch = gather_sequences(buf, seqs, adv, ret)
    # Start states are the stored states at each sequence's first step.
    stored = buf.states[seqs.start_time, :, :, seqs.start_env].permute(1, 2, 0, 3)
    assert torch.equal(batch.start_states, stored)
    assert (batch.episode_starts[batch.mask == 0] == 0).all()
    with torch.no_grad():
        logprob, _, value = policy.evaluate(batch.obs, batch.start_states, batch.episode_starts, batch.actions)
    real = batch.mask.bool()
    assert (logprob[real] - batch.logprobs[real]).abs().max() < 1e-5
    assert (value[real] - batch.values[real]).abs().max() < 1e-5


# --------------------------------------------------------------------------- env arguments
ints = st.one_of(st.integers(1, 12), st.integers(-3, 25), st.sampled_from([2.5, "7", None]))
probs = st.one_of(st.floats(-0.5, 1.5), st.just(float("nan")))
ENV_KWARGS = {
    "mnemo/TMaze-v0": st.fixed_dictionaries({}, optional={"corridor_length": ints}),
    "mnemo/CountRecall-v0": st.fixed_dictionaries({}, optional={"length": ints, "n_symbols": ints}),
    "mnemo/GatedMemory-v0": st.fixed_dictionaries(
        {}, optional={"length": ints, "n_reads": ints, "value_high": ints, "max_memory": ints, "p_write": probs}),
    "mnemo/CartPoleFlicker-v1": st.fixed_dictionaries({}, optional={"p": probs}),
    "mnemo/FlickerPong-v0": st.fixed_dictionaries({}, optional={"flicker_p": probs, "points_to_win": ints}),
    "mnemo/FogMaze-v0": st.fixed_dictionaries({}, optional={"size": ints, "n_goals": ints}),
}
env_and_kwargs = st.sampled_from(sorted(ENV_KWARGS)).flatmap(
    lambda env_id: st.tuples(st.just(env_id), ENV_KWARGS[env_id],
                             st.sampled_from([{}, {}, {}, {"colour": 3}])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=env_and_kwargs, seed=st.integers(0, 99))
def test_env_arguments_give_a_working_env_or_a_clear_error(case, seed):
    env_id, kwargs, unknown = case
    kwargs = {**kwargs, **unknown}
    try:
        envs = make_vector_env(env_id, 2, kwargs)
    except ConfigError as exc:
        assert "--env-kwargs" in str(exc) and env_id in str(exc)
        event("refused")
        return
    event("made")
    assert not unknown, "an unknown argument was accepted"
    try:
        obs, _ = envs.reset(seed=seed)
        envs.single_action_space.seed(seed)
        for _ in range(15):
            assert envs.observation_space.contains(obs)
            obs, reward, *_ = envs.step(envs.action_space.sample())
            assert np.isfinite(reward).all()
        # The env's state round-trips exactly through its JSON snapshot.
        a = envs.envs[0].env
        twin = gym.make(env_id, **kwargs)
        twin.reset(seed=seed + 1)
        restore_env(twin, snapshot_env(a))
        for _ in range(15):
            action = envs.single_action_space.sample()
            ra, rb = a.step(action), twin.step(action)
            assert all(np.array_equal(x, y) for x, y in zip(ra[:4], rb[:4], strict=True))
            if ra[2] or ra[3]:
                assert np.array_equal(a.reset()[0], twin.reset()[0])
    finally:
        envs.close()


@pytest.mark.parametrize("text", ['{"corridor_length": 5', "[1, 2]", "corridor_length=5"])
def test_env_kwargs_that_are_not_a_json_object_are_refused(text, capsys):
    from agents.train import cli as train

    with pytest.raises(SystemExit):
        train.resolve_config(["--env-kwargs", text])
    assert "--env-kwargs" in capsys.readouterr().err
