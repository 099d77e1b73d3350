"""An exploration bonus for sparse rewards: random network distillation and NovelD (``--exploration``).

RND (Burda et al. 2018, "Exploration by Random Network Distillation"): a fixed, randomly initialised *target*
network maps an observation to features; a *predictor* network is trained to reproduce them on the observations
the agent sees. Its squared error, the *novelty* of an observation, is large where the agent has rarely been.
NovelD (Zhang et al. 2021, "NovelD: A Simple yet Effective Exploration Criterion") pays the novelty *difference*
``max(novelty(s_t) - alpha * novelty(s_t-1), 0)``, and only at the first visit of ``s_t`` in the episode, so an
observation that repeats (a corridor's every cell alike, an agent pacing back and forth) stops paying within an
episode: RND's bonus for it fades only as the predictor learns, across episodes.

Where each piece lives and when it runs (docs/architecture.md, "Exploration bonus"):

- The bonus is computed by the trainer from a collected ``Rollout`` (``IntrinsicBonus.rollout_rewards``), with
  networks that are not part of the policy: the collector, evaluation, runners, watch and exports never see
  them. The policy only gets a second value head, ``value_int``, which the collector stores as it stores the
  extrinsic value, so the rollout invariant covers both.
- Intrinsic reward of step t: the bonus of *arriving* at ``obs_t`` (the state formulation: the return from
  ``s_t`` is ``b(s_t) + gamma * (return with the bonus of the next state)``, the same ordering of policies as
  rewarding the transition into ``s_t``, and it needs no observation after the rollout). An episode's first
  observation pays 0: no action of that episode led there.
- The intrinsic return stream is non-episodic (RND): its GAE runs across episode ends, with its own discount
  (``--intrinsic-gamma``), and the rewards are divided by the std of that discounted return over about the last
  ``--intrinsic-norm-window`` steps, so the bonus has the same scale in every env and at every stage of a run:
  the raw bonus falls by orders of magnitude as the predictor learns, and against the whole run's std (RND's
  recipe, window 0) it ends up weighing nothing next to the extrinsic advantage. The advantages combine as
  ``adv = adv_ext + intrinsic_coef * adv_int`` before PPO's per-minibatch normalisation.
- The predictor trains on a random ``--intrinsic-update-fraction`` of each rollout's steps (RND's recipe: a
  predictor that sees every step learns so fast that the bonus fades before the agent can act on it), once per
  PPO epoch and minibatch, with its own Adam optimizer: its loss has another scale than PPO's, it must not share
  PPO's gradient-norm clip, and the policy's optimizer state stays what it is without the option.

Observations: the network reads what the policy's encoder reads (a masked env's observation without its
``"action_mask"``; with ``--intrinsic-history K`` also its changes over the K - 1 steps before, ``_with_history``,
by default K = 2 where the observation has no frame for the image CNN and 1 where it has:
in a partially observed game the observation is not the state, and novelty in a position's change is novelty in
the velocity it hides), through the encoder of ``agents/model/encoders.py`` for that space (a small CNN for frames,
an embedding per cell for grids of codes, one-hots, a flat vector), then an MLP. Float Box leaves are normalised
first by a running mean and std of their own (clipped to +-5, as in RND); integer leaves (frames, codes) are not.

NovelD's first visit is counted per env by hashing a coarse discretisation of the observation: float leaves cut
into cells ``--episodic-bin`` stds wide (``floor((x - mean) / std / bin)``, not clipped), integer leaves taken
exactly. The mean and std are those of the run's first rollout, then fixed, so an observation falls in the
same cell in every rollout (with running statistics a state seen early in an episode could count once more after
the statistics moved). Its limits: a continuous observation that drifts by less than a cell counts as one state
however long the agent stays; one that carries noise larger than a cell is new at every step (its first-visit
test passes always, and NovelD falls back to the novelty difference alone); a dimension that did not vary in
the first rollout (std 0) is cut into cells of 1e-4 x bin, so any later change in it makes a new cell; frames
are compared pixel for pixel, so a frame with any moving part is new.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.config import ConfigError, TrainConfig
from agents.model.encoders import RunningMeanStd, make_leaf_encoder
from agents.model.policy import init_image_encoders, mlp
from agents.rollout.buffer import Rollout
from agents.spaces import has_action_mask, has_image, leaf_spaces, policy_observation_space, split_action_mask
from agents.train.reward_scale import RewardScaler
from agents.trees import Tree, flatten_leading, tree_map, tree_map2

FEATURES = 64  # the target's output size, as CleanRL's RND over vectors uses
HIDDEN = 64
OBS_CLIP = 5.0  # RND clips the normalised observation to +-5


def check_exploration_space(observation_space: spaces.Space) -> spaces.Space:
    """The space the bonus reads (the encoder's: a masked env's observation without its mask).

    Raises:
        ConfigError: a space the bonus does not read (a leaf without a fixed shape, e.g. Text or Graph).
    """
    space = policy_observation_space(observation_space)
    for leaf in leaf_spaces(space):
        if not isinstance(leaf, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
            raise ConfigError(f"--exploration reads Box, Discrete, MultiDiscrete and MultiBinary observations "
                              f"(in a Dict or Tuple too), not {type(leaf).__name__}; drop --exploration for this "
                              f"env.")
    return space


def _is_float_box(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating)


def intrinsic_history(observation_space: spaces.Space, config: TrainConfig) -> tuple[int, str]:
    """Steps the bonus reads (``--intrinsic-history``) and why: the flag when given, else 2 (each observation and
    its last change), or 1 where the observation has a frame for the image CNN: a second frame doubles the bonus's
    CNN work (``benchmarks/exploration_cost.py``), and RND reads one frame."""
    if config.ppo.intrinsic_history is not None:
        return config.ppo.intrinsic_history, "given"
    if has_image(observation_space, config.policy.obs_encoder):
        return 1, "not set: the observation has a frame for the image CNN, so the bonus reads it alone"
    return 2, "not set: the observation and its change over the step before"


def _history_space(space: spaces.Space, history: int) -> spaces.Space:
    """What the networks read with ``--intrinsic-history K``: the space itself for K = 1, else a Tuple of K parts,
    the observation then, per step back, its float leaves' change (an unbounded Box) and its other leaves as
    they were."""
    if history == 1:
        return space

    def change(leaf: spaces.Space) -> spaces.Space:
        if isinstance(leaf, spaces.Dict):
            return spaces.Dict({k: change(s) for k, s in leaf.spaces.items()})
        if isinstance(leaf, spaces.Tuple):
            return spaces.Tuple(tuple(change(s) for s in leaf.spaces))
        return spaces.Box(-np.inf, np.inf, leaf.shape, np.float32) if _is_float_box(leaf) else leaf

    return spaces.Tuple((space,) + (change(space),) * (history - 1))


def _float_boxes(space: spaces.Space) -> list[spaces.Box]:
    """The float Box leaves of ``space`` in tree order (the ones with a running normaliser)."""
    return [leaf for leaf in leaf_spaces(space) if _is_float_box(leaf)]


class RNDNetwork(nn.Module):
    """The encoder for the observation's space, then an MLP: observation leaves (N, *shape) -> features (N, 64).

    The target is the encoder and one hidden layer; the predictor has one hidden layer more (RND gives the
    predictor more capacity than the target, so it can fit it).
    """

    def __init__(self, space: spaces.Space, obs_encoder: str, hidden_layers: int):
        super().__init__()
        self.encoder = make_leaf_encoder(space, False, obs_encoder)
        self.mlp, width = mlp(self.encoder.out_features, (HIDDEN,) * hidden_layers, "relu")
        self.out = nn.Linear(width, FEATURES)
        init_image_encoders(self)  # orthogonal, gain sqrt(2), zero biases: a target whose features vary

    def forward(self, obs: Tree) -> torch.Tensor:
        return self.out(self.mlp(self.encoder(obs)))


class IntrinsicBonus:
    """The bonus's networks, normalisers, optimizer and per-env episodic memory for one run.

    Args:
        observation_space: the env's single observation space.
        config: the run's config (``policy.exploration``, ``policy.obs_encoder`` and the intrinsic PPO settings).
        num_envs: N, the rows of a rollout.
        device: where the networks run.
        seed: draws the networks' initial weights (without touching the global RNG) and the predictor's
            training subsets.
    """

    def __init__(self, observation_space: spaces.Space, config: TrainConfig, num_envs: int, device: torch.device,
                 seed: int):
        self.obs_space = check_exploration_space(observation_space)
        self.history, self.history_reason = intrinsic_history(self.obs_space, config)
        self.space = _history_space(self.obs_space, self.history)  # what the networks read
        self.observation_space = observation_space
        self.masked = has_action_mask(observation_space)
        self.method, self.ppo = config.policy.exploration, config.ppo
        self.device = device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.target = RNDNetwork(self.space, config.policy.obs_encoder, 1).to(device)
            self.predictor = RNDNetwork(self.space, config.policy.obs_encoder, 2).to(device)
        self.target.requires_grad_(False)
        sizes = [int(np.prod(box.shape)) if box.shape else 1 for box in _float_boxes(self.space)]
        self.normalizers = nn.ModuleList(RunningMeanStd(size, clip=OBS_CLIP) for size in sizes).to(device)
        # NovelD's cells: the first rollout's statistics, then fixed (``cells_fixed``; module docstring), and not
        # clipped: the first rollout covers a small part of the space, and states far beyond it must stay apart.
        self.cell_normalizers = nn.ModuleList(RunningMeanStd(size, clip=math.inf) for size in sizes).to(device)
        self.cells_fixed = False
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=config.ppo.intrinsic_lr)
        self.generator = torch.Generator(device).manual_seed(seed + 1)
        # The intrinsic return never ends (dones are 0), so one discounted sum per env runs over the whole run.
        self.return_scaler = RewardScaler(num_envs, config.ppo.intrinsic_gamma, device=device,
                                          window=config.ppo.intrinsic_norm_window or None)
        # NovelD: each env's novelty of its previous observation, and the cells visited in its current episode.
        self.prev_novelty = torch.zeros(num_envs, device=device)
        self.visited: list[set[int]] = [set() for _ in range(num_envs)]
        # --intrinsic-history: the observations 0..K-2 steps back at the previous rollout's last step, each a tree
        # of (N, *shape) leaves (None before the first rollout).
        self.last_frames: list[Tree] | None = None

    # ------------------------------------------------------------------ the bonus
    def _encoder_obs(self, obs: Tree, episode_starts: torch.Tensor) -> Tree:
        """A rollout's observation leaves (T, N, *shape) -> what the networks read, flattened to (T * N, ...):
        without the action mask, and with ``--intrinsic-history`` the K-step input (``_with_history``)."""
        obs = split_action_mask(obs)[0] if self.masked else obs
        if self.history > 1:
            obs = self._with_history(obs, episode_starts > 0)
        return flatten_leading(obs, self.space, 2)

    def _with_history(self, obs: Tree, starts: torch.Tensor) -> Tree:
        """Observation leaves (T, N, *shape) -> the tuple of ``_history_space``: the observation, then for k = 1..K-1
        the change of each float leaf from k steps back to k - 1 steps back (other leaves: as they were k steps back).

        Before an episode's first step there is nothing: a step back from it repeats it (changes 0), as frame stacks
        do, so no step of one episode reads the one before. Carries the last K - 1 observations to the next rollout
        (``last_frames``). ``starts``: (T, N) bool, True where a step begins an episode.
        """
        frames = [obs]  # frames[k]: the observation k steps back, (T, N, *shape) leaves
        for k in range(1, self.history):
            newer = frames[k - 1]
            carried = self.last_frames[k - 1] if self.last_frames is not None else tree_map(lambda x: x[0], newer)
            shifted = tree_map2(lambda x, last: torch.cat((last.unsqueeze(0), x[:-1])), newer, carried)
            frames.append(tree_map2(lambda back, now: torch.where(_expand(starts, now), now, back), shifted, obs))
        self.last_frames = [tree_map(lambda x: x[-1].clone(), frame) for frame in frames[:-1]]

        def change(space: spaces.Space, newer: Tree, older: Tree) -> Tree:
            if isinstance(space, spaces.Dict):
                return {k: change(s, newer[k], older[k]) for k, s in space.spaces.items()}
            if isinstance(space, spaces.Tuple):
                return tuple(change(s, a, b) for s, a, b in zip(space.spaces, newer, older, strict=True))
            return newer.float() - older.float() if _is_float_box(space) else older

        return (obs, *(change(self.obs_space, frames[k - 1], frames[k]) for k in range(1, self.history)))

    def _normalise(self, obs: Tree, normalizers: nn.ModuleList | None = None) -> Tree:
        """Float Box leaves (N, *shape) -> normalised and clipped, in their shape; other leaves unchanged.
        ``normalizers``: whose statistics (default: the networks' running ones)."""
        boxes = iter(self.normalizers if normalizers is None else normalizers)

        def walk(space: spaces.Space, x: Tree) -> Tree:
            if isinstance(space, spaces.Dict):
                return {k: walk(s, x[k]) for k, s in space.spaces.items()}
            if isinstance(space, spaces.Tuple):
                return tuple(walk(s, part) for s, part in zip(space.spaces, x, strict=True))
            if _is_float_box(space):
                rms = next(boxes)
                return rms(x.reshape(x.shape[0], -1).float()).reshape(x.shape)
            return x

        return walk(self.space, obs)

    @torch.no_grad()
    def _update_normalizers(self, obs: Tree, normalizers: nn.ModuleList) -> None:
        """Float Box leaves (N, *shape) join the statistics of ``normalizers``."""
        leaves = [x for space, x in zip(leaf_spaces(self.space), _leaves(self.space, obs), strict=True)
                  if _is_float_box(space)]
        for rms, x in zip(normalizers, leaves, strict=True):
            rms.update(x.reshape(x.shape[0], -1))

    @torch.no_grad()
    def novelty(self, obs: Tree) -> torch.Tensor:
        """The predictor's squared error on normalised observation leaves (N, *shape): (N,)."""
        return (self.predictor(obs) - self.target(obs)).pow(2).mean(-1)

    def first_visits(self, cells: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
        """Per step, whether its observation's cell is new in the env's episode; advances ``visited``.

        Args:
            cells: (T, N) int64 hashes of the discretised observations.
            episode_starts: (T, N) 1 where a step begins an episode (its env's visited cells are cleared first).

        Returns:
            (T, N) bool; False at episode starts (their observation is the episode's first, paid 0).
        """
        first = np.zeros(cells.shape, dtype=bool)
        for t in range(cells.shape[0]):
            for n in range(cells.shape[1]):
                seen, cell = self.visited[n], int(cells[t, n])
                if episode_starts[t, n]:
                    seen.clear()
                else:
                    first[t, n] = cell not in seen
                seen.add(cell)
        return first

    def cells(self, obs: Tree, lead: tuple[int, int]) -> np.ndarray:
        """Hashes of the discretised observations (floats cut into ``episodic_bin``-std-wide cells of the first
        rollout's statistics, integers exact): leaves (T * N, *shape) -> (T, N) int64, the same in every process (no
        Python ``hash``). The first call fixes the statistics, from its own observations."""
        if not self.cells_fixed:
            self._update_normalizers(obs, self.cell_normalizers)
            self.cells_fixed = True
        normalised = self._normalise(obs, self.cell_normalizers)
        parts = []  # (B, k) arrays, integer leaves in their own dtype (a uint8 frame stays one byte a pixel)
        for space, x in zip(leaf_spaces(self.space), _leaves(self.space, normalised), strict=True):
            x = x.reshape(x.shape[0], -1)
            # int64: unclipped cells of a dimension that barely moved in the first rollout can be far from 0.
            x = torch.floor(x / self.ppo.episodic_bin).to(torch.int64) if _is_float_box(space) else x
            parts.append(np.ascontiguousarray(x.cpu().numpy()))
        hashes = np.empty(parts[0].shape[0], dtype=np.int64)
        for i in range(hashes.shape[0]):
            h = hashlib.blake2b(digest_size=8)
            for part in parts:
                h.update(part[i].tobytes())
            hashes[i] = int.from_bytes(h.digest(), "little", signed=True)
        return hashes.reshape(lead)

    def rollout_rewards(self, rollout: Rollout) -> tuple[torch.Tensor, dict[str, float]]:
        """The normalised intrinsic rewards of one rollout, then one training pass of the predictor on it.

        The observation statistics take the rollout in first (the bonus is computed after collection, so no
        acting policy saw them), then the bonus is computed with the predictor as it was before this rollout,
        and the intrinsic return's statistics divide it.

        Args:
            rollout: T steps of N envs (its ``obs`` and ``episode_starts``).

        Returns:
            rewards_int (T, N) float32, and statistics: ``intrinsic_reward_raw`` and ``intrinsic_reward`` (means
            before and after normalisation), ``intrinsic_scale`` (the divisor, the running std of the intrinsic
            return) and ``predictor_loss`` (the predictor's mean loss over its training pass).
        """
        t_len, n_envs = rollout.episode_starts.shape
        obs = self._encoder_obs(rollout.obs, rollout.episode_starts)
        self._update_normalizers(obs, self.normalizers)
        inputs = self._normalise(obs)
        novelty = self.novelty(inputs).view(t_len, n_envs)
        starts = rollout.episode_starts > 0
        if self.method == "noveld":
            previous = torch.cat((self.prev_novelty.unsqueeze(0), novelty[:-1]))
            first = self.first_visits(self.cells(obs, (t_len, n_envs)), starts.cpu().numpy())
            raw = (novelty - self.ppo.noveld_alpha * previous).clamp(min=0.0)
            raw = raw * torch.as_tensor(first, device=raw.device)
            self.prev_novelty = novelty[-1].clone()
        else:
            raw = torch.where(starts, torch.zeros_like(novelty), novelty)
        rewards = self.return_scaler.scale_rollout(raw, torch.zeros_like(raw))
        loss = self.train_predictor(inputs)
        return rewards, {"intrinsic_reward_raw": float(raw.mean()), "intrinsic_reward": float(rewards.mean()),
                         "intrinsic_scale": self.return_scaler.std, "predictor_loss": loss}

    def train_predictor(self, inputs: Tree) -> float:
        """``update_epochs`` x ``num_minibatches`` steps of the predictor on normalised leaves (B, *shape), each
        on a random ``intrinsic_update_fraction`` of its minibatch; returns the mean loss."""
        batch = _leaves(self.space, inputs)[0].shape[0]
        losses = []
        for _ in range(self.ppo.update_epochs):
            order = torch.randperm(batch, generator=self.generator, device=self.generator.device).to(self.device)
            for ids in order.chunk(self.ppo.num_minibatches):
                keep = torch.rand(ids.shape[0], generator=self.generator,
                                  device=self.generator.device).to(self.device) < self.ppo.intrinsic_update_fraction
                chosen = ids[keep]
                if chosen.numel() == 0:
                    continue
                part = _take(inputs, chosen)
                loss = (self.predictor(part) - self.target(part)).pow(2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(loss.detach())
        return float(torch.stack(losses).mean()) if losses else float("nan")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a resume needs to go on bit for bit: the networks, the optimizer, the normalisers, the
        subset sampler, the intrinsic return's statistics, each env's episodic memory and, with
        ``--intrinsic-history``, its last observations."""
        return {"target": self.target.state_dict(), "predictor": self.predictor.state_dict(),
                "normalizers": self.normalizers.state_dict(), "optimizer": self.optimizer.state_dict(),
                "cell_normalizers": self.cell_normalizers.state_dict(), "cells_fixed": self.cells_fixed,
                "generator": self.generator.get_state(), "return_scaler": self.return_scaler.state_dict(),
                "prev_novelty": self.prev_novelty.clone(),
                "visited": [torch.tensor(sorted(seen), dtype=torch.int64) for seen in self.visited],
                "last_frames": (None if self.last_frames is None
                                else [tree_map(torch.clone, frame) for frame in self.last_frames])}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output; ValueError when it was saved for other spaces or another env count."""
        if len(state["visited"]) != len(self.visited):
            raise ValueError(f"the saved exploration bonus has {len(state['visited'])} envs' episodic memory, this "
                             f"run has {len(self.visited)}")
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.normalizers.load_state_dict(state["normalizers"])
        self.cell_normalizers.load_state_dict(state["cell_normalizers"])
        self.cells_fixed = bool(state["cells_fixed"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.return_scaler.load_state_dict(state["return_scaler"])
        self.prev_novelty = state["prev_novelty"].to(self.device)
        self.visited = [{int(c) for c in cells.tolist()} for cells in state["visited"]]
        frames = state.get("last_frames")  # absent from checkpoints saved before --intrinsic-history
        self.last_frames = None if frames is None else [tree_map(lambda x: x.to(self.device), f) for f in frames]


def _leaves(space: spaces.Space, tree: Tree) -> list[torch.Tensor]:
    """A tree's leaves in the order ``leaf_spaces(space)`` lists their spaces (the space's key order, whatever
    order the observation's dict has)."""
    if isinstance(space, spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in _leaves(sub, tree[key])]
    if isinstance(space, spaces.Tuple):
        return [leaf for sub, part in zip(space.spaces, tree, strict=True) for leaf in _leaves(sub, part)]
    return [tree]


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (T, N) mask viewed as (T, N, 1, ...) to broadcast against a (T, N, *shape) leaf."""
    return mask.view(*mask.shape, *([1] * (like.dim() - mask.dim())))


def _take(tree: Tree, ids: torch.Tensor) -> Tree:
    """Rows ``ids`` of every leaf (N, ...)."""
    if isinstance(tree, dict):
        return {k: _take(v, ids) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_take(v, ids) for v in tree)
    return tree[ids]
