"""RecurrentActorCritic: encode -> memory core (lstm | gru | none | stack) -> actor and critic heads.

The recurrent state is one tensor ``state: (S, L, B, W)``, laid out by the core
(``agents/model/cores.py``, which also says what S, L and W mean for each core):

- ``S`` stacks the named state tensors: ``(h, c)`` for an LSTM, ``(h,)`` for a
  GRU, ``(stack,)`` for a frame stack, nothing for ``none`` (S = 0); with a
  separate critic core the critic's tensors follow the actor's (e.g.
  ``(h_pi, c_pi, h_vf, c_vf)``).
- ``B`` is the batch (envs or agents), always dim 2; ``L`` and ``W`` are the
  core's (layers and hidden size for an LSTM / GRU, K slots of F features for
  a stack).

One tensor keeps the rollout buffer, the collector, checkpoints and the game
runtime free of per-core special cases.

Hidden-state semantics (docs/architecture.md, "Hidden-state rules"): ``state`` is the state *before* the
agent sees ``obs_t``; where ``episode_start_t`` is 1 and the policy is in
reset mode, the state is zeroed before ``obs_t`` is processed. The same rule
runs in the single-step path (rollout, game runtime) and the sequence path
(training), so the two agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.config import PolicyConfig
from agents.model.action_heads import Distribution, check_action_space, make_action_head
from agents.model.cores import make_core
from agents.model.encoders import make_leaf_encoder, update_normalizers
from agents.model.noise import CorrelatedNoise
from agents.model.value_norm import PopArtValueHead
from agents.spaces import check_observation_space, needs_obs_normalization
from agents.trees import Tree, flatten_leading, leading_shape

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_features: int, sizes: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    """A plain MLP (identity when ``sizes`` is empty); returns the module and its output size."""
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_features, size), _ACTIVATIONS[activation]()]
        in_features = size
    return (nn.Sequential(*layers) if layers else nn.Identity()), in_features


def init_image_encoders(module: nn.Module) -> None:
    """Orthogonal weights with gain sqrt(2) and zero biases for every conv and linear layer of the CNNs in
    ``module`` (the other observation encoders have no weights), as CleanRL and Stable-Baselines3 do.

    Why: PyTorch's default initialisation shrinks activations layer by layer; on the built-in games' frames
    the default-initialised CNN's features barely change when the ball moves (on DarkCatchPixels their std
    over an episode is 30-60 times smaller than with orthogonal weights), so the core starts out all but blind.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(layer.weight, 2 ** 0.5)
            nn.init.zeros_(layer.bias)


@dataclass
class StepOutput:
    """What one rollout step produces for a batch of B envs."""

    action: torch.Tensor  # (B, *action_shape)
    logprob: torch.Tensor  # (B,)
    value: torch.Tensor  # (B,)
    state: torch.Tensor  # (S, L, B, W): the state after processing obs_t


class RecurrentActorCritic(nn.Module):
    """Actor-critic with a recurrent memory, for any supported observation and action space.

    Args:
        observation_space: the env's (single, not batched) observation space.
        action_space: the env's (single) action space.
        config: network settings (core, sizes, reset or carry mode).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, config: PolicyConfig):
        super().__init__()
        check_observation_space(observation_space)
        check_action_space(action_space)
        self.observation_space, self.action_space, self.config = observation_space, action_space, config

        # normalize_obs None: the space decides (agents/spaces.py, needs_obs_normalization).
        self.normalize_obs = (config.normalize_obs if config.normalize_obs is not None
                              else needs_obs_normalization(observation_space, config.obs_encoder))
        self.preprocess = make_leaf_encoder(observation_space, self.normalize_obs, config.obs_encoder)
        if config.ortho_init:
            init_image_encoders(self.preprocess)
        self.encoder, features = mlp(self.preprocess.out_features, tuple(config.encoder_sizes), config.activation)
        self.actor_core = make_core(config, features)
        # A core without weights (none, stack) would compute exactly the actor's memory again: the critic reads
        # the actor's core then (its head MLP is its own either way).
        has_weights = any(True for _ in self.actor_core.parameters())
        self.critic_core = make_core(config, features) if config.separate_critic and has_weights else None
        core_out = self.actor_core.out_features
        self.actor_mlp, pi_features = mlp(core_out, tuple(config.head_sizes), config.activation)
        self.critic_mlp, vf_features = mlp(core_out, tuple(config.head_sizes), config.activation)
        self.action_head = make_action_head(action_space, pi_features, config.ortho_init)
        # --normalize-value: PopArt's head, whose output stays in return units (agents/model/value_norm.py).
        self.value_head = PopArtValueHead(vf_features) if config.normalize_value else nn.Linear(vf_features, 1)
        if config.ortho_init:
            nn.init.orthogonal_(self.value_head.weight, 1.0)
            nn.init.zeros_(self.value_head.bias)
        self._actor_states = self.actor_core.num_state_tensors

    # ------------------------------------------------------------------ state
    @property
    def has_critic_core(self) -> bool:
        """Whether the critic has its own recurrent core (``critic_memory``), so the two halves can run apart."""
        return self.critic_core is not None

    @property
    def cores(self) -> list[nn.Module]:
        """The memory cores in the state's order: the actor's, then the critic's when it has its own."""
        return [self.actor_core] if self.critic_core is None else [self.actor_core, self.critic_core]

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """(S, L, W): the state tensor's shape without the batch dim (the cores' S summed; agents/model/cores.py)."""
        s, layers, width = self.actor_core.state_shape
        return (s * (2 if self.critic_core is not None else 1), layers, width)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Zero state (S, L, B, W)."""
        s, layers, width = self.state_shape
        return torch.zeros(s, layers, batch_size, width, device=device)

    # ------------------------------------------------------------------ shared path
    def encode(self, obs: Tree) -> torch.Tensor:
        """obs leaves (N, *shape) -> features (N, F)."""
        return self.encoder(self.preprocess(obs))

    def encode_sequence(self, obs: Tree, t_len: int, batch: int) -> torch.Tensor:
        """obs leaves (T, B, *shape) -> features (T, B, F) that feed the core(s)."""
        return self.encode(flatten_leading(obs, self.observation_space, 2)).view(t_len, batch, -1)

    def actor_memory(
        self, features: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's core over features (T, B, F) from the full state (S, L, B, W) -> (T, B, O), actor state."""
        return self.actor_core(features, state[: self._actor_states], episode_start)

    def critic_memory(
        self, features: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The separate critic core (requires ``critic_core``): like ``actor_memory``, for the critic."""
        return self.critic_core(features, state[self._actor_states:], episode_start)

    def memory(
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode and run the recurrent core(s) over T steps for B envs.

        Args:
            obs: leaves (T, B, *shape).
            state: (S, L, B, W), the state before obs[0].
            episode_start: (T, B), 1 where obs[t] begins an episode.

        Returns:
            actor features (T, B, F), critic features (T, B, F) (the same tensor when the critic
            shares the core), final state (S, L, B, W).
        """
        features = self.encode_sequence(obs, *episode_start.shape)
        hidden, new_actor_state = self.actor_memory(features, state, episode_start)
        if self.critic_core is None:
            return hidden, hidden, new_actor_state
        critic_hidden, new_critic_state = self.critic_memory(features, state, episode_start)
        return hidden, critic_hidden, torch.cat((new_actor_state, new_critic_state))

    def decode(self, hidden: torch.Tensor, critic_hidden: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """Heads: actor features (N, F) -> action distribution, critic features (N, F) -> value (N,)."""
        return self.action_distribution(hidden), self.value_from(critic_hidden)

    def action_distribution(self, hidden: torch.Tensor) -> Distribution:
        """The actor's head: core outputs (N, F) -> the action distribution over N steps."""
        return self.action_head(self.actor_mlp(hidden))

    def value_from(self, critic_hidden: torch.Tensor) -> torch.Tensor:
        """The critic's head: critic core outputs (N, F) -> V (N,)."""
        return self.value_head(self.critic_mlp(critic_hidden)).squeeze(-1)

    @property
    def value_scale(self) -> torch.Tensor | None:
        """With ``normalize_value``: the value targets' running std, by which the loss divides value errors (the
        error in normalised units); None otherwise."""
        return self.value_head.scale if isinstance(self.value_head, PopArtValueHead) else None

    def update_value_statistics(self, returns: torch.Tensor) -> None:
        """With ``normalize_value``: fold one rollout's value targets (T, N) into the head's statistics, keeping
        its outputs; a no-op otherwise."""
        if isinstance(self.value_head, PopArtValueHead):
            self.value_head.update(returns)

    def score_actions(self, hidden: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of stored actions (N, *action_shape) given core outputs (N, F): (N,), (N,).

        The loss's view of the actor: it runs on the real steps of a minibatch only.
        """
        dist = self.action_distribution(hidden)
        return dist.log_prob(self.action_head.flat_actions(actions)), dist.entropy()

    # ------------------------------------------------------------------ action space
    @property
    def action_shape(self) -> tuple[int, ...]:
        """One stored action's shape (what ``step`` returns per env)."""
        return self.action_head.action_shape

    @property
    def action_dtype(self) -> torch.dtype:
        return self.action_head.action_dtype

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        """Actions from ``step`` (B, *action_shape) -> what the env's ``step`` takes, batched."""
        return self.action_head.to_env(action)

    def forward_sequence(
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """Run T steps for B envs: ``memory`` then ``decode``.

        Args:
            obs: leaves (T, B, *shape).
            state: (S, L, B, W), the state before obs[0].
            episode_start: (T, B), 1 where obs[t] begins an episode.

        Returns:
            dist over actions with batch (T*B,), value (T, B), final state (S, L, B, W).
        """
        t_len, batch = episode_start.shape
        hidden, critic_hidden, new_state = self.memory(obs, state, episode_start)
        flat = hidden.reshape(t_len * batch, -1)
        critic_flat = flat if critic_hidden is hidden else critic_hidden.reshape(t_len * batch, -1)
        dist, value = self.decode(flat, critic_flat)
        return dist, value.view(t_len, batch), new_state

    # ------------------------------------------------------------------ rollout / runtime
    def step(
        self,
        obs: Tree,
        state: torch.Tensor,
        episode_start: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        noise: CorrelatedNoise | None = None,
    ) -> StepOutput:
        """One step for B envs: obs leaves (B, *shape), state (S, L, B, W), episode_start (B,).

        ``noise`` (rollouts with ``--noise-correlation``) supplies the sampling noise instead of fresh draws.
        """
        dist, value, new_state = self._one_step(obs, state, episode_start)
        if deterministic:
            raw = dist.mode()
        elif noise is not None:
            raw = dist.sample(normal=noise.draw(dist.noise_shape, generator, value.device))
        else:
            raw = dist.sample(generator)
        return StepOutput(self.action_head.shape_actions(raw), dist.log_prob(raw), value, new_state)

    def value(self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor) -> torch.Tensor:
        """V(obs) for B envs without advancing anyone's state: (B,)."""
        return self._one_step(obs, state, episode_start)[1]

    def _one_step(
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """``forward_sequence`` for T = 1 without the time dim: dist (B,), value (B,), new state (S, L, B, W).

        Called every rollout step, so it skips the sequence path's reshapes and segment checks.
        """
        features = self.encode(obs)
        hidden, new_state = self.actor_core.step(features, state[: self._actor_states], episode_start)
        critic_hidden = hidden
        if self.critic_core is not None:
            critic_hidden, critic_state = self.critic_core.step(features, state[self._actor_states:], episode_start)
            new_state = torch.cat((new_state, critic_state))
        dist, value = self.decode(hidden, critic_hidden)
        return dist, value, new_state

    # ------------------------------------------------------------------ training
    def evaluate(
        self, obs: Tree, start_state: torch.Tensor, episode_start: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score stored actions along sequences, in one fused recurrent call per core.

        Args:
            obs: leaves (T, M, *shape) for M sequences (padded at the end).
            start_state: (S, L, M, W), each sequence's stored start state.
            episode_start: (T, M).
            actions: (T, M, *action_shape).

        Returns:
            logprob (T, M), entropy (T, M), value (T, M).
        """
        t_len, batch = episode_start.shape
        dist, value, _ = self.forward_sequence(obs, start_state, episode_start)
        flat = self.action_head.flat_actions(actions.reshape(t_len * batch, *actions.shape[2:]))
        logprob = dist.log_prob(flat).view(t_len, batch)
        entropy = dist.entropy().view(t_len, batch)
        return logprob, entropy, value

    @torch.no_grad()
    def update_obs_normalizer(self, obs: Tree) -> None:
        """Feed observations with leaves (..., *shape) to the running normalisers (no-op when off)."""
        if self.normalize_obs:
            n_leading = len(leading_shape(obs, self.observation_space))
            update_normalizers(self.preprocess, flatten_leading(obs, self.observation_space, n_leading))

