"""Memory tasks: API conformance, determinism, hand-worked episodes, memoryless bounds."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the ids)
from envs.memory import CountRecallEnv, GatedMemoryEnv, TMazeEnv, tmaze_time_limit

IDS = ["mnemo/TMaze-v0", "mnemo/TMazeLong-v0", "mnemo/GatedMemory-v0", "mnemo/CountRecall-v0"]


def play(env: gym.Env, policy, seed: int, episodes: int) -> np.ndarray:
    """Return per episode; ``policy(obs, first_obs) -> action``."""
    returns = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        first, total, done = obs, 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs, first))
            total += reward
            done = terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return np.array(returns)


@pytest.mark.parametrize("env_id", IDS)
def test_check_env_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id).unwrapped)  # render modes are checked through the spec


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout(env_id):
    def rollout(seed):
        env = gym.make(env_id)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(200):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            out.append(np.append(obs, [reward, terminated, truncated]))
            if terminated or truncated:
                out.append(env.reset()[0])
        return np.concatenate(out)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("mode", ["ansi", "rgb_array"])
def test_render(env_id, mode):
    env = gym.make(env_id, render_mode=mode)
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
        frame = env.render()
        if mode == "ansi":
            assert isinstance(frame, str) and frame
        else:
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


# ---------------------------------------------------------------- TMaze


def tmaze_policy(turn):
    """East along the corridor, then ``turn(first_obs)`` at the junction."""
    return lambda obs, first: TMazeEnv.EAST if obs[3] == 0 else turn(first)


def test_tmaze_perfect_memory_gets_max_return():
    env = gym.make("mnemo/TMaze-v0")
    remember = tmaze_policy(lambda first: TMazeEnv.NORTH if first[0] else TMazeEnv.SOUTH)
    np.testing.assert_allclose(play(env, remember, seed=0, episodes=50), TMazeEnv.GOAL_REWARD)


def test_tmaze_memoryless_turns_right_half_the_time():
    env = gym.make("mnemo/TMaze-v0")
    returns = play(env, tmaze_policy(lambda first: TMazeEnv.NORTH), seed=0, episodes=400)
    correct = np.mean(returns == TMazeEnv.GOAL_REWARD)
    assert 0.42 < correct < 0.58
    assert set(returns) == {TMazeEnv.GOAL_REWARD, TMazeEnv.WRONG_REWARD}
    assert returns.mean() < 2.0  # the memoryless bound is 1.5


def test_tmaze_observations_hide_the_cue_after_the_first_step():
    env = TMazeEnv(corridor_length=3)
    seen = {}
    for seed in range(20):
        first, _ = env.reset(seed=seed)
        assert first[0] + first[1] == 1 and first[2] == 1
        trace = [env.step(TMazeEnv.EAST)[0] for _ in range(4)]
        seen.setdefault(env.goal, []).append(np.stack(trace))
    assert set(seen) == {0, 1}
    up, down = seen[0][0], seen[1][0]
    np.testing.assert_array_equal(up, down)  # nothing after step 0 tells the goal
    np.testing.assert_array_equal(up[:2], [[0, 0, 1, 0]] * 2)
    np.testing.assert_array_equal(up[2:], [[0, 0, 0, 1]] * 2)


def test_tmaze_rewards_by_hand():
    env = TMazeEnv(corridor_length=2)
    env.reset(seed=0)
    right = TMazeEnv.NORTH if env.goal == 0 else TMazeEnv.SOUTH
    wrong = TMazeEnv.SOUTH if env.goal == 0 else TMazeEnv.NORTH
    assert env.step(wrong)[1:3] == (TMazeEnv.BUMP_REWARD, False)  # wall in the corridor
    assert env.step(TMazeEnv.EAST)[1:3] == (0.0, False)
    assert env.step(TMazeEnv.EAST)[1:3] == (0.0, False)  # now at the junction
    assert env.step(TMazeEnv.EAST)[1:3] == (TMazeEnv.BUMP_REWARD, False)
    assert env.step(right)[1:3] == (TMazeEnv.GOAL_REWARD, True)
    env.reset(seed=0)
    for _ in range(2):
        env.step(TMazeEnv.EAST)
    assert env.step(wrong)[1:3] == (TMazeEnv.WRONG_REWARD, True)


def test_tmaze_rewards_are_arguments():
    # The sparse maze: +1 / -1 at the junction, nothing for bumping; the walk itself is unchanged.
    env = gym.make("mnemo/TMaze-v0", corridor_length=1, goal_reward=1, bump_reward=0)
    env.reset(seed=0)
    right = TMazeEnv.NORTH if env.unwrapped.goal == 0 else TMazeEnv.SOUTH
    wrong = TMazeEnv.SOUTH if env.unwrapped.goal == 0 else TMazeEnv.NORTH
    assert env.step(wrong)[1:3] == (0.0, False)
    assert env.step(TMazeEnv.EAST)[1:3] == (0.0, False)
    assert env.step(TMazeEnv.EAST)[1:3] == (0.0, False)
    assert env.step(right)[1:3] == (1.0, True)
    env.reset(seed=0)
    env.step(TMazeEnv.EAST)
    assert env.step(wrong)[1:3] == (TMazeEnv.WRONG_REWARD, True)
    for bad in (float("nan"), "1"):
        with pytest.raises(ValueError, match="bump_reward must be a finite number"):
            TMazeEnv(bump_reward=bad)


def test_tmaze_registered_time_limits_and_long_corridor():
    assert gym.spec("mnemo/TMaze-v0").max_episode_steps == 50 == tmaze_time_limit(10)
    assert gym.spec("mnemo/TMazeLong-v0").max_episode_steps == 500 == tmaze_time_limit(100)
    env = gym.make("mnemo/TMaze-v0")
    env.reset(seed=0)
    steps = [env.step(TMazeEnv.NORTH)[1:4] for _ in range(50)]
    assert all(reward == TMazeEnv.BUMP_REWARD and not terminated for reward, terminated, _ in steps)
    assert [truncated for *_, truncated in steps] == [False] * 49 + [True]
    long = gym.make("mnemo/TMaze-v0", corridor_length=400, max_episode_steps=tmaze_time_limit(400))
    remember = tmaze_policy(lambda first: TMazeEnv.NORTH if first[0] else TMazeEnv.SOUTH)
    np.testing.assert_allclose(play(long, remember, seed=1, episodes=3), TMazeEnv.GOAL_REWARD)


def test_tmaze_zero_length_shows_cue_at_the_junction():
    env = TMazeEnv(corridor_length=0)
    obs, _ = env.reset(seed=0)
    assert obs[3] == 1 and obs[0] + obs[1] == 1


# ---------------------------------------------------------------- GatedMemory

# The classic hand-set LSTM memory-cell example: write 3, add 4, read 7, clear, write 6, read 6.
SEEDS_SCRIPT = [(3, 1, 0), (4, 1, 0), (0, 0, 1), (0, -1, 0), (6, 1, 0), (0, 0, 1)]


def test_gated_memory_tutorial_sequence():
    env = GatedMemoryEnv(value_high=6, max_memory=9)
    obs, _ = env.reset(seed=0, options={"script": SEEDS_SCRIPT})
    np.testing.assert_array_equal(obs, [3, 1, 0])
    answers = [0, 0, 7, 0, 0, 6]
    rewards, observations = [], [obs]
    for t, answer in enumerate(answers):
        obs, reward, terminated, truncated, _ = env.step(answer)
        rewards.append(reward)
        observations.append(obs)
        assert terminated == (t == len(answers) - 1) and not truncated
    assert rewards == [0, 0, 1, 0, 0, 1]
    np.testing.assert_array_equal(np.stack(observations[:-1]), SEEDS_SCRIPT)
    np.testing.assert_array_equal(observations[-1], [0, 0, 0])
    # Wrong answers on the reads earn nothing.
    env.reset(options={"script": SEEDS_SCRIPT})
    assert [env.step(a)[1] for a in [7, 7, 6, 6, 6, 7]] == [0] * 6


def test_gated_memory_write_then_read_on_one_step():
    env = GatedMemoryEnv(value_high=6, max_memory=9)
    env.reset(options={"script": [(2, 1, 0), (5, 1, 1)]})
    env.step(0)
    assert env.step(7)[1] == 1.0


def track_memory(obs, memory):
    value, gate, _ = obs
    return memory + int(value) if gate == 1 else (0 if gate == -1 else memory)


def test_gated_memory_random_episodes():
    env = gym.make("mnemo/GatedMemory-v0")
    base = env.unwrapped
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        memory, total, reads, steps, done = 0, 0.0, 0, 0, False
        while not done:
            memory = track_memory(obs, memory)
            assert 0 <= memory <= base.max_memory
            reads += int(obs[2])
            obs, reward, terminated, truncated, _ = env.step(memory)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        assert (steps, reads, total) == (base.length, base.n_reads, base.n_reads)
        assert terminated and not truncated
        obs, _ = env.reset()


def test_gated_memory_memoryless_bound():
    # A memoryless policy answers the same on every read; the best constant answer
    # (measured here) stays far below the maximum return.
    env = gym.make("mnemo/GatedMemory-v0")
    n_reads = env.unwrapped.n_reads
    best = max(play(env, lambda obs, first, k=k: k, seed=0, episodes=300).mean() for k in range(7))
    assert best < 0.5 * n_reads


# ---------------------------------------------------------------- CountRecall


def test_count_recall_perfect_memory_gets_max_return():
    env = gym.make("mnemo/CountRecall-v0")
    counts = np.zeros(2, dtype=int)

    def remember(obs, first):
        if obs is first:
            counts[:] = 0
        counts[:] += obs[:2].astype(int)
        return int(counts[np.argmax(obs[2:])])

    np.testing.assert_allclose(play(env, remember, seed=0, episodes=100), 1.0)


def test_count_recall_memoryless_bound():
    # The best memoryless policy maps each observation to its most frequent answer;
    # build that table from sampled episodes and score it on fresh ones.
    env = CountRecallEnv()
    table: dict[bytes, np.ndarray] = {}
    env.reset(seed=0)
    for _ in range(500):
        for t in range(env.length):
            key = env._obs[t].tobytes()
            table.setdefault(key, np.zeros(env.length + 1))[env.answers[t]] += 1
        env.reset()
    best = {key: int(np.argmax(freq)) for key, freq in table.items()}
    returns = play(env, lambda obs, first: best.get(obs.tobytes(), 0), seed=1, episodes=500)
    assert returns.mean() < 0.4


def test_count_recall_by_hand():
    env = CountRecallEnv(length=4, n_symbols=2)
    obs, _ = env.reset(seed=0)
    trace = [obs]
    for _ in range(4):
        obs, _, terminated, _, _ = env.step(0)
        trace.append(obs)
    assert terminated
    trace = np.stack(trace)
    np.testing.assert_array_equal(trace[:4, :2].argmax(1), env.symbols)
    np.testing.assert_array_equal(trace[:4, 2:].argmax(1), env.queries)
    np.testing.assert_array_equal(trace[4], 0)
    expected = [int(np.count_nonzero(env.symbols[: t + 1] == env.queries[t])) for t in range(4)]
    np.testing.assert_array_equal(env.answers, expected)
    # Answer right on steps 0 and 2 only: half the maximum return.
    env.reset(seed=0)
    wrong = [(a + 1) % 5 for a in expected]
    rewards = [env.step(a)[1] for a in (expected[0], wrong[1], expected[2], wrong[3])]
    assert rewards == [0.25, 0.0, 0.25, 0.0]


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TMazeEnv(corridor_length=-1), "corridor_length"),
        (lambda: TMazeEnv(corridor_length=2.5), "corridor_length"),
        (lambda: TMazeEnv(render_mode="human"), "render_mode"),
        (lambda: GatedMemoryEnv(length=0), "length"),
        (lambda: GatedMemoryEnv(length=4, n_reads=5), "n_reads"),
        (lambda: GatedMemoryEnv(n_reads=0), "n_reads"),
        (lambda: GatedMemoryEnv(value_high=0), "value_high"),
        (lambda: GatedMemoryEnv(value_high=5, max_memory=4), "max_memory"),
        (lambda: GatedMemoryEnv(p_write=1.5), "p_write"),
        (lambda: CountRecallEnv(length=0), "length"),
        (lambda: CountRecallEnv(n_symbols=0), "n_symbols"),
        (lambda: CountRecallEnv(render_mode="human"), "render_mode"),
        (lambda: gym.make("mnemo/GatedMemory-v0", length=-3), "length"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "script",
    [
        [(7, 1, 1)],  # value above value_high
        [(3, 1, 0), (3, 1, 0), (3, 1, 1)],  # memory above max_memory
        [(1, 2, 0)],  # unknown gate
        [(1, 1)],  # not a triple
        [],  # empty
    ],
)
def test_bad_scripts_raise(script):
    env = GatedMemoryEnv()
    with pytest.raises(ValueError, match="script"):
        env.reset(options={"script": script})
