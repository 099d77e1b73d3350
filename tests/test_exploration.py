"""The exploration bonus (--exploration rnd | noveld, agents/train/exploration.py).

The invariant with the bonus on is in tests/test_rollout_invariant.py and the exact resume in
tests/test_crash_resume.py, beside the cases without it. Here: the bonus itself (novel against repeated, the
return normalisation and NovelD's first-visit rule checked against numbers worked by hand), the refusals, that
exports and checkpoints of runs without it are what they were, and a learning test on a sparse chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import PolicyRunner
from agents.config import ConfigError, PolicyConfig, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import Rollout
from agents.run.checkpoint import LATEST, load_payload
from agents.train.exploration import IntrinsicBonus, check_exploration_space, intrinsic_history
from agents.train.trainer import Trainer
from envs.memory import TMazeEnv


class SparseChain(gym.Env):
    """## Description
    A corridor of ``length`` cells; the agent starts in cell 0 and steps left or right (a wall at cell 0).

    ## Observation Space
    Box(0, 1, (length,)): a one-hot of the cell.

    ## Action Space
    Discrete(2): 0 left, 1 right.

    ## Rewards
    1 on reaching the last cell, 0 at every other step: the reward is sparse.

    ## Episode End
    Terminated at the last cell; truncated by the registration's time limit (30 steps for 20 cells: a random walk
    reaches the end in well under one episode in a thousand).
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int = 20, render_mode: str | None = None):
        self.length, self.render_mode = length, render_mode
        self.observation_space = spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if int(action) == 1 else -1))
        reached = self.pos == self.length - 1
        return self._obs(), float(reached), reached, False, {}


if "tests/SparseChain-v0" not in gym.registry:
    gym.register("tests/SparseChain-v0", entry_point=SparseChain, max_episode_steps=30)

CHAIN = SparseChain().observation_space


def config(**overrides) -> TrainConfig:
    base = {"env_id": "tests/SparseChain-v0", "preset": "none", "core": "none", "hidden_size": 32, "num_envs": 8,
            "num_steps": 64, "num_minibatches": 2, "update_epochs": 4, "total_steps": 16384, "eval_episodes": 4,
            "progress": False, "device": "cpu", "seed": 1}
    return TrainConfig().with_overrides({**base, **overrides})


def bonus(exploration: str = "rnd", num_envs: int = 1, space: spaces.Space = CHAIN, **ppo) -> IntrinsicBonus:
    """A bonus on ``space``; the networks read the observation alone unless ``intrinsic_history`` says otherwise,
    so the tests of its parts feed it plain observations."""
    ppo.setdefault("intrinsic_history", 1)
    return IntrinsicBonus(space, config(exploration=exploration, num_envs=num_envs, **ppo), num_envs,
                          torch.device("cpu"), seed=0)


def cells_rollout(positions: list[list[int]], starts: list[list[int]]) -> Rollout:
    """A rollout of chain observations: positions and episode starts (T, N); only obs and episode_starts are read."""
    pos = torch.tensor(positions)
    obs = torch.nn.functional.one_hot(pos, CHAIN.shape[0]).float()
    zeros = torch.zeros(pos.shape)
    return Rollout(obs, zeros.long(), zeros, zeros, zeros, zeros, zeros, zeros, torch.tensor(starts).float(),
                   torch.zeros(pos.shape[0], 0, 1, pos.shape[1], 1), zeros[0])


def test_a_novel_observation_earns_more_than_a_repeated_one():
    """After the predictor has trained on cell 0 only, cell 0's novelty is far below that of cells never seen."""
    b = bonus(intrinsic_update_fraction=1.0, intrinsic_lr=1e-3)
    seen = torch.nn.functional.one_hot(torch.zeros(64, dtype=torch.long), CHAIN.shape[0]).float()
    before = b.novelty(b._normalise(seen[:1]))
    for _ in range(10):
        b.train_predictor(b._normalise(seen))
    cells = torch.nn.functional.one_hot(torch.arange(CHAIN.shape[0]), CHAIN.shape[0]).float()
    novelty = b.novelty(b._normalise(cells))
    assert novelty[0] < 0.1 * before[0]
    assert novelty[0] < 0.2 * novelty[1:].min()


def test_rnd_rewards_are_the_novelty_over_the_running_std_of_the_non_episodic_return(monkeypatch):
    """Worked by hand: the raw bonus is the novelty, 0 at an episode's first step; the discounted sums run on
    across the episode end (the intrinsic stream never stops); the rewards are divided by their running std."""
    b = bonus(num_envs=2, intrinsic_gamma=0.5)
    novelty = torch.tensor([[0.4, 1.0], [0.2, 0.6], [0.8, 0.3], [0.1, 0.5]])
    monkeypatch.setattr(b, "novelty", lambda inputs: novelty.reshape(-1))
    monkeypatch.setattr(b, "train_predictor", lambda inputs: 0.0)
    starts = [[1, 1], [0, 0], [1, 0], [0, 0]]
    rewards, stats = b.rollout_rewards(cells_rollout([[0, 0], [1, 1], [0, 2], [1, 3]], starts))
    raw = np.array([[0.0, 0.0], [0.2, 0.6], [0.0, 0.3], [0.1, 0.5]])
    sums = np.zeros_like(raw)
    running = np.zeros(2)
    for t in range(4):
        running = 0.5 * running + raw[t]  # never reset: the start at step 2 does not cut env 0's sum
        sums[t] = running
    std = np.sqrt(sums.var() + 1e-8)
    np.testing.assert_allclose(rewards.numpy(), raw / std, rtol=1e-5)
    assert stats["intrinsic_scale"] == pytest.approx(std)
    assert stats["intrinsic_reward_raw"] == pytest.approx(raw.mean())
    assert stats["intrinsic_reward"] == pytest.approx((raw / std).mean(), rel=1e-5)


def test_noveld_pays_the_novelty_difference_at_the_first_visit_of_a_cell_in_the_episode(monkeypatch):
    """max(n_t - alpha * n_{t-1}, 0) where cell t is new in the episode, else 0; 0 at an episode's first step; the
    previous novelty and the visited cells carry into the next rollout, and an episode start clears them."""
    b = bonus("noveld", noveld_alpha=0.5)
    novelty = {"now": None}
    monkeypatch.setattr(b, "novelty", lambda inputs: novelty["now"])
    monkeypatch.setattr(b, "train_predictor", lambda inputs: 0.0)

    def raw_of(positions, starts, values):
        novelty["now"] = torch.tensor(values)
        rewards, stats = b.rollout_rewards(cells_rollout([[p] for p in positions], [[s] for s in starts]))
        return rewards[:, 0] * stats["intrinsic_scale"]  # undo the division: the raw bonus

    first = raw_of([0, 1, 2, 1, 3], [1, 0, 0, 0, 0], [0.9, 1.0, 0.4, 0.8, 0.6])
    np.testing.assert_allclose(first.numpy(), [0.0, 1.0 - 0.45, 0.0, 0.0, 0.6 - 0.4], atol=1e-6)
    # The next rollout: cell 3 again (visited), a new cell 4 after novelty 0.6 of the last step, then a new episode
    # where cell 0 starts and cell 1 is new again.
    second = raw_of([3, 4, 0, 1], [0, 0, 1, 0], [0.5, 0.9, 0.7, 0.7])
    np.testing.assert_allclose(second.numpy(), [0.0, 0.9 - 0.25, 0.0, 0.7 - 0.35], atol=1e-6)


def test_noveld_cells_are_float_cells_of_episodic_bin_stds_and_integers_exactly():
    """Cells are episodic_bin stds of the first rollout wide, fixed after it: two observations in one cell hash
    alike, in different cells differently, in a later rollout as in the first; a uint8 leaf counts exactly."""
    space = spaces.Dict({"v": spaces.Box(-10, 10, (2,), np.float32), "grid": spaces.Box(0, 5, (3, 3), np.uint8)})
    b = bonus("noveld", space=space, episodic_bin=0.5)
    grid = torch.zeros(4, 3, 3, dtype=torch.uint8)
    grid[3, 1, 1] = 2
    # The first rollout's std is 1 in both dimensions and its mean 0: cells of 0.5 from -5 to 5.
    first = {"v": torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]]), "grid": torch.zeros(4, 3, 3,
                                                                                                      dtype=torch.uint8)}
    b.cells(first, (4, 1))
    obs = {"v": torch.tensor([[0.1, 0.2], [0.4, 0.3], [0.6, 0.3], [0.1, 0.2]]), "grid": grid}
    cells = b.cells(obs, (4, 1))[:, 0]
    assert cells[0] == cells[1] and cells[1] != cells[2] and cells[0] != cells[3]
    b.cells({"v": torch.full((4, 2), 100.0), "grid": grid}, (4, 1))  # far away: the statistics must not move
    np.testing.assert_array_equal(b.cells(obs, (4, 1))[:, 0], cells)


def test_intrinsic_history_reads_the_observation_and_its_changes_within_the_episode():
    """--intrinsic-history 3 on a 1-D position: the input is (x_t, x_t - x_t-1, x_t-1 - x_t-2), a step back from an
    episode's first observation repeats it, and the last observations carry over to the next rollout (numbers
    worked by hand)."""
    line = spaces.Box(-10.0, 10.0, (1,), np.float32)
    b = bonus(num_envs=2, space=line, intrinsic_history=3)
    assert isinstance(b.space, spaces.Tuple) and len(b.space.spaces) == 3
    positions = torch.tensor([[1.0, 5.0], [2.0, 6.0], [4.0, 0.0], [7.0, 1.0]]).unsqueeze(-1)  # (T=4, N=2, 1)
    starts = torch.tensor([[1, 1], [0, 0], [0, 1], [0, 0]]).bool()  # env 1 begins a new episode at step 2
    now, change, change_before = b._with_history(positions, starts)
    assert torch.equal(now, positions)
    assert change.squeeze(-1).T.tolist() == [[0, 1, 2, 3], [0, 1, 0, 1]]
    assert change_before.squeeze(-1).T.tolist() == [[0, 0, 1, 2], [0, 0, 0, 0]]
    # The next rollout goes on from 7 (4 before it) and 1 (0 before it).
    now, change, change_before = b._with_history(torch.tensor([[[11.0], [3.0]]]), torch.zeros(1, 2).bool())
    assert change.flatten().tolist() == [4, 2] and change_before.flatten().tolist() == [3, 1]
    assert bonus(space=line, intrinsic_history=1).space == line  # K = 1: the observation alone


def test_refusals_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="only applies with --exploration"):
        config(intrinsic_coef=1.0).validate()
    with pytest.raises(ConfigError, match="--noveld-alpha only applies with --exploration noveld"):
        config(exploration="rnd", noveld_alpha=0.3).validate()
    with pytest.raises(ConfigError, match="--intrinsic-history only applies with --exploration"):
        config(intrinsic_history=3).validate()
    with pytest.raises(ConfigError, match="--intrinsic-history must be >= 1"):
        config(exploration="rnd", intrinsic_history=0).validate()
    with pytest.raises(ConfigError, match="--intrinsic-norm-window must be >= 0"):
        config(exploration="rnd", intrinsic_norm_window=-1).validate()
    with pytest.raises(ConfigError, match="--intrinsic-gamma must be in"):
        config(exploration="rnd", intrinsic_gamma=1.0).validate()
    with pytest.raises(ConfigError, match="--backend local"):
        config(exploration="rnd", backend="ray").validate()
    with pytest.raises(ConfigError, match="single-agent envs for now"):
        Trainer(config(env_id="mnemo/FogTeam-v0", exploration="rnd", run_dir=str(tmp_path / "ma")).validate())
    with pytest.raises(ConfigError, match="drop --exploration"):
        check_exploration_space(spaces.Dict({"text": spaces.Text(5)}))
    # A masked observation: the bonus reads the observation without its mask.
    masked = spaces.Dict({"observation": CHAIN, "action_mask": spaces.Box(0, 1, (2,), np.int8)})
    assert check_exploration_space(masked) == CHAIN


def onnx_graph(path: Path) -> tuple:
    import onnx

    graph = onnx.load(str(path)).graph
    # Initialisers the exporter names itself (onnx::LSTM_133) are numbered by the tracer: their count, not names.
    named = sorted(i.name for i in graph.initializer if not i.name.startswith("onnx::"))
    return ([(v.name, str(v.type)) for v in graph.input], [(v.name, str(v.type)) for v in graph.output],
            named, len(graph.initializer), [n.op_type for n in graph.node])


def test_a_run_saved_under_other_bonus_defaults_loads_as_it_trained():
    """--intrinsic-history's default was 1: a run saved then without a bonus still loads (its bonus settings
    mean nothing and take today's values), and one saved with a bonus keeps the history it trained with."""
    saved = TrainConfig().to_dict()
    saved["ppo"]["intrinsic_history"] = 1
    assert TrainConfig.from_dict(saved).validate().ppo.intrinsic_history is None
    saved["policy"]["exploration"] = "rnd"
    assert TrainConfig.from_dict(saved).validate().ppo.intrinsic_history == 1


def test_the_bonus_reads_the_last_change_unless_the_observation_has_a_frame():
    """--intrinsic-history not set: 2 for vectors and grids of codes, 1 where the image CNN reads a frame (a
    second frame would double its work); a value given is kept."""
    frame = spaces.Box(0, 255, (32, 32, 3), np.uint8)
    grid = spaces.Box(0, 10, (7, 7, 3), np.uint8)
    rnd = config(exploration="rnd")
    assert intrinsic_history(CHAIN, rnd)[0] == 2 and intrinsic_history(grid, rnd)[0] == 2
    assert intrinsic_history(frame, rnd)[0] == 1
    assert intrinsic_history(spaces.Dict({"view": frame, "pos": CHAIN}), rnd)[0] == 1
    assert intrinsic_history(frame, config(exploration="rnd", intrinsic_history=3)) == (3, "given")
    assert bonus(space=CHAIN, intrinsic_history=None).history == 2


def test_exports_and_runners_of_a_run_with_the_bonus_are_those_without_it(tmp_path):
    """The intrinsic head is made after every other layer, so the same seed gives the same other weights; the
    ONNX graph (inputs, outputs, initialisers, ops) and its outputs, and a PolicyRunner's actions and values, are
    then those of the policy without it."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    played = {}
    for exploration in ("none", "rnd"):
        torch.manual_seed(0)
        cfg = PolicyConfig(hidden_size=16, exploration=exploration)
        policy = RecurrentActorCritic(CHAIN, spaces.Discrete(2), cfg).eval()
        assert policy.has_intrinsic_value == (exploration != "none")
        eye = np.eye(CHAIN.shape[0], dtype=np.float32)
        played[exploration] = export_and_play(policy, tmp_path / f"{exploration}.onnx", eye[:4],
                                              [eye[t % 3] for t in range(6)])
    assert_same_export_and_play(played["none"], played["rnd"])


def export_and_play(policy: RecurrentActorCritic, path: Path, obs_batch: np.ndarray,
                    observations: list[np.ndarray]) -> tuple[tuple, dict, list]:
    """``policy``'s ONNX export at ``path``: its graph (``onnx_graph``), its outputs for ``obs_batch`` (4, *shape)
    at an episode start from states of 0.1, and a seeded PolicyRunner's (action, value) over ``observations``."""
    from agents.deploy.export import export_onnx
    from agents.deploy.export_check import onnx_step_fn

    export_onnx(policy, path)
    graph = onnx_graph(path)
    feed = {"episode_start": np.ones(4, np.float32)}
    for name, _ in graph[0]:
        if name == "obs":
            feed[name] = obs_batch
        elif name != "episode_start":  # a state input (S, L, B, W) -> (L, B, W) per named tensor
            feed[name] = np.full((policy.state_shape[1], 4, policy.state_shape[2]), 0.1, np.float32)
    runner = PolicyRunner(policy, TrainConfig(), seed=0)
    infos = [runner.act(obs, return_info=True) for obs in observations]
    return graph, onnx_step_fn(path)(feed), [(int(action), info.value) for action, info in infos]


def assert_same_export_and_play(a: tuple[tuple, dict, list], b: tuple[tuple, dict, list]) -> None:
    """Two ``export_and_play`` results are the same: graph, every output bitwise, the runner's actions and values."""
    (graph_a, outputs_a, run_a), (graph_b, outputs_b, run_b) = a, b
    assert graph_a == graph_b
    assert run_a == run_b
    assert outputs_a.keys() == outputs_b.keys()
    for name, value in outputs_a.items():
        np.testing.assert_array_equal(value, outputs_b[name])


def test_the_bonus_reaches_a_sparse_reward_that_ppo_alone_misses(tmp_path):
    """A 20-cell chain paid only at its end, 30 steps an episode, 16k steps, seed 1: PPO with no aid never
    reaches the end (evaluation return 0), with RND it walks there (1.0, greedy and sampled), and so it does with
    the opt-in --sparse-noise rule, which sees the first 32 episodes all return 0. The runs also check what a run
    records: summary.json's and TensorBoard's exploration figures, and the checkpoint's keys with and without the
    bonus."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = {}
    for name, settings in {"none": {}, "rnd": {"exploration": "rnd"}, "rule": {"sparse_noise": 0.98}}.items():
        run = tmp_path / name
        results[name] = Trainer(config(**settings, run_dir=str(run)).validate()).train()
    assert results["none"]["eval_return_mean"] == 0.0 and results["none"]["eval_sampled_return_mean"] == 0.0
    assert results["rnd"]["eval_return_mean"] == 1.0 and results["rnd"]["eval_sampled_return_mean"] >= 0.9
    assert results["rule"]["sparse_noise"]["value"] == "on" and "sparse_noise" not in results["none"]
    assert results["rule"]["eval_return_mean"] == 1.0 and results["rule"]["eval_sampled_return_mean"] >= 0.9

    summary = json.loads((tmp_path / "rnd" / "summary.json").read_text())["exploration"]
    assert summary["method"] == "rnd"
    assert set(summary) == {"method", "intrinsic_reward_raw", "intrinsic_reward", "intrinsic_return",
                            "intrinsic_scale", "predictor_loss"}
    assert "exploration" not in json.loads((tmp_path / "none" / "summary.json").read_text())
    derived = {run: json.loads((tmp_path / run / "config.json").read_text())["derived"] for run in ("none", "rnd")}
    assert derived["rnd"]["intrinsic_history"]["value"] == 2 and "intrinsic_history" not in derived["none"]
    acc = EventAccumulator(str(tmp_path / "rnd"), size_guidance={"scalars": 0})
    acc.Reload()
    assert {f"exploration/{name}" for name in summary if name != "method"} <= set(acc.Tags()["scalars"])

    without, _ = load_payload(tmp_path / "none" / "checkpoints" / LATEST)
    with_bonus, _ = load_payload(tmp_path / "rnd" / "checkpoints" / LATEST)
    assert set(without) == {"format", "version", "meta", "policy", "optimizer", "collector", "generator",
                            "reward_scaler", "digest"}
    assert set(with_bonus) == set(without) | {"exploration"}
    assert not any("value_int" in key for key in without["policy"])
    assert set(with_bonus["policy"]) == set(without["policy"]) | {"value_int_head.weight", "value_int_head.bias"}


def test_the_sparse_suite_tight_maze_pays_only_the_turn_and_every_arm_is_a_valid_run(tmp_path):
    """benchmarks/sparse_suite.py's T-maze: corridor 30 under a 50-step limit, +1 / -1 for the turn and nothing
    else (walking east and bumping pay 0); and each arm's settings make a run that validates on each task."""
    import benchmarks.variant_envs  # noqa: F401  (registers variant/...)
    from benchmarks.sparse_suite import ARMS, TASKS, run_settings

    env = gym.make("variant/TMazeSparse30Tight-v0")
    assert env.spec.max_episode_steps == 50
    env.reset(seed=0)
    rewards = [env.step(TMazeEnv.NORTH)[1], *(env.step(TMazeEnv.EAST)[1] for _ in range(30))]
    assert rewards == [0.0] * 31
    _, reward, terminated, _, _ = env.step(TMazeEnv.NORTH)
    assert terminated and reward in (1.0, -1.0)

    for task in TASKS.values():
        for arm in ARMS:
            TrainConfig().with_overrides(run_settings(task, arm, 1, tmp_path / arm, {})).validate()
