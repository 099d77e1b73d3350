"""Self-play: one side of a two-sided game learns, the other is played by frozen snapshots of the learner.

The model is Unity ML-Agents' ghost trainer (snapshot window, ``play_against_latest_model_ratio``,
``save_steps``, ``swap_steps``, ELO), with the learner-or-snapshot draw and the learning side drawn per env copy
and per env episode:

- ``OpponentPool``: every ``--snapshot-every`` env steps the learning policy's weights (obs-normaliser statistics
  included) are frozen into a snapshot (no gradient); the pool keeps the last ``--pool-size``. Every snapshot has
  an Elo rating (``agents.ratings``), starting at the learner's rating when it is taken.
- ``SelfPlayCollector``: a ``MultiAgentCollector`` whose rows belong to two sides (``--sides``). Every
  ``--swap-every`` env steps a seeded generator draws the pool's current opponent, a snapshot, uniformly from
  the pool; at each env copy's episode start it draws which side learns (``--swap-sides``) and who plays the
  other: the learning policy itself with probability ``--play-latest``, else the current snapshot. Each step
  the learning policy acts on all R rows (as without self-play) and every snapshot in use (one, or more for
  the episodes that began before a swap) on its opponent rows, whose actions and recurrent states replace the
  learner's outputs there: the learner makes its batched call and every snapshot one more over its rows, or,
  with ``--fuse-opponents`` where the architecture allows (``agents.model.fused.fusable``: LSTM, GRU, none and
  stack cores without a critic core of their own), the learner and the snapshots run as ONE fused forward over
  stacked weights (``FusedNetworks``: a batched matmul per layer, each row block with its own network's weights;
  benchmarks/self_play_speed.py times both). Either way each network samples its rows' actions from its own
  generator, so the two paths draw the same random numbers; their outputs agree to ~1e-7 (the batched matmul
  rounds some shapes differently), so a fused run is a deterministic path of its own, resumed bitwise; an
  opponent row's stored action, log-prob and value are placeholders either way (no training row).
  Only learner rows are training rows: the rollout's ``alive`` is alive & learner, so opponent steps drop out
  of sequences, GAE, the losses and every statistic as absent steps do.
- At each env episode's end the two sides' summed rewards decide the game (win / draw / loss) for the Elo
  ratings of the learner and the snapshot it played (a game against itself rates nobody).

Hidden state: a row's controller (learner, or which opponent) is fixed for an env episode and changes only at
the copy's reset, where every agent spawns; the copy's rows are also zeroed explicitly when it is redrawn, so
state never passes from one controller to another (carry mode included). Opponent rows keep their own state
in the collector's one (S, L, R, W) state tensor, held while absent and zeroed at spawns as every row's.

Checkpoints: the pool (weights, ratings, games, steps taken), both generators (draws, opponents' sampling), each
copy's draw and running side returns travel in ``state_dict()["tensors"]["self_play"]``, beside every row's
state, so a resume is exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents import ratings
from agents.config import ConfigError, OpponentsConfig, TrainConfig, first_match, parse_sides
from agents.model.fused import FusedNetworks, fusable
from agents.model.policy import RecurrentActorCritic, StepOutput
from agents.rollout.buffer import Rollout
from agents.rollout.multiagent_collector import MultiAgentCollector, refuse_unsupported
from agents.rollout.multiagent_env import MultiAgentVectorEnv, make_multiagent_vector_env
from agents.trees import tree_map

PLAY_LATEST = -1  # the opponent id of an env copy whose opponent is the learning policy itself


def assign_sides(agent_names: list[str], sides: str | None, env_id: str = "",
                 needed_by: str = "--self-play") -> tuple[list[str], np.ndarray]:
    """The two side names and each agent slot's side (S,) int64 (0 or 1), from ``--sides`` (None: each agent is
    a side of its own, so the env must have exactly two agents). Self-play and ``mnemo match`` (``needed_by``
    names it in errors) read ``--sides`` the same way.

    Raises:
        ConfigError: not exactly two sides, an agent that no pattern matches, or a side without agents.
    """
    if sides is None:
        if len(agent_names) != 2:
            raise ConfigError(f"{needed_by} needs two sides, and {env_id} has {len(agent_names)} agents "
                              f"({', '.join(agent_names)}); give them sides, e.g. --sides "
                              f"'{agent_names[0]}=left,*=right'.")
        return list(agent_names), np.arange(2, dtype=np.int64)
    mapping = parse_sides(sides)
    names = list(dict.fromkeys(name for _, name in mapping))
    side_of = np.zeros(len(agent_names), dtype=np.int64)
    for k, agent in enumerate(agent_names):
        side = first_match(mapping, agent)
        if side is None:
            raise ConfigError(f"--sides: no pattern matches agent {agent!r} of {env_id}; add one (e.g. "
                              f"'{agent}={names[0]}' or '*=SIDE' last).")
        side_of[k] = names.index(side)
    for index, name in enumerate(names):
        if not (side_of == index).any():
            raise ConfigError(f"--sides gives side {name!r} no agent of {env_id} (agents: {agent_names}); fix its "
                              f"pattern.")
    return names, side_of


def freeze(policy: RecurrentActorCritic) -> RecurrentActorCritic:
    """A copy of ``policy`` that never trains: its own weights and normaliser statistics, no gradients."""
    frozen = copy.deepcopy(policy)
    frozen.requires_grad_(False)
    return frozen.eval()


@dataclass
class SnapshotRecord:
    """A snapshot's bookkeeping: the env step it was taken at, its Elo rating and the games it played."""

    step: int
    rating: float
    games: int = 0


class OpponentPool:
    """The frozen snapshots of the learning policy and everyone's Elo ratings.

    ``pool`` lists the ids of the last ``size`` snapshots (the ones a draw picks from). ``networks`` holds the
    frozen policies of the pool and of any snapshot that dropped out of it while it is still played (dropped
    once it is not: ``prune``). ``records`` keeps every snapshot's step, rating and games, for
    the summary.
    """

    def __init__(self, size: int, k: float = ratings.K_FACTOR):
        self.size, self.k = size, k
        self.pool: list[int] = []
        self.networks: dict[int, RecurrentActorCritic] = {}
        self.records: dict[int, SnapshotRecord] = {}
        self.learner_rating = ratings.INITIAL_RATING
        self.learner_games = 0  # games against snapshots (rated)
        self.self_games = 0  # games against itself (not rated)

    def add(self, policy: RecurrentActorCritic, step: int) -> int:
        """Freeze ``policy`` into a new snapshot rated as the learner is now; returns its id."""
        snapshot_id = len(self.records)
        self.records[snapshot_id] = SnapshotRecord(step, self.learner_rating)
        self.networks[snapshot_id] = freeze(policy)
        self.pool = [*self.pool, snapshot_id][-self.size:]
        return snapshot_id

    def prune(self, in_use: set[int]) -> None:
        """Drop the networks of snapshots that left the pool and that no env copy plays any more."""
        for snapshot_id in [i for i in self.networks if i not in self.pool and i not in in_use]:
            del self.networks[snapshot_id]

    def record_game(self, opponent: int, score: float) -> None:
        """The learner scored ``score`` (``ratings.WIN`` / ``DRAW`` / ``LOSS``) against ``opponent``."""
        if opponent == PLAY_LATEST:
            self.self_games += 1
            return
        record = self.records[opponent]
        self.learner_rating, record.rating = ratings.update(self.learner_rating, record.rating, score, self.k)
        record.games += 1
        self.learner_games += 1

    def summary(self) -> dict:
        """JSON-ready: the learner's rating and games, and every snapshot's step, rating and games."""
        return {
            "learner_elo": round(self.learner_rating, 2),
            "games_against_snapshots": self.learner_games,
            "games_against_itself": self.self_games,
            "pool": list(self.pool),
            "snapshots": {str(i): {"step": r.step, "elo": round(r.rating, 2), "games": r.games}
                          for i, r in self.records.items()},
        }

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict:
        """Tensors and plain numbers only (checkpoints load with ``weights_only``)."""
        return {
            "pool": list(self.pool),
            "learner_rating": self.learner_rating, "learner_games": self.learner_games,
            "self_games": self.self_games,
            "records": {str(i): {"step": r.step, "rating": r.rating, "games": r.games}
                        for i, r in self.records.items()},
            # A snapshot's weights never change: the tensors themselves, no copy (this runs every iteration).
            "networks": {str(i): net.state_dict() for i, net in self.networks.items()},
        }

    def load_state_dict(self, state: dict, template: RecurrentActorCritic) -> None:
        """Restore ``state_dict()``'s output; the frozen networks are copies of ``template`` with the saved
        weights."""
        self.pool = [int(i) for i in state["pool"]]
        self.learner_rating = float(state["learner_rating"])
        self.learner_games, self.self_games = int(state["learner_games"]), int(state["self_games"])
        self.records = {int(i): SnapshotRecord(int(r["step"]), float(r["rating"]), int(r["games"]))
                        for i, r in state["records"].items()}
        self.networks = {}
        for i, weights in state["networks"].items():
            network = freeze(template)
            network.load_state_dict(weights)
            self.networks[int(i)] = network


def saved_snapshots(collector_tensors: dict | None) -> tuple[dict[int, dict], int] | None:
    """The snapshots a checkpoint holds, from its collector tensors (``SelfPlayCollector.state_dict()["tensors"]``,
    saved as the checkpoint's ``collector``): ``({step: weights}, snapshots taken)``, or None for a
    run without self-play.

    Only the networks saved are there: the pool's last ``--pool-size`` snapshots (and any that left it while an
    env copy still played it); the older ones' weights are gone, only their records remain.
    """
    saved = (collector_tensors or {}).get("self_play")
    if saved is None:
        return None
    pool = saved["pool"]
    by_step = {int(pool["records"][i]["step"]): weights for i, weights in
               sorted(pool["networks"].items(), key=lambda item: int(item[0]))}
    return by_step, len(pool["records"])


def self_play_collector(config: TrainConfig) -> SelfPlayCollector:
    """The ``CollectorFactory`` for ``--self-play`` on a multi-agent ``config.env.env_id`` (``make_collector``
    picks it)."""
    refuse_unsupported(config)
    env = config.env
    envs = make_multiagent_vector_env(env.env_id, env.num_envs, env.env_kwargs, env.env_import,
                                      with_state=config.policy.central_critic)
    try:
        return SelfPlayCollector(envs, config.ppo.num_steps, config.opponents, config.ppo.noise_correlation)
    except BaseException:
        envs.close()
        raise


class SelfPlayCollector(MultiAgentCollector):
    """A ``MultiAgentCollector`` where one side learns and the other is played by the pool (module docstring).

    ``collect`` returns the learning side's rollout: ``alive`` (T, R) is 1 only at the learner's live steps, and
    ``episode_returns`` holds only the learner's agent episodes. ``games`` counts the finished games of the last
    ``collect``; ``pool`` has the ratings.

    Args:
        envs: the rows (``MultiAgentVectorEnv``, one policy).
        num_steps: steps per rollout.
        settings: ``--self-play`` and its settings (``OpponentsConfig``).
        noise_correlation: the learner's sampling noise correlation (``--noise-correlation``).
    """

    def __init__(self, envs: MultiAgentVectorEnv, num_steps: int, settings: OpponentsConfig,
                 noise_correlation: float = 0.0):
        super().__init__(envs, num_steps, noise_correlation)
        self.settings = settings
        self.unfused_because: str | None = None  # why the run acts one network after the other (None: fused)
        self._fused: dict[tuple[int, ...], FusedNetworks] = {}  # this rollout's, by the snapshots in use
        self.side_names, self.side_of_slot = assign_sides(list(envs.agent_names), settings.sides, envs.env_id)
        self.side_of_row = self.side_of_slot[envs.agent_index]  # (R,)
        self._copy_side = envs.copy_of_row * 2 + self.side_of_row  # (R,) each row's entry of side_returns, flat
        self.pool = OpponentPool(settings.pool_size, settings.elo_k)
        n = envs.num_copies
        self.learner_side = np.zeros(n, dtype=np.int64)
        self.opponent = np.full(n, PLAY_LATEST, dtype=np.int64)
        self.side_returns = np.zeros((n, 2))  # each side's summed rewards in the copy's running episode
        self.steps_done, self.next_snapshot = 0, 0  # env steps (T x N per rollout), as the trainer's global_step
        self.current_snapshot, self.next_swap = 0, 0  # the pool's opponent now (--swap-every)
        self.games = 0

    def start(self, policy: RecurrentActorCritic, device: torch.device, sample_seed: int, env_seed: int) -> None:
        # The draws and the opponents' action sampling get streams of their own, so neither moves the other.
        draw_seed, opponent_seed = (int(x) for x in np.random.SeedSequence(sample_seed).generate_state(2))
        self.draw_generator = torch.Generator().manual_seed(draw_seed)
        self.opponent_generator = torch.Generator(device).manual_seed(opponent_seed)
        self.policy, self.device, self.state = policy, device, None
        self.unfused_because = fusable(policy) if self.settings.fuse_opponents else "--fuse-opponents is off"
        self._take_snapshot()  # the first snapshot is the initial policy: the pool is never empty
        self._swap()
        super().start(policy, device, sample_seed, env_seed)

    # ---------------------------------------------------------------- draws
    def _take_snapshot(self) -> None:
        self.pool.add(self.policy, self.steps_done)
        every = self.settings.snapshot_every
        self.next_snapshot = (self.steps_done // every + 1) * every
        self.pool.prune(self._in_use())

    def _swap(self) -> None:
        """Draw the pool's current opponent uniformly from the pool."""
        pool = self.pool.pool
        self.current_snapshot = pool[int(torch.randint(len(pool), (1,), generator=self.draw_generator))]
        every = self.settings.swap_every
        self.next_swap = (self.steps_done // every + 1) * every
        self.pool.prune(self._in_use())

    def _in_use(self) -> set[int]:
        return {self.current_snapshot, *self.opponent.tolist()}

    def _draw(self, copies: np.ndarray) -> None:
        """Draw the learning side and the opponent of each env copy in ``copies`` (a new env episode), and
        zero their rows' state: state never passes from one controller to another."""
        settings = self.settings
        for i in copies:
            side_u, opponent_u = torch.rand(2, generator=self.draw_generator).tolist()
            self.learner_side[i] = int(side_u < 0.5) if settings.swap_sides else 0
            self.opponent[i] = PLAY_LATEST if opponent_u < settings.play_latest else self.current_snapshot
            self.side_returns[i] = 0.0
        if self.state is not None and len(copies):
            rows = torch.as_tensor(np.isin(self.envs.copy_of_row, copies), device=self.device)
            self.state = torch.where(rows.view(1, 1, -1, 1), 0.0, self.state)
        self.pool.prune(self._in_use())
        self._assign_rows()

    def _assign_rows(self) -> None:
        """From the copies' draws: which rows learn (``learner_rows`` (R,) float), which train
        (``training_rows`` (R,) float: the learner's, and with --train-both-sides the other side's where the
        learning policy plays itself) and each snapshot's rows."""
        copy_of_row = self.envs.copy_of_row
        learner = self.side_of_row == self.learner_side[copy_of_row]
        self.learner_rows = torch.as_tensor(learner, dtype=torch.float32, device=self.device)
        self._learner_on_host = learner
        opponent_of_row = np.where(learner, PLAY_LATEST, self.opponent[copy_of_row])
        # A row the learning policy drives is on-policy data wherever it sits; --train-both-sides uses it.
        training = opponent_of_row == PLAY_LATEST if self.settings.train_both_sides else learner
        self.training_rows = torch.as_tensor(training, dtype=torch.float32, device=self.device)
        self.opponent_rows = [(int(sid), torch.as_tensor(np.flatnonzero(opponent_of_row == sid), device=self.device))
                              for sid in np.unique(opponent_of_row) if sid != PLAY_LATEST]
        # The fused forward's row blocks (agents.model.fused): block 0 holds the rows the learning policy drives
        # (its own and, with --play-latest, opponent rows where it plays itself), block k the k-th snapshot's
        # rows; each padded to the largest with its last row. ``_block_source`` (R,) is where each row's own
        # outputs sit in the blocks flattened (K * P).
        drivers = (PLAY_LATEST, *(sid for sid, _ in self.opponent_rows))
        own_rows = [np.flatnonzero(opponent_of_row == driver) for driver in drivers]
        size = max(len(rows) for rows in own_rows)
        source = np.zeros(len(opponent_of_row), dtype=np.int64)
        for k, rows in enumerate(own_rows):
            source[rows] = k * size + np.arange(len(rows))
        self._block_index = torch.as_tensor(np.concatenate([np.concatenate((rows, np.full(size - len(rows), rows[-1])))
                                                            for rows in own_rows]), device=self.device)
        self._block_source = torch.as_tensor(source, device=self.device)

    def _reset_envs(self, seed: int) -> None:
        super()._reset_envs(seed)
        self._draw(np.arange(self.envs.num_copies))

    # ---------------------------------------------------------------- collection
    def collect(self) -> Rollout:
        if self.steps_done >= self.next_snapshot:
            self._take_snapshot()
        if self.steps_done >= self.next_swap:
            self._swap()
        self.games = 0
        self._fused = {}  # the learner's weights changed since the last rollout: stack them anew
        rollout = super().collect()
        self.steps_done += self.num_steps * self.envs.num_copies
        return rollout

    def _act(self, obs_t: Any, state: torch.Tensor, inputs_t: dict | None,
             alive: torch.Tensor) -> tuple[StepOutput, torch.Tensor, torch.Tensor]:
        """The learning policy over all rows and every snapshot in use over its rows, whose actions and states
        replace the learner's there: one fused forward (``_act_fused``), or one call per network (the stored
        outputs at an opponent row are then the learner's own step there; either way no training row)."""
        if self.opponent_rows and self.unfused_because is None:
            return self._act_fused(obs_t, state, inputs_t, alive)
        out, action, next_state = super()._act(obs_t, state, inputs_t, alive)
        if not self.opponent_rows:
            return out, action, next_state
        action = action.clone()  # out.action is what the rollout stores; next_state is a fresh tensor already
        for snapshot_id, rows in self.opponent_rows:
            rows_state = state.index_select(2, rows)
            rows_inputs = None if inputs_t is None else tree_map(lambda x, rows=rows: x.index_select(0, rows),
                                                                 inputs_t)
            opponent = self.pool.networks[snapshot_id].step(
                tree_map(lambda x, rows=rows: x.index_select(0, rows), obs_t), rows_state,
                self.next_episode_start.index_select(0, rows), generator=self.opponent_generator,
                agent_inputs=rows_inputs)
            action.index_copy_(0, rows, opponent.action)
            live = alive.index_select(0, rows).view(1, 1, -1, 1) > 0
            next_state.index_copy_(2, rows, torch.where(live, opponent.state, rows_state))
        return out, action, next_state

    def _act_fused(self, obs_t: Any, state: torch.Tensor, inputs_t: dict | None,
                   alive: torch.Tensor) -> tuple[StepOutput, torch.Tensor, torch.Tensor]:
        """``_act`` as one fused forward of the learner and the snapshots in use (``FusedNetworks``), the learner
        over the rows it drives only. Each network then samples as its ``step`` does and as the unfused path
        does: the learner all R rows from the collector's generator (and noise), the same draws, each snapshot
        its rows from the opponents' generator. An opponent row's stored log-prob and value are the learner's
        heads over the opponent's outputs: placeholders, as it is no training row (and a row changes controller
        only where its env episode ends, so no learner step bootstraps from an opponent step's value)."""
        snapshot_ids = tuple(sid for sid, _ in self.opponent_rows)
        fused = self._fused.get(snapshot_ids)
        if fused is None:
            fused = self._fused[snapshot_ids] = FusedNetworks(
                [self.policy, *(self.pool.networks[sid] for sid in snapshot_ids)])
        raw_blocks, raw, value, own_state = fused.step(obs_t, state, self.next_episode_start, self._block_index,
                                                       self._block_source, inputs_t)
        head = self.policy.action_head
        legal = self.policy.legal_actions(obs_t)
        dist = head.distribution(raw, legal)
        if self.noise is not None:
            sample = dist.sample(normal=self.noise.draw(dist.noise_shape, self.generator, value.device))
        else:
            sample = dist.sample(self.generator)
        out = StepOutput(head.shape_actions(sample), dist.log_prob(sample), value, own_state)
        action = out.action.clone()  # out.action is what the rollout stores
        for k, (snapshot_id, rows) in enumerate(self.opponent_rows, start=1):
            opponent_head = self.pool.networks[snapshot_id].action_head
            opponent_dist = opponent_head.distribution(raw_blocks[k, :len(rows)],
                                                       None if legal is None else legal.index_select(0, rows))
            action.index_copy_(0, rows, opponent_head.shape_actions(opponent_dist.sample(self.opponent_generator)))
        return out, action, torch.where(alive.view(1, 1, -1, 1) > 0, own_state, state)

    def _training_steps(self, alive: torch.Tensor) -> torch.Tensor:
        """Only the learning side's live rows train (and, with --train-both-sides, the other side's where the
        learning policy plays itself)."""
        return alive * self.training_rows

    def _reported_episodes(self, done: np.ndarray) -> np.ndarray:
        """Only the learner's agent episodes enter ``episode_returns``."""
        return done & self._learner_on_host

    def _after_step(self, reward: np.ndarray, env_done: np.ndarray) -> None:
        """Add the step's rewards to each side's return; at an env episode's end, rate the game and redraw."""
        self.side_returns += np.bincount(self._copy_side, reward, minlength=self.side_returns.size).reshape(-1, 2)
        ended = np.flatnonzero(env_done)
        for i in ended:
            learner = self.learner_side[i]
            score = ratings.game_score(self.side_returns[i, learner], self.side_returns[i, 1 - learner])
            self.pool.record_game(int(self.opponent[i]), score)
            self.games += 1
        if len(ended):
            self._draw(ended)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self, snapshot_envs: bool = True) -> dict:
        state = super().state_dict(snapshot_envs)
        state["tensors"]["self_play"] = {
            "pool": self.pool.state_dict(),
            "draw_generator": self.draw_generator.get_state(),
            "opponent_generator": self.opponent_generator.get_state(),
            "learner_side": torch.as_tensor(self.learner_side.copy()),
            "opponent": torch.as_tensor(self.opponent.copy()),
            "side_returns": torch.as_tensor(self.side_returns.copy()),
            "steps_done": self.steps_done, "next_snapshot": self.next_snapshot,
            "current_snapshot": self.current_snapshot, "next_swap": self.next_swap,
        }
        return state

    def load_state_dict(self, state: dict) -> str | None:
        saved = (state.get("tensors") or {}).get("self_play")
        if saved is not None:
            self.pool.load_state_dict(saved["pool"], self.policy)
            self.draw_generator.set_state(saved["draw_generator"].cpu())
            self.opponent_generator.set_state(saved["opponent_generator"].cpu())
            self.learner_side = saved["learner_side"].numpy().copy()
            self.opponent = saved["opponent"].numpy().copy()
            self.side_returns = saved["side_returns"].numpy().copy()
            self.steps_done, self.next_snapshot = int(saved["steps_done"]), int(saved["next_snapshot"])
            self.current_snapshot, self.next_swap = int(saved["current_snapshot"]), int(saved["next_swap"])
            self._assign_rows()
        # An inexact resume resets every env copy, which redraws them all (``_reset_envs``).
        return super().load_state_dict(state)

    def report(self) -> dict:
        """The last ``collect``'s games and the ratings now, for TensorBoard (``self_play/...``)."""
        pool = [self.pool.records[i].rating for i in self.pool.pool]
        return {"learner_elo": self.pool.learner_rating, "pool_elo_min": min(pool), "pool_elo_max": max(pool),
                "pool_size": len(pool), "games": self.games, "snapshots": len(self.pool.records)}


__all__ = ["PLAY_LATEST", "OpponentPool", "SelfPlayCollector", "assign_sides", "freeze", "saved_snapshots",
           "self_play_collector"]
