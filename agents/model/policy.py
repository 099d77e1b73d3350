"""RecurrentActorCritic: encode -> memory core (lstm | gru | none | stack) -> actor and critic heads.

The recurrent state is one tensor ``state: (S, L, B, W)``, laid out by the core
(``agents/model/cores.py``, which also says what S, L and W mean for each core):

- ``S`` stacks the named state tensors: ``(h, c)`` for an LSTM, ``(h,)`` for a
  GRU, ``(stack,)`` for a frame stack, nothing for ``none`` (S = 0); with a
  separate or central critic core the critic's tensors follow the actor's (e.g.
  ``(h_pi, c_pi, h_vf, c_vf)``).
- ``B`` is the batch (envs or agents), always dim 2; ``L`` and ``W`` are the
  core's (layers and hidden size for an LSTM / GRU, K slots of F features for
  a stack).

One tensor keeps the rollout buffer, the collector, checkpoints and the game
runtime free of per-core special cases.

Multi-agent inputs beside the observation (docs/multiagent.md) travel as one dict, ``agent_inputs``, whose
leaves have the same leading dims as the observation's:

- ``"agent_index"`` (int64): the agent's slot among the env's ``possible_agents`` (with ``--policy-map``, among
  its own policy's agents: ``agents``). With
  ``--agent-index-input`` its one-hot joins the preprocessed observation before the encoder MLP (so it works for
  every observation space, images included, and the MLP mixes it with the observation); the central critic
  always gets it.
- ``"global_state"`` (the env's ``state_space``): with ``--central-critic`` the critic's only other input: it
  has its own encoder and recurrent core over (global state, slot one-hot), MAPPO's agent-specific global state
  (Yu et al. 2022). The actor never reads it, so a step without it is an actor-only step (value NaN, the critic's
  state held): evaluation, watch, the runners and exports never need ``env.state()``.

Action masks (docs/action_masks.md): an observation space that is a Dict with an ``"action_mask"`` entry makes
a masked policy. ``observation_space`` stays the env's (the rollout buffer, checkpoints and exports keep the mask
as one more observation leaf, so stored steps are rescored under the mask they were taken with); the encoder reads
``policy_observation_space`` (the rest, or PettingZoo's ``"observation"`` entry itself) and the action head the
mask, as ``legal`` (N, num_outputs) bool.

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
from torch.nn import functional as F

from agents.config import ConfigError, PolicyConfig
from agents.model.action_heads import Distribution, check_action_space, make_action_head
from agents.model.cores import make_core
from agents.model.encoders import make_leaf_encoder, update_normalizers
from agents.model.noise import CorrelatedNoise
from agents.model.readout import ProductReadout
from agents.model.value_norm import PopArtValueHead
from agents.spaces import (
    action_mask_sizes,
    check_action_mask_space,
    check_observation_space,
    has_action_mask,
    needs_obs_normalization,
    policy_observation_space,
    split_action_mask,
)
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
    value_int: torch.Tensor | None = None  # (B,) the intrinsic value, asked for with step(intrinsic=True); else None


class RecurrentActorCritic(nn.Module):
    """Actor-critic with a recurrent memory, for any supported observation and action space.

    Args:
        observation_space: the env's (single, not batched) observation space.
        action_space: the env's (single) action space.
        config: network settings (core, sizes, reset or carry mode).
        agents: a multi-agent env's ``possible_agents``, or a named policy's own agents (the slots of the
            agent-index one-hot); kept only when ``config.agent_index_input`` or ``config.central_critic`` reads
            them.
        state_space: a multi-agent env's ``state_space`` (the central critic's input; needs
            ``config.central_critic``).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, config: PolicyConfig,
                 agents: tuple[str, ...] | list[str] = (), state_space: spaces.Space | None = None):
        super().__init__()
        check_observation_space(observation_space)
        check_action_space(action_space)
        check_action_mask_space(observation_space, action_space)
        self.observation_space, self.action_space, self.config = observation_space, action_space, config
        # A masked env: the mask's per-dimension sizes (n, or MultiDiscrete's nvec); None for an unmasked one.
        self.action_mask_sizes = action_mask_sizes(action_space) if has_action_mask(observation_space) else None
        encoder_space = policy_observation_space(observation_space)
        uses_index = config.agent_index_input or config.central_critic
        if uses_index and not agents:
            raise ConfigError("--agent-index-input and --central-critic need a multi-agent env (a pettingzoo "
                              "ParallelEnv, docs/multiagent.md); drop them for this env.")
        self.agents: tuple[str, ...] = tuple(str(a) for a in agents) if uses_index else ()
        if config.central_critic and state_space is None:
            raise ConfigError("--central-critic needs the env's state_space (PettingZoo's state() / state_space); "
                              "give the env both, or drop --central-critic.")
        self.state_space = state_space if config.central_critic else None
        # The actor's one-hot slot input widens the encoder MLP's input (0 when off).
        actor_index_size = len(self.agents) if config.agent_index_input else 0

        # normalize_obs None: the space decides (agents/spaces.py, needs_obs_normalization).
        self.normalize_obs = (config.normalize_obs if config.normalize_obs is not None
                              else needs_obs_normalization(encoder_space, config.obs_encoder))
        self.preprocess = make_leaf_encoder(encoder_space, self.normalize_obs, config.obs_encoder)
        if config.ortho_init:
            init_image_encoders(self.preprocess)
        self.encoder, features = mlp(self.preprocess.out_features + actor_index_size, tuple(config.encoder_sizes),
                                     config.activation)
        memory = make_core(config, features)
        # --readout-products: the heads also read products of the memory and the step's features
        # (agents/model/readout.py); the state and its rules stay the memory core's.
        self.actor_core = (ProductReadout(memory, features, config.readout_products, config.ortho_init)
                           if config.readout_products else memory)
        if config.central_critic:
            self.critic_core = self._make_central_critic(config)
        else:
            # A core without weights (none, stack) would compute exactly the actor's memory again: the critic
            # reads the actor's core then (its head MLP is its own either way).
            has_weights = any(True for _ in memory.parameters())
            self.critic_core = make_core(config, features) if config.separate_critic and has_weights else None
        core_out = self.actor_core.out_features
        critic_out = core_out if self.critic_core is None else self.critic_core.out_features
        self.actor_mlp, pi_features = mlp(core_out, tuple(config.head_sizes), config.activation)
        self.critic_mlp, vf_features = mlp(critic_out, tuple(config.head_sizes), config.activation)
        self.action_head = make_action_head(action_space, pi_features, config.ortho_init)
        # --normalize-value: PopArt's head, whose output stays in return units (agents/model/value_norm.py).
        self.value_head = PopArtValueHead(vf_features) if config.normalize_value else nn.Linear(vf_features, 1)
        if config.ortho_init:
            nn.init.orthogonal_(self.value_head.weight, 1.0)
            nn.init.zeros_(self.value_head.bias)
        # --exploration: a second critic output for the intrinsic return stream (agents/train/exploration.py),
        # on the critic's features; made only then, so a run without it keeps its parameters and checkpoints.
        self.value_int_head = None
        if config.exploration != "none":
            self.value_int_head = nn.Linear(vf_features, 1)
            if config.ortho_init:
                nn.init.orthogonal_(self.value_int_head.weight, 1.0)
                nn.init.zeros_(self.value_int_head.bias)
        # --recall-coef: a training-only head from the actor core's outputs to the running maximum of the
        # preprocessed observation (``recall_targets``); made only then, so a run without it keeps its parameters.
        # It reads the memory's output alone (without --readout-products' products, which hold nothing more of
        # the past): ``recall_input``.
        self.recall_head = (nn.Linear(memory.out_features, self.preprocess.out_features) if config.recall_coef > 0
                            else None)
        self._actor_states = self.actor_core.num_state_tensors

    def _make_central_critic(self, config: PolicyConfig) -> nn.Module:
        """The central critic's encoder (``critic_preprocess``, ``critic_encoder``) over (global state, slot one-hot)
        and its own core, which it has whatever the core kind: its inputs are not the actor's."""
        check_observation_space(self.state_space)
        normalize = (config.normalize_obs if config.normalize_obs is not None
                     else needs_obs_normalization(self.state_space, "auto"))
        self.normalize_state = normalize
        self.critic_preprocess = make_leaf_encoder(self.state_space, normalize, "auto")
        if config.ortho_init:
            init_image_encoders(self.critic_preprocess)
        self.critic_encoder, features = mlp(self.critic_preprocess.out_features + len(self.agents),
                                            tuple(config.encoder_sizes), config.activation)
        core = make_core(config, features)
        if core.state_shape[1:] != self.actor_core.state_shape[1:]:
            raise ConfigError(f"--central-critic with --core {config.core} needs the critic's core state "
                              f"{core.state_shape[1:]} to match the actor's {self.actor_core.state_shape[1:]}; give "
                              f"both the same width with --encoder-sizes (e.g. --encoder-sizes 64).")
        return core

    @property
    def central_critic(self) -> bool:
        """Whether the critic reads the env's global state (``--central-critic``): runners and exports are then
        actor-only."""
        return self.state_space is not None

    @property
    def actor_state_shape(self) -> tuple[int, int, int]:
        """(S_actor, L, W): the actor core's part of the state, the first S_actor of ``state_shape``'s S."""
        return (self._actor_states, *self.state_shape[1:])

    def agent_one_hot(self, agent_index: torch.Tensor) -> torch.Tensor:
        """Slots (N,) int64 -> their one-hot (N, len(agents)) float32."""
        return F.one_hot(agent_index.long(), len(self.agents)).float()

    def slot_of(self, agent: object) -> int:
        """An agent's slot among ``agents`` (its name, as the env's ``possible_agents`` spell it; a named policy's
        ``agents`` are its own agents only).

        Raises:
            KeyError: ``agent`` is not one of the run's agents.
        """
        try:
            return self.agents.index(str(agent))
        except ValueError:
            raise KeyError(f"agent id {agent!r} is not an agent of this run ({', '.join(self.agents)}); a policy "
                           f"with an agent-index input takes the names in the env's possible_agents (with "
                           f"--policy-map, those of its own agents).") from None

    # ------------------------------------------------------------------ action masks
    @property
    def masked(self) -> bool:
        """Whether the env gives an action mask in its observation (``observation_space["action_mask"]``)."""
        return self.action_mask_sizes is not None

    def encoder_obs(self, obs: Tree) -> Tree:
        """What the encoder reads of an observation tree: all of it, or for a masked env all but the mask."""
        return split_action_mask(obs)[0] if self.masked else obs

    def legal_actions(self, obs: Tree) -> torch.Tensor | None:
        """A masked env's legal actions: the mask leaf of ``obs`` (..., num_outputs) as bool; None unmasked."""
        return split_action_mask(obs)[1] != 0 if self.masked else None

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
        critic_s = 0 if self.critic_core is None else self.critic_core.state_shape[0]
        return (s + critic_s, layers, width)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Zero state (S, L, B, W)."""
        s, layers, width = self.state_shape
        return torch.zeros(s, layers, batch_size, width, device=device)

    # ------------------------------------------------------------------ shared path
    def encode(self, obs: Tree, agent_inputs: dict | None = None) -> torch.Tensor:
        """obs leaves (N, *shape) (and with ``agent_index_input``, ``agent_inputs["agent_index"]`` (N,)) -> the
        actor's features (N, F)."""
        x = self.preprocess(self.encoder_obs(obs))
        if self.config.agent_index_input:
            x = torch.cat((x, self.agent_one_hot(agent_inputs["agent_index"])), dim=-1)
        return self.encoder(x)

    def encode_sequence(self, obs: Tree, t_len: int, batch: int, agent_inputs: dict | None = None) -> torch.Tensor:
        """obs leaves (T, B, *shape) -> features (T, B, F) that feed the actor's core (and a critic sharing it)."""
        flat_inputs = None if agent_inputs is None else flatten_leading(agent_inputs, None, 2)
        return self.encode(flatten_leading(obs, self.observation_space, 2), flat_inputs).view(t_len, batch, -1)

    def encode_critic(self, agent_inputs: dict) -> torch.Tensor:
        """The central critic's features (N, F) from ``agent_inputs``: global state leaves (N, *state_shape) and
        agent index (N,)."""
        x = self.critic_preprocess(agent_inputs["global_state"])
        return self.critic_encoder(torch.cat((x, self.agent_one_hot(agent_inputs["agent_index"])), dim=-1))

    def encode_critic_sequence(self, agent_inputs: dict, t_len: int, batch: int) -> torch.Tensor:
        """``encode_critic`` over (T, B) leaves -> (T, B, F)."""
        return self.encode_critic(flatten_leading(agent_inputs, None, 2)).view(t_len, batch, -1)

    def critic_features(self, features: torch.Tensor, agent_inputs: dict | None, t_len: int,
                        batch: int) -> torch.Tensor:
        """What the separate critic core reads over (T, B): the actor's ``features`` (T, B, F), or with a central
        critic its own encoding of ``agent_inputs``."""
        return self.encode_critic_sequence(agent_inputs, t_len, batch) if self.central_critic else features

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
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, agent_inputs: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode and run the recurrent core(s) over T steps for B envs.

        Args:
            obs: leaves (T, B, *shape).
            state: (S, L, B, W), the state before obs[0].
            episode_start: (T, B), 1 where obs[t] begins an episode.
            agent_inputs: multi-agent inputs with leaves (T, B, ...) (module docstring), where the policy reads
                them.

        Returns:
            actor features (T, B, F), critic features (T, B, F) (the same tensor when the critic
            shares the core; None for a central critic without ``"global_state"``: actor-only, its state
            returned as it came), final state (S, L, B, W).
        """
        t_len, batch = episode_start.shape
        features = self.encode_sequence(obs, t_len, batch, agent_inputs)
        hidden, new_actor_state = self.actor_memory(features, state, episode_start)
        if self.critic_core is None:
            return hidden, hidden, new_actor_state
        if self.central_critic and (agent_inputs is None or "global_state" not in agent_inputs):
            return hidden, None, torch.cat((new_actor_state, state[self._actor_states:]))
        critic_hidden, new_critic_state = self.critic_memory(
            self.critic_features(features, agent_inputs, t_len, batch), state, episode_start)
        return hidden, critic_hidden, torch.cat((new_actor_state, new_critic_state))

    def decode(self, hidden: torch.Tensor, critic_hidden: torch.Tensor,
               legal: torch.Tensor | None = None) -> tuple[Distribution, torch.Tensor]:
        """Heads: actor features (N, F) (and a masked env's ``legal`` (N, num_outputs)) -> action distribution,
        critic features (N, F) -> value (N,)."""
        return self.action_distribution(hidden, legal), self.value_from(critic_hidden)

    def action_distribution(self, hidden: torch.Tensor, legal: torch.Tensor | None = None) -> Distribution:
        """The actor's head: core outputs (N, F) -> the action distribution over N steps; a masked env's
        ``legal`` (N, num_outputs) bool leaves its illegal actions probability 0."""
        return self.action_head(self.actor_mlp(hidden), legal)

    def value_from(self, critic_hidden: torch.Tensor) -> torch.Tensor:
        """The critic's head: critic core outputs (N, F) -> V (N,)."""
        return self.value_head(self.critic_mlp(critic_hidden)).squeeze(-1)

    @property
    def has_intrinsic_value(self) -> bool:
        """Whether the critic has the intrinsic value head (``--exploration``)."""
        return self.value_int_head is not None

    def intrinsic_value_from(self, critic_hidden: torch.Tensor) -> torch.Tensor:
        """The intrinsic value head (requires ``has_intrinsic_value``): critic core outputs (N, F) -> V_int (N,)."""
        return self.value_int_head(self.critic_mlp(critic_hidden)).squeeze(-1)

    def intrinsic_value(self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor) -> torch.Tensor:
        """V_int(obs) for B envs without advancing anyone's state: (B,) (requires ``has_intrinsic_value``)."""
        return self.intrinsic_value_from(self._step_parts(obs, state, episode_start)[3])

    @property
    def has_recall_head(self) -> bool:
        """Whether the actor core has the auxiliary recall head (``--recall-coef``)."""
        return self.recall_head is not None

    def recall_input(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the recall head reads of the actor core's outputs (..., O): the memory core's own output, the first
        ``memory_core(actor_core).out_features`` of them (all of them without ``--readout-products``)."""
        return hidden[..., : self.recall_head.in_features]

    @torch.no_grad()
    def recall_targets(self, obs: Tree, episode_start: torch.Tensor) -> torch.Tensor:
        """What the recall head is asked for: obs leaves (T, M, *shape) -> (T, M, P), at each step the elementwise
        maximum of the preprocessed observation (P features, the encoder's input; a masked env's mask left out)
        over the steps since the episode began or, where it began before the sequence, since the sequence's
        first step. A feature that was ever on in that span stays on: with one-hot facts (a card's value shown
        once) the target is everything shown so far, which only a memory knows once the view has moved on.

        Args:
            episode_start: (T, M), 1 where obs[t] begins an episode (the running maximum restarts there).
        """
        t_len, batch = episode_start.shape
        seen = self.preprocess(self.encoder_obs(flatten_leading(obs, self.observation_space, 2)))
        seen = seen.view(t_len, batch, -1)
        targets = torch.empty_like(seen)
        running = seen[0]
        targets[0] = running
        restart = episode_start.bool().unsqueeze(-1)  # (T, M, 1)
        for t in range(1, t_len):
            running = torch.where(restart[t], seen[t], torch.maximum(running, seen[t]))
            targets[t] = running
        return targets

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

    def score_actions(self, hidden: torch.Tensor, actions: torch.Tensor,
                      legal: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of stored actions (N, *action_shape) given core outputs (N, F) (and a masked
        env's stored ``legal`` (N, num_outputs)): (N,), (N,).

        The loss's view of the actor: it runs on the real steps of a minibatch only.
        """
        dist = self.action_distribution(hidden, legal)
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
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, agent_inputs: dict | None = None
    ) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """Run T steps for B envs: ``memory`` then ``decode``.

        Args:
            obs: leaves (T, B, *shape).
            state: (S, L, B, W), the state before obs[0].
            episode_start: (T, B), 1 where obs[t] begins an episode.
            agent_inputs: multi-agent inputs, leaves (T, B, ...) (see ``memory``).

        Returns:
            dist over actions with batch (T*B,), value (T, B) (NaN for an actor-only step, see ``memory``),
            final state (S, L, B, W).
        """
        t_len, batch = episode_start.shape
        hidden, critic_hidden, new_state = self.memory(obs, state, episode_start, agent_inputs)
        flat = hidden.reshape(t_len * batch, -1)
        legal = self.legal_actions(obs)
        if legal is not None:
            legal = legal.reshape(t_len * batch, -1)
        if critic_hidden is None:
            value = torch.full((t_len, batch), float("nan"), device=flat.device)
            return self.action_distribution(flat, legal), value, new_state
        critic_flat = flat if critic_hidden is hidden else critic_hidden.reshape(t_len * batch, -1)
        dist, value = self.decode(flat, critic_flat, legal)
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
        agent_inputs: dict | None = None,
        intrinsic: bool = False,
    ) -> StepOutput:
        """One step for B envs: obs leaves (B, *shape), state (S, L, B, W), episode_start (B,).

        ``noise`` (rollouts with ``--noise-correlation``) supplies the sampling noise instead of fresh draws.
        ``agent_inputs``: multi-agent inputs, leaves (B, ...); with a central critic and no ``"global_state"``
        the step is actor-only: value NaN, the critic's state returned as it came. ``intrinsic``: also the
        intrinsic value (``value_int``, requires ``has_intrinsic_value``): only the training rollout stores it,
        so evaluation, runners and watch do not compute it.
        """
        dist, value, new_state, critic_hidden = self._step_parts(obs, state, episode_start, agent_inputs)
        value_int = self.intrinsic_value_from(critic_hidden) if intrinsic else None
        if deterministic:
            raw = dist.mode()
        elif noise is not None:
            raw = dist.sample(normal=noise.draw(dist.noise_shape, generator, value.device))
        else:
            raw = dist.sample(generator)
        return StepOutput(self.action_head.shape_actions(raw), dist.log_prob(raw), value, new_state, value_int)

    def value(self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor,
              agent_inputs: dict | None = None) -> torch.Tensor:
        """V(obs) for B envs without advancing anyone's state: (B,)."""
        return self._one_step(obs, state, episode_start, agent_inputs)[1]

    def _one_step(
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, agent_inputs: dict | None = None
    ) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """``forward_sequence`` for T = 1 without the time dim: dist (B,), value (B,), new state (S, L, B, W)."""
        return self._step_parts(obs, state, episode_start, agent_inputs)[:3]

    def _step_parts(
        self, obs: Tree, state: torch.Tensor, episode_start: torch.Tensor, agent_inputs: dict | None = None
    ) -> tuple[Distribution, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``_one_step``'s dist, value and new state, and the critic's core outputs (B, F) (None for an actor-only
        step), which the intrinsic value head reads.

        Called every rollout step, so it skips the sequence path's reshapes and segment checks.
        """
        features = self.encode(obs, agent_inputs)
        hidden, new_state = self.actor_core.step(features, state[: self._actor_states], episode_start)
        critic_hidden = hidden
        legal = self.legal_actions(obs)
        if self.central_critic and (agent_inputs is None or "global_state" not in agent_inputs):
            # Actor-only (no env.state() here): no value, the critic's memory held.
            dist = self.action_distribution(hidden, legal)
            value = torch.full((episode_start.shape[0],), float("nan"), device=episode_start.device)
            return dist, value, torch.cat((new_state, state[self._actor_states:])), None
        if self.critic_core is not None:
            critic_in = self.encode_critic(agent_inputs) if self.central_critic else features
            critic_hidden, critic_state = self.critic_core.step(critic_in, state[self._actor_states:], episode_start)
            new_state = torch.cat((new_state, critic_state))
        dist, value = self.decode(hidden, critic_hidden, legal)
        return dist, value, new_state, critic_hidden

    # ------------------------------------------------------------------ training
    def evaluate(
        self, obs: Tree, start_state: torch.Tensor, episode_start: torch.Tensor, actions: torch.Tensor,
        agent_inputs: dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score stored actions along sequences, in one fused recurrent call per core.

        Args:
            obs: leaves (T, M, *shape) for M sequences (padded at the end).
            start_state: (S, L, M, W), each sequence's stored start state.
            episode_start: (T, M).
            actions: (T, M, *action_shape).
            agent_inputs: multi-agent inputs, leaves (T, M, ...).

        Returns:
            logprob (T, M), entropy (T, M), value (T, M).
        """
        t_len, batch = episode_start.shape
        dist, value, _ = self.forward_sequence(obs, start_state, episode_start, agent_inputs)
        flat = self.action_head.flat_actions(actions.reshape(t_len * batch, *actions.shape[2:]))
        logprob = dist.log_prob(flat).view(t_len, batch)
        entropy = dist.entropy().view(t_len, batch)
        return logprob, entropy, value

    @torch.no_grad()
    def update_obs_normalizer(self, obs: Tree, agent_inputs: dict | None = None) -> None:
        """Feed observations with leaves (..., *shape) to the running normalisers (no-op when off); with a central
        critic, ``agent_inputs["global_state"]`` (same leading dims) to the critic's."""
        if self.normalize_obs:
            n_leading = len(leading_shape(obs, self.observation_space))
            update_normalizers(self.preprocess,
                               self.encoder_obs(flatten_leading(obs, self.observation_space, n_leading)))
        if self.central_critic and self.normalize_state:
            states = agent_inputs["global_state"]
            n_leading = len(leading_shape(states, self.state_space))
            update_normalizers(self.critic_preprocess, flatten_leading(states, self.state_space, n_leading))

