"""benchmarks/multiagent_peer.py: the step budget, the curve windows and the peer's evaluation loop.

The peer itself (sb3-contrib, SuperSuit) lives in a separate venv; its evaluation loop is checked here with a
stand-in model that has RecurrentPPO's ``predict`` signature and records what it is given.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.multiagent_peer import agent_step_budget, evaluate_peer, windowed_means
from envs.multiagent.fog_team import make_env


def test_agent_step_budget_is_mnemos_rounded_budget_times_agents():
    # 200,000 env steps in rollouts of 8 envs x 128 steps = 1,024: 196 rollouts (200,704 env steps), 2 agents.
    assert agent_step_budget(200_000, 2) == 401_408
    assert agent_step_budget(1_024, 3) == 3_072
    assert agent_step_budget(1, 2) == 2_048


def test_windowed_means_averages_the_episodes_that_end_in_each_window():
    curve = [(10, 1.0), (20, 3.0), (25, -1.0), (61, 2.0)]
    # windows (0, 20], (20, 40], (40, 60], (60, 80] -> the last ends at the last episode's step; (40, 60] is empty
    assert windowed_means(curve, 20) == [(20, 2.0), (40, -1.0), (61, 2.0)]
    assert windowed_means([], 20) == []


class RecordingModel:
    """RecurrentPPO's ``predict(obs, state, episode_start, deterministic)``: always ``action``; the state it
    returns counts each row's steps since its last episode start, so the loop's state handling shows."""

    def __init__(self, action: int) -> None:
        self.action = action
        self.calls: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        count = np.zeros(len(obs)) if state is None else state[0][0].copy()
        count = np.where(episode_start, 0.0, count) + 1.0
        self.calls.append((obs.copy(), None if state is None else state[0][0].copy(), episode_start.copy()))
        as_state = count[None, :]
        return np.full(len(obs), self.action), (as_state, as_state)


def test_peer_evaluation_keeps_one_state_per_agent_and_resets_it_at_each_game():
    model = RecordingModel(action=0)  # everyone stays: no pad is reached, each game is truncated at 50 steps
    returns = evaluate_peer(model, n_agents=2, episodes=5, seed=7, deterministic=True)

    # 3 games of 2 agent episodes, the first 5 kept; each agent gets the team reward, 50 x -0.01.
    assert returns == pytest.approx([-0.5] * 5)
    assert len(model.calls) == 3 * 50
    for game in range(3):
        first, *rest = model.calls[game * 50:(game + 1) * 50]
        obs, state, start = first
        assert obs.shape == (2, 80)
        assert start.tolist() == [True, True] and state is None  # zero state at each game's start
        expected, _ = make_env(n_agents=2).reset(seed=7 + game)  # game g is seeded seed + g
        np.testing.assert_array_equal(obs, np.stack([expected["agent_0"], expected["agent_1"]]))
        for k, (_, state, start) in enumerate(rest, start=1):
            assert start.tolist() == [False, False]
            assert state.tolist() == [k, k]  # the state returned by the step before, one entry per agent


def test_peer_evaluation_returns_the_team_return_of_each_agent():
    # Both agents always step up: playing the same seed by hand gives the team return that each agent's
    # episode must report.
    model = RecordingModel(action=1)
    returns = evaluate_peer(model, n_agents=2, episodes=2, seed=3, deterministic=False)
    env = make_env(n_agents=2)
    env.reset(seed=3)
    total = 0.0
    while env.agents:
        _, rewards, _, _, _ = env.step(dict.fromkeys(env.agents, 1))
        assert len(set(rewards.values())) == 1
        total += rewards["agent_0"]
    assert returns == pytest.approx([total, total])
