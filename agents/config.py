"""Typed training configuration: env, policy, PPO and run settings, with validation.

Every field carries a one-line help text that becomes the command line's
``--help``. Flag names are the field names with dashes (``bptt_len`` ->
``--bptt-len``), so a preset, a JSON config and the command line all use the
same names. Sizes derived from the config (batch size, iteration count) are
properties, never written back into it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.registry import BACKENDS, CORES


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting and how to fix it."""


# Policy settings added (or given a new default) after runs were saved, with the value such a run trained with: a
# saved config gets these for the keys it lacks, so its checkpoints load as they were trained. Before
# --obs-encoder every 3-dim uint8 image went to the CNN; before the chrono settings there was no chrono
# initialisation, and when set it covered every unit's gates.
_POLICY_BEFORE = {"obs_encoder": "image", "chrono_init": None, "chrono_gates": "both", "chrono_fraction": 1.0}
# The exploration bonus's settings (PPOConfig), which mean something only with --exploration rnd or noveld.
_INTRINSIC = ("intrinsic_coef", "intrinsic_gamma", "intrinsic_lr", "intrinsic_update_fraction", "intrinsic_history",
              "intrinsic_norm_window", "noveld_alpha", "episodic_bin")


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help text (shown by ``train.py --help``)."""
    if isinstance(default, (list, dict, tuple)) and not isinstance(default, tuple):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class EnvConfig:
    """Which game to play and how many copies run side by side."""

    env_id: str = _f("mnemo/TMaze-v0", "Gymnasium id of the env to train on (any registered id).")
    env_import: tuple[str, ...] = _f(
        (), "Module to import before making the env, so third-party packages can register their ids "
        "(repeatable).", repeatable=True)
    env_kwargs: dict = _f({}, "Keyword arguments for gymnasium.make, as JSON (e.g. '{\"corridor_length\": 20}').")
    preset: str = _f(
        "auto", "Tuned settings to start from: 'auto' uses the built-in env's preset when it has one "
        "(envs/presets.py), 'none' the defaults alone. A run's config.json names the preset it used.")
    num_envs: int = _f(8, "Number of envs stepped together in the vector env.")
    async_envs: bool = _f(False, "Step envs in subprocesses (gymnasium AsyncVectorEnv) instead of in-process.")
    policy_map: str | None = _f(
        None, "Several policies in a multi-agent run: 'PATTERN=NAME,...' gives each agent the policy of the first "
        "fnmatch pattern its name matches (e.g. 'hunter_*=hunter,prey_*=prey'); each policy has its own network "
        "and optimizer. None: one policy shared by every agent (docs/multiagent.md).")


@dataclass
class PolicyConfig:
    """The network: encoder -> recurrent core -> actor and critic heads."""

    core: str = _f(
        "lstm", "Memory core; 'none' is the memoryless baseline, 'stack' a frame stack of the last --stack-len "
        "encodings (agents/model/cores.py).", choices=CORES)
    hidden_size: int = _f(256, "Units per recurrent layer.")
    num_layers: int = _f(1, "Stacked recurrent layers.")
    stack_len: int | None = _f(None, "Encodings the 'stack' core keeps (its reach is this many steps, the current "
                               "one included); none: 4. Only for --core stack.")
    separate_critic: bool = _f(False, "Give the critic its own recurrent core instead of sharing the actor's.")
    central_critic: bool = _f(
        False, "Multi-agent envs with state(): a centralised critic (MAPPO) with its own encoder and recurrent core "
        "over the env's global state and the agent's slot one-hot; the actor still sees only its observation, and "
        "exports, runners and watch stay actor-only (docs/multiagent.md).")
    agent_index_input: bool = _f(
        False, "Multi-agent envs: the actor (and a central critic) also sees a one-hot of the agent's slot among "
        "possible_agents, so one shared policy can play different roles; runners take it from the agent's name.")
    carry_across_episodes: bool = _f(
        False, "Never reset the recurrent state at episode ends, so memory runs across episodes (RL^2 style).")
    encoder_sizes: tuple[int, ...] = _f((64,), "Hidden sizes of the MLP between observation and core; "
                                        "empty feeds the preprocessed observation to the core directly.")
    head_sizes: tuple[int, ...] = _f((64,), "Hidden sizes of the actor's and the critic's MLP after the core.")
    activation: Literal["tanh", "relu"] = _f("tanh", "Activation of the encoder and head MLPs.")
    obs_encoder: Literal["auto", "image", "grid", "flat"] = _f(
        "auto", "How uint8 HxWxC observations are read: 'image' a CNN over pixels, 'grid' an embedding per cell "
        "for small grids of object codes, 'flat' a plain vector; 'auto' takes 'image' when both sides are at "
        "least 16 cells and the bound is 255, 'grid' otherwise.")
    normalize_obs: bool | None = _f(
        None, "Normalise Box observations with running mean and std (saved with the model); none (the default) "
        "decides from the space: on where a vector's bounds are infinite or reach beyond +-10, off where every "
        "value is already on a small known scale.")
    ortho_init: bool = _f(True, "Orthogonal initialisation of the image CNN, the recurrent core and the heads "
                          "(the PPO baselines' choice); off keeps PyTorch's default initialisation.")
    normalize_value: bool = _f(
        False, "PopArt value normalisation: the critic learns values in units of the targets' running std and its "
        "output layer is rescaled whenever the statistics move, so values stay in return units "
        "(agents/model/value_norm.py).")
    prev_action_reward: bool = _f(
        False, "Feed the previous action and reward to the core beside the observation (RL^2 / IMPALA): the "
        "observation becomes a Dict with 'obs', 'prev_action' and 'prev_reward' (agents/rollout/previous_inputs.py).")
    forget_bias: float = _f(1.0, "Added to the initial bias of the LSTM forget gates that --chrono-init leaves (by "
                            "default half the units; all with --chrono-init none): with 1 or more the memory starts "
                            "out kept rather than halved every step (Jozefowicz et al. 2015).")
    chrono_init: int | None = _f(
        128, "Chrono initialisation of the LSTM gates for dependencies up to this many steps (Tallec & Ollivier "
        "2018): each unit's forget bias is log(u), u uniform in [1, T - 1], and its input bias -log(u) (see "
        "--chrono-gates), so the units start out with memory spans spread from 1 to T steps; replaces --forget-bias on "
        "the units it sets (--chrono-fraction). The default: 128 on the forget gates of half the units (long cues "
        "learnt where forget bias 1 alone missed them, docs/defaults.md); none turns it off.")
    chrono_gates: Literal["both", "forget"] = _f(
        "forget", "The gates --chrono-init sets: 'both' (the paper's: forget biases log(u), input biases -log(u), so a "
        "slow unit also writes slowly) or 'forget' (the forget biases only; the input gates keep their usual "
        "initialisation, so every unit writes as fast as without chrono initialisation).")
    chrono_fraction: float = _f(
        0.5, "The share of each LSTM layer's units that --chrono-init sets (0 < F <= 1); the rest keep "
        "--forget-bias, so with F below 1 some units start out with long memory spans and the others fast.")
    exploration: Literal["none", "rnd", "noveld"] = _f(
        "none", "An intrinsic reward for sparse-reward tasks, with its own value head and return stream "
        "(agents/train/exploration.py): 'rnd' random network distillation (Burda et al. 2018), 'noveld' its "
        "novelty difference paid at the first visit of an observation in an episode (Zhang et al. 2021); "
        "training only: evaluation, runners, watch and exports never see it.")
    recall_coef: float = _f(
        0.0, "Off (0) by default. The weight of an auxiliary recall loss: a training-only linear head on the "
        "actor core's outputs predicts, at every step, the running maximum of each observation feature (as the "
        "encoder reads it) since the episode or the training sequence began, which asks the memory to keep what "
        "it was shown; its squared error times this weight joins the PPO loss (agents/train/ppo_loss.py). "
        "Evaluation, runners, watch and exports never see the head.")
    readout_products: int = _f(
        0, "Off (0) by default. N product units after the actor's core: the heads read, beside the core's output h, "
        "N products (U h + a) * (V x + b) of h and the step's features x (the core's input), so that one layer "
        "can match what the memory holds against what the step shows (which remembered card has the value in "
        "view), a product that tanh units fit poorly (agents/model/readout.py). The state is unchanged; "
        "runners, watch and exports compute the products too.")


@dataclass
class PPOConfig:
    """Proximal Policy Optimisation with truncated backpropagation through time."""

    total_steps: int = _f(100_000, "Env steps to train for, summed over all envs.")
    num_steps: int = _f(128, "Rollout length per env between updates.")
    bptt_len: int | None = _f(
        None, "Length of the sequences that backpropagation through time runs over; none (the default) takes the "
        "whole rollout (--num-steps), so gradients reach as far back as the rollout holds (with fewer envs than "
        "minibatches, an even share of it per minibatch).")
    num_minibatches: int = _f(4, "Minibatches of sequences per epoch.")
    update_epochs: int = _f(8, "Passes over each rollout.")
    learning_rate: float = _f(1e-3, "Adam learning rate.")
    anneal_lr: bool = _f(True, "Decay the learning rate linearly to zero over training.")
    anneal_clip: bool = _f(False, "Decay the clip coefficient linearly to zero over training.")
    gamma: float = _f(0.99, "Discount factor.")
    gae_lambda: float = _f(0.95, "GAE lambda.")
    clip_coef: float = _f(0.2, "PPO clip coefficient for the policy ratio.")
    clip_vloss: bool = _f(False, "Clip the value loss around the old values as in the PPO baselines.")
    ent_coef: float = _f(0.01, "Entropy bonus coefficient.")
    noise_correlation: float = _f(
        0.0, "Correlation in [0, 1) of each env's action-sampling noise from one rollout step to the next (an "
        "AR(1) process); 0 draws independently, as usual. Each action keeps the policy's distribution, so "
        "log-probs stay exact, but runs of one action grow longer: 0.98 makes a near-uniform policy change "
        "action about once in 11 steps, which finds rewards that need persistence (MountainCar).")
    sparse_noise: float = _f(
        0.0, "Off (0) by default. A correlation (0.98) asks for a rule: correlated sampling noise (as "
        "--noise-correlation) is switched on for the rest of the run when the first --sparse-noise-episodes "
        "episodes all return exactly the same total (a game that has paid nothing yet); where returns differ it "
        "never switches on and the run is as without it. For running many games with one command; for one "
        "game that pays late, --noise-correlation 0.98 did better (docs/defaults.md). Stands aside with "
        "--noise-correlation > 0 or --exploration.")
    sparse_noise_episodes: int = _f(32, "Finished episodes the --sparse-noise rule waits for before deciding.")
    vf_coef: float = _f(0.5, "Value loss coefficient.")
    max_grad_norm: float = _f(0.5, "Clip the global gradient norm to this value.")
    target_kl: float | None = _f(None, "Stop the epochs of an update early once approx KL exceeds this.")
    norm_adv: bool = _f(True, "Normalise advantages per minibatch (over real steps only).")
    normalize_reward: bool = _f(
        True, "Divide rewards by a running std of the discounted return, clipped to +-10 (as SB3's VecNormalize; "
        "saved in checkpoints). Logged episode returns stay in the env's units.")
    adam_eps: float = _f(1e-5, "Adam epsilon.")
    refresh_start_states: bool = _f(
        False, "Recompute the sequences' stored start states with the current network before each epoch.")
    intrinsic_coef: float = _f(
        0.5, "With --exploration: the weight of the intrinsic advantage, adv = adv_ext + coef * adv_int (RND's "
        "2:1 ratio of extrinsic to intrinsic).")
    intrinsic_gamma: float = _f(0.99, "With --exploration: the discount of the intrinsic return stream, which "
                                "runs on across episode ends (non-episodic, as in RND).")
    intrinsic_lr: float = _f(1e-4, "With --exploration: Adam learning rate of the RND predictor (its own "
                             "optimizer); a faster predictor makes the bonus fade sooner.")
    intrinsic_update_fraction: float = _f(
        0.25, "With --exploration: the share of each rollout's steps (drawn anew per epoch) the predictor trains "
        "on, RND's recipe to keep the bonus from fading too fast (0 < F <= 1).")
    intrinsic_norm_window: int = _f(
        2048, "With --exploration: the intrinsic rewards are divided by the std of the intrinsic return over about "
        "the last W steps (an exponential window), so a bonus that shrinks as the predictor learns keeps its "
        "weight against the extrinsic advantage; 0: over the whole run, as in RND.")
    intrinsic_history: int | None = _f(
        None, "With --exploration: the bonus reads the last K steps, not the observation alone: float "
        "observations enter as their changes over the K - 1 steps before, integer ones as they were (a partially "
        "observed state, e.g. a position without its velocity, is novel where its recent motion is; 1: the "
        "observation). none (the default): 2, or 1 where the observation has a frame for the image CNN (a "
        "second frame would double the bonus's CNN work).")
    noveld_alpha: float = _f(0.5, "With --exploration noveld: the bonus is max(novelty(s_t) - alpha * "
                             "novelty(s_t-1), 0) (NovelD's alpha).")
    episodic_bin: float = _f(
        0.5, "With --exploration noveld: the width, in standard deviations of the first rollout's observations, of "
        "the cells float observations are cut into to count a state's first visit in an episode (integer "
        "observations count exactly).")


@dataclass
class RunConfig:
    """Seeding, device, output and evaluation."""

    seed: int = _f(1, "Seed for envs, network initialisation and sampling.")
    device: Literal["auto", "cpu", "cuda"] = _f(
        "auto", "Where the network runs; auto picks cuda only where it pays (image observations or --hidden-size "
        ">= 512), else cpu.")
    torch_threads: int = _f(1, "torch intra-op threads; small recurrent nets run fastest on one.")
    parallel_critic: bool = _f(
        True, "With --separate-critic on CPU, run the critic's half of each update (its LSTM forward and "
        "backward) on a second thread beside the actor's: bitwise the same result, and an update epoch takes "
        "about a fifth less time on 2 idle cores. Used only when this process may run on at least twice "
        "--torch-threads cores.")
    run_dir: str | None = _f(None, "Output directory (default: runs/<env>__<seed>__<time>).")
    eval_episodes: int = _f(20, "Evaluation episodes at the end of training, per eval mode (0 to skip); for a "
                             "multi-agent env, whole env episodes, every agent episode in them counted.")
    eval_mode: Literal["greedy", "sample", "both"] = _f(
        "both", "How the final evaluation acts: 'greedy' takes the most likely action, 'sample' samples as in "
        "training; 'both' reports both (a policy that only works when it samples must not read as a failure).")
    checkpoint_every: int = _f(50_000, "Write the latest checkpoint every this many env steps (also written at "
                               "the end and on Ctrl-C; the one before is kept as previous.pt).")
    on_nonfinite: Literal["stop", "skip"] = _f(
        "stop", "When an env returns a NaN or infinite observation or reward: 'stop' saves a checkpoint and "
        "stops naming the env and step; 'skip' ends that episode (reward 0), resets the env and goes on.")
    progress: bool = _f(True, "Show a progress bar.")
    backend: str = _f(
        "local", "Where the envs run: 'local' in this process (or its subprocesses, --async-envs); 'ray' in Ray "
        "actors, each with --envs-per-worker envs and a CPU copy of the policy (needs pip install -e \".[ray]\"; "
        "docs/ray.md).", choices=BACKENDS)
    num_workers: int | None = _f(
        None, "Ray actors with --backend ray; none: --num-envs / --envs-per-worker, or 2 when that is not given. "
        "--num-envs must equal --num-workers x --envs-per-worker.")
    envs_per_worker: int | None = _f(
        None, "Envs per Ray actor with --backend ray; none: --num-envs / --num-workers.")
    ray_address: str | None = _f(
        None, "Ray cluster to join with --backend ray ('auto': the one this machine belongs to, or host:port); "
        "none starts a local Ray instance for the run.")
    worker_timeout: float = _f(
        300.0, "Seconds to wait for a Ray actor's rollout before it counts as hung and is restarted.")


@dataclass
class OpponentsConfig:
    """Self-play: who the learning policy plays against in a two-sided multi-agent game (docs/multiagent.md)."""

    self_play: bool = _f(
        False, "Train one side of a two-sided multi-agent game against frozen snapshots of the learning policy "
        "(and the policy itself); only the learning side's steps train. Needs a multi-agent env with two sides "
        "(--sides).")
    sides: str | None = _f(
        None, "How the agents form the two sides with --self-play: 'PATTERN=SIDE,...' puts each agent on the side "
        "of the first fnmatch pattern its name matches (e.g. 'left_*=left,right_*=right'); none: each agent is "
        "a side of its own (a game of two agents). Exactly two sides are supported.")
    snapshot_every: int = _f(
        10_000, "With --self-play, add the learning policy's weights to the opponent pool every this many env "
        "steps (taken at the first rollout that starts at or after each multiple; the first snapshot is the "
        "initial policy).")
    pool_size: int = _f(10, "With --self-play, how many of the latest snapshots the opponent pool keeps.")
    swap_every: int = _f(
        2_000, "With --self-play, draw the pool's current opponent (a snapshot, uniformly from the pool) every this "
        "many env steps (at the first rollout that starts at or after each multiple). One snapshot at a time "
        "keeps opponents' inference to one extra batched call per step.")
    play_latest: float = _f(
        0.5, "With --self-play, the chance that an env episode's opponent is the learning policy itself (its "
        "current weights, not trained on) rather than the pool's current snapshot (--swap-every).")
    swap_sides: bool = _f(
        True, "With --self-play, draw which side learns at every env episode (else the first side always learns).")
    train_both_sides: bool = _f(
        False, "With --self-play, in an env episode where the learning policy plays itself (--play-latest) the "
        "other side's steps train too: they are the same policy's own on-policy steps (else only the learning "
        "side's steps train, as in ML-Agents).")
    elo_k: float = _f(16.0, "With --self-play, the Elo K-factor: the most one game moves a rating.")
    fuse_opponents: bool = _f(
        False, "With --self-play, act the learning policy and the snapshots in use in one fused forward per step "
        "(stacked weights, a batched matmul per layer) instead of one call per network: faster, the same draws, "
        "outputs equal to ~1e-7 (not bitwise) to the unfused ones. LSTM, GRU, none and stack cores without a "
        "critic core of their own; other architectures act unfused.")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as JSON in the run directory."""

    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    run: RunConfig = field(default_factory=RunConfig)
    opponents: OpponentsConfig = field(default_factory=OpponentsConfig)

    # Derived sizes: read-only views, never stored.
    @property
    def batch_size(self) -> int:
        """Env steps per rollout, over all envs."""
        return self.env.num_envs * self.ppo.num_steps

    @property
    def sequence_len(self) -> int:
        """Steps per training sequence: ``bptt_len``; when it is not set, the whole rollout, or with fewer envs
        than minibatches the longest even share of it that still makes a sequence for every minibatch."""
        if self.ppo.bptt_len is not None:
            return self.ppo.bptt_len
        shares = -(-self.ppo.num_minibatches // self.env.num_envs)  # ceil: rollout pieces per env
        return max(1, self.ppo.num_steps // shares)

    @property
    def spreads_envs_over_workers(self) -> bool:
        """Whether the backend runs the envs in workers (it reads ``num_workers``: Ray), so ``worker_layout``
        applies."""
        return "num_workers" in BACKENDS.entry(self.run.backend).options

    @property
    def worker_layout(self) -> tuple[int, int]:
        """(Ray actors W, envs per actor E) with ``--backend ray``; ``validate`` checks that W x E = num_envs."""
        run, n = self.run, self.env.num_envs
        if run.num_workers is not None and run.envs_per_worker is not None:
            return run.num_workers, run.envs_per_worker
        if run.envs_per_worker is not None:
            return max(1, n // run.envs_per_worker), run.envs_per_worker
        workers = run.num_workers if run.num_workers is not None else min(2, n)
        return workers, max(1, n // workers)

    @property
    def num_iterations(self) -> int:
        """Rollout-update iterations needed to reach ``total_steps``."""
        return math.ceil(self.ppo.total_steps / self.batch_size)

    @property
    def step_budget(self) -> int:
        """Env steps the run takes: ``total_steps`` rounded up to whole rollouts (``num_iterations`` of them)."""
        return self.num_iterations * self.batch_size

    def validate(self) -> TrainConfig:
        """Check every setting; raise ConfigError naming the first bad one and the fix."""
        self._check_types()
        env, pol, ppo, run = self.env, self.policy, self.ppo, self.run
        if not env.env_id:
            raise ConfigError("--env-id must name a Gymnasium env, e.g. mnemo/TMaze-v0 or CartPole-v1.")
        positive_ints = {
            "num_envs": env.num_envs, "hidden_size": pol.hidden_size, "num_layers": pol.num_layers,
            "total_steps": ppo.total_steps, "num_steps": ppo.num_steps, "bptt_len": self.sequence_len,
            "num_minibatches": ppo.num_minibatches, "update_epochs": ppo.update_epochs,
            "checkpoint_every": run.checkpoint_every, "torch_threads": run.torch_threads,
        }
        for name, value in positive_ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"--{flag_name(name)} must be a positive integer, got {value!r}.")
        for name, sizes in (("encoder_sizes", pol.encoder_sizes), ("head_sizes", pol.head_sizes)):
            if any(int(s) <= 0 for s in sizes):
                raise ConfigError(f"--{flag_name(name)} must list positive layer sizes, got {list(sizes)}.")
        for name, owner in CORES.options_of_others(pol.core).items():
            if getattr(pol, name) is not None:
                raise ConfigError(f"--{flag_name(name)} applies to --core {owner} only (this run's core is "
                                  f"{pol.core!r}); drop --{flag_name(name)} or pass --core {owner}.")
        if pol.stack_len is not None and pol.stack_len <= 0:
            raise ConfigError(f"--stack-len must be a positive integer, got {pol.stack_len}.")
        if self.sequence_len > ppo.num_steps:
            raise ConfigError(
                f"--bptt-len ({ppo.bptt_len}) is longer than the rollout (--num-steps {ppo.num_steps}); "
                f"lower --bptt-len or raise --num-steps.")
        min_sequences = env.num_envs * (ppo.num_steps // self.sequence_len)
        if ppo.num_minibatches > min_sequences:
            raise ConfigError(
                f"--num-minibatches ({ppo.num_minibatches}) exceeds the number of sequences per rollout "
                f"(num_envs {env.num_envs} x num_steps {ppo.num_steps} // bptt_len {self.sequence_len} = "
                f"{min_sequences}); lower --num-minibatches or raise --num-envs.")
        if not math.isfinite(pol.forget_bias):
            raise ConfigError(f"--forget-bias must be a finite number, got {pol.forget_bias}.")
        if pol.chrono_init is not None and pol.chrono_init < 3:
            raise ConfigError(f"--chrono-init must be at least 3 steps (or unset), got {pol.chrono_init}.")
        if not (0 < pol.chrono_fraction <= 1):
            raise ConfigError(f"--chrono-fraction must be in (0, 1], got {pol.chrono_fraction}.")
        for name in ("chrono_gates", "chrono_fraction"):
            value = getattr(pol, name)
            if value != getattr(PolicyConfig, name) and pol.chrono_init is None:
                raise ConfigError(f"--{flag_name(name)} {value} only applies with --chrono-init T (the longest "
                                  "memory span to initialise for, e.g. --chrono-init 128); set both or neither.")
        if not (ppo.learning_rate > 0 and math.isfinite(ppo.learning_rate)):
            raise ConfigError(f"--learning-rate must be > 0, got {ppo.learning_rate}.")
        if not (0 < ppo.gamma <= 1):
            raise ConfigError(f"--gamma must be in (0, 1], got {ppo.gamma}.")
        if not (0 <= ppo.gae_lambda <= 1):
            raise ConfigError(f"--gae-lambda must be in [0, 1], got {ppo.gae_lambda}.")
        for name in ("clip_coef", "max_grad_norm", "adam_eps"):
            if not getattr(ppo, name) > 0:
                raise ConfigError(f"--{flag_name(name)} must be > 0, got {getattr(ppo, name)}.")
        for name in ("ent_coef", "vf_coef"):
            if not getattr(ppo, name) >= 0:
                raise ConfigError(f"--{flag_name(name)} must be >= 0, got {getattr(ppo, name)}.")
        if not 0 <= ppo.noise_correlation < 1:
            raise ConfigError(f"--noise-correlation must be in [0, 1) (0: independent draws), got "
                              f"{ppo.noise_correlation}.")
        if not 0 <= ppo.sparse_noise < 1:
            raise ConfigError(f"--sparse-noise must be in [0, 1) (0: never), got {ppo.sparse_noise}.")
        if ppo.sparse_noise_episodes < 1:
            raise ConfigError(f"--sparse-noise-episodes must be >= 1, got {ppo.sparse_noise_episodes}.")
        if ppo.target_kl is not None and not ppo.target_kl > 0:
            raise ConfigError(f"--target-kl must be > 0 when given, got {ppo.target_kl}.")
        self._check_exploration()
        if not (self.policy.recall_coef >= 0 and math.isfinite(self.policy.recall_coef)):
            raise ConfigError(f"--recall-coef must be a finite number >= 0 (0: off), got {self.policy.recall_coef}.")
        if self.policy.readout_products < 0:
            raise ConfigError(f"--readout-products must be >= 0 (0: off), got {self.policy.readout_products}.")
        if run.eval_episodes < 0:
            raise ConfigError(f"--eval-episodes must be >= 0, got {run.eval_episodes}.")
        if env.policy_map is not None:
            parse_policy_map(env.policy_map)
        self._check_opponents()
        self._check_backend()
        return self

    def _check_opponents(self) -> None:
        """Self-play settings: in range, and only with --self-play."""
        opp, defaults = self.opponents, OpponentsConfig()
        if not opp.self_play:
            given = [f.name for f in dataclasses.fields(opp)
                     if f.name != "self_play" and getattr(opp, f.name) != getattr(defaults, f.name)]
            if given:
                raise ConfigError(f"--{flag_name(given[0])} only applies with --self-play; add --self-play or drop "
                                  f"--{flag_name(given[0])}.")
            return
        for name in ("snapshot_every", "pool_size", "swap_every"):
            value = getattr(opp, name)
            if isinstance(value, bool) or value <= 0:
                raise ConfigError(f"--{flag_name(name)} must be a positive integer, got {value!r}.")
        if not 0 <= opp.play_latest <= 1:
            raise ConfigError(f"--play-latest is a probability in [0, 1], got {opp.play_latest}.")
        if not (opp.elo_k > 0 and math.isfinite(opp.elo_k)):
            raise ConfigError(f"--elo-k must be > 0, got {opp.elo_k}.")
        if opp.sides is not None:
            parse_sides(opp.sides)
        if self.env.policy_map is not None:
            raise ConfigError("--self-play with --policy-map is not supported yet; drop --policy-map (self-play "
                              "trains one policy against its own snapshots).")
        if self.run.backend != "local":
            raise ConfigError(f"--self-play with --backend {self.run.backend} is not supported yet; use --backend "
                              f"local (the opponent pool acts in the learner's process).")

    def _check_exploration(self) -> None:
        """The intrinsic-reward settings: in range, and only with --exploration."""
        ppo, defaults = self.ppo, PPOConfig()
        if self.policy.exploration == "none":
            given = [name for name in _INTRINSIC if getattr(ppo, name) != getattr(defaults, name)]
            if given:
                raise ConfigError(f"--{flag_name(given[0])} only applies with --exploration rnd or noveld; add "
                                  f"--exploration or drop --{flag_name(given[0])}.")
            return
        if self.policy.exploration != "noveld":
            for name in ("noveld_alpha", "episodic_bin"):
                if getattr(ppo, name) != getattr(defaults, name):
                    raise ConfigError(f"--{flag_name(name)} only applies with --exploration noveld; pass it or drop "
                                      f"--{flag_name(name)}.")
        if not (ppo.intrinsic_coef >= 0 and math.isfinite(ppo.intrinsic_coef)):
            raise ConfigError(f"--intrinsic-coef must be >= 0, got {ppo.intrinsic_coef}.")
        if not 0 < ppo.intrinsic_gamma < 1:
            raise ConfigError(f"--intrinsic-gamma must be in (0, 1) (the intrinsic stream never ends), got "
                              f"{ppo.intrinsic_gamma}.")
        if not (ppo.intrinsic_lr > 0 and math.isfinite(ppo.intrinsic_lr)):
            raise ConfigError(f"--intrinsic-lr must be > 0, got {ppo.intrinsic_lr}.")
        if not 0 < ppo.intrinsic_update_fraction <= 1:
            raise ConfigError(f"--intrinsic-update-fraction must be in (0, 1], got {ppo.intrinsic_update_fraction}.")
        if ppo.intrinsic_norm_window < 0:
            raise ConfigError(f"--intrinsic-norm-window must be >= 0 (steps; 0: the whole run), got "
                              f"{ppo.intrinsic_norm_window}.")
        if ppo.intrinsic_history is not None and ppo.intrinsic_history < 1:
            raise ConfigError(f"--intrinsic-history must be >= 1, got {ppo.intrinsic_history}.")
        if not 0 <= ppo.noveld_alpha <= 1:
            raise ConfigError(f"--noveld-alpha must be in [0, 1], got {ppo.noveld_alpha}.")
        if not (ppo.episodic_bin > 0 and math.isfinite(ppo.episodic_bin)):
            raise ConfigError(f"--episodic-bin must be > 0, got {ppo.episodic_bin}.")
        if self.run.backend != "local":
            raise ConfigError(f"--exploration with --backend {self.run.backend} is not supported yet; use --backend "
                              f"local.")

    def _check_backend(self) -> None:
        """A backend's own flags only with that backend, and a worker layout that runs exactly ``--num-envs`` envs."""
        run, n = self.run, self.env.num_envs
        others = BACKENDS.options_of_others(run.backend)
        given = [name for name in others if getattr(run, name) is not None]
        if given:
            owner = others[given[0]]
            raise ConfigError(f"{', '.join('--' + flag_name(name) for name in given)} only apply to --backend {owner}; "
                              f"add --backend {owner}, or drop {'them' if len(given) > 1 else 'it'}.")
        if not self.spreads_envs_over_workers:
            return  # the envs are not spread over workers: no layout to check
        for name in ("num_workers", "envs_per_worker"):
            value = getattr(run, name)
            if value is not None and (isinstance(value, bool) or value <= 0):
                raise ConfigError(f"--{flag_name(name)} must be a positive integer, got {value!r}.")
        if not (run.worker_timeout > 0 and math.isfinite(run.worker_timeout)):
            raise ConfigError(f"--worker-timeout must be a positive number of seconds, got {run.worker_timeout}.")
        if run.ray_address is not None and not run.ray_address.strip():
            raise ConfigError("--ray-address must be 'auto' or host:port; drop it to start a local Ray instance.")
        workers, per_worker = self.worker_layout
        if workers * per_worker != n:
            if run.num_workers is not None and run.envs_per_worker is not None:
                fix = (f"pass --num-envs {workers * per_worker}, or change --num-workers / --envs-per-worker so "
                       f"that their product is {n}")
            else:
                fix = "pass --num-workers and --envs-per-worker whose product it is (or a --num-envs they divide)"
            raise ConfigError(f"--backend ray runs --num-workers x --envs-per-worker envs, but --num-envs {n} is not "
                              f"{workers} x {per_worker}; {fix}.")

    def _check_types(self) -> None:
        """Every setting has its declared type (a JSON config or a Python caller can pass anything), and a name
        that a registry holds (``choices``: ``agents.registry``) where one is asked for."""
        for section in dataclasses.fields(self):
            values = getattr(self, section.name)
            hints = typing.get_type_hints(type(values))
            for f in dataclasses.fields(values):
                value, hint = getattr(values, f.name), hints[f.name]
                if not _has_type(value, hint):
                    raise ConfigError(f"--{flag_name(f.name)} must be {_describe_type(hint)}, got {value!r}.")
                registry = f.metadata.get("choices")
                if registry is not None and value not in registry:
                    raise ConfigError(registry.unknown_message(value))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, nested by section."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of ``to_dict``, for a config saved by any version: settings added since get the values such a run
        trained with. Unknown keys are an error (a typo must not pass silently). A ``derived`` entry (config.json's
        record of the settings a run derived from its env) is a record, not a setting: skipped."""
        data = {k: v for k, v in data.items() if k != "derived"}
        if "policy" in data:
            policy = {**_POLICY_BEFORE, **data["policy"]}
            if policy["chrono_init"] is None:
                # Without chrono initialisation the gates and the fraction mean nothing: today's values, so that
                # validation (which refuses them set without --chrono-init) passes a run saved before.
                policy.update(chrono_gates=PolicyConfig.chrono_gates, chrono_fraction=PolicyConfig.chrono_fraction)
            data = {**data, "policy": policy}
            if policy.get("exploration", "none") == "none" and "ppo" in data:
                # Without a bonus its settings mean nothing: today's defaults, so that validation (which refuses
                # them set without --exploration) passes a run saved when a default was another value.
                data = {**data, "ppo": {**data["ppo"], **{name: getattr(PPOConfig, name) for name in _INTRINSIC}}}
        return cls._from_sections(data)

    @classmethod
    def _from_sections(cls, data: dict) -> TrainConfig:
        """The config ``data`` spells out, section by section, taken as it is."""
        sections = {}
        for section in dataclasses.fields(cls):
            section_cls = section.default_factory  # type: ignore[misc]
            values = dict(data.get(section.name, {}))
            known = {f.name for f in dataclasses.fields(section_cls)}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"Unknown {section.name} settings {sorted(unknown)}; known: {sorted(known)}.")
            for f in dataclasses.fields(section_cls):
                if f.name in values and isinstance(values[f.name], list):
                    values[f.name] = tuple(values[f.name])
            sections[section.name] = section_cls(**values)
        unknown_sections = set(data) - set(sections)
        if unknown_sections:
            raise ConfigError(f"Unknown config sections {sorted(unknown_sections)}.")
        return cls(**sections)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with flat overrides applied, e.g. ``{"bptt_len": 8, "core": "gru"}``."""
        owner = flat_field_owners()
        data = self.to_dict()
        for name, value in overrides.items():
            if name not in owner:
                raise ConfigError(f"Unknown setting {name!r}; see `python train.py --help`.")
            data[owner[name]][name] = value
        # Taken as it is: the overrides are today's settings, so nothing is read as a config saved before.
        return TrainConfig._from_sections(data)


POLICY_MAP_EXAMPLE = "--policy-map 'hunter_*=hunter,prey_*=prey'"


def parse_policy_map(text: str) -> list[tuple[str, str]]:
    """``--policy-map`` as ``[(fnmatch pattern, policy name), ...]`` in the order given (the first match wins).

    Raises:
        ConfigError: an entry is not ``PATTERN=NAME``, or a name is not made of letters, digits, '_' and '-'.
    """
    entries = [part.strip() for part in text.split(",")]
    mapping = []
    for entry in entries:
        pattern, sep, name = (s.strip() for s in entry.partition("="))
        if not (sep and pattern and name):
            raise ConfigError(f"--policy-map entry {entry!r} is not PATTERN=NAME; write e.g. {POLICY_MAP_EXAMPLE}.")
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"--policy-map policy name {name!r} must be letters, digits, '_' or '-' (it names "
                              f"files and TensorBoard tags); write e.g. {POLICY_MAP_EXAMPLE}.")
        mapping.append((pattern, name))
    return mapping


def first_match(mapping: list[tuple[str, str]], agent: str) -> str | None:
    """The name the first ``(fnmatch pattern, name)`` entry matching ``agent`` gives it (``parse_policy_map``'s and
    ``--sides``' order rule), or None when no pattern matches."""
    return next((name for pattern, name in mapping if fnmatch.fnmatchcase(agent, pattern)), None)


SIDES_EXAMPLE = "--sides 'left_*=left,right_*=right'"


def parse_sides(text: str) -> list[tuple[str, str]]:
    """``--sides`` as ``[(fnmatch pattern, side name), ...]`` in the order given (the first match wins).

    Raises:
        ConfigError: an entry is not ``PATTERN=SIDE``, or the entries name other than exactly two sides.
    """
    mapping = []
    for entry in (part.strip() for part in text.split(",")):
        pattern, sep, name = (s.strip() for s in entry.partition("="))
        if not (sep and pattern and name):
            raise ConfigError(f"--sides entry {entry!r} is not PATTERN=SIDE; write e.g. {SIDES_EXAMPLE}.")
        mapping.append((pattern, name))
    names = list(dict.fromkeys(name for _, name in mapping))
    if len(names) != 2:
        raise ConfigError(f"--sides names {len(names)} side(s) ({', '.join(names)}); self-play and mnemo match "
                          f"take exactly two sides; write e.g. {SIDES_EXAMPLE}.")
    return mapping


def flat_field_owners() -> dict[str, str]:
    """Map each flat setting name to the section that holds it (names are unique across sections)."""
    owners: dict[str, str] = {}
    for section in dataclasses.fields(TrainConfig):
        for f in dataclasses.fields(section.default_factory):  # type: ignore[arg-type]
            owners[f.name] = section.name
    return owners


def _has_type(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_has_type(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args)
    if origin is tuple:
        return "a list of integers such as 64,64" if args[0] is int else "a list of names"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a JSON object", type(None): "none"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def flag_name(name: str) -> str:
    """A setting's command-line spelling without the dashes: ``bptt_len`` -> ``bptt-len``."""
    return name.replace("_", "-")


def env_label(env_id: str | None, env_kwargs: dict | None) -> str:
    """An env as messages name it: its id, then its --env-kwargs as JSON when it has any."""
    return f"{env_id}" + (f" {json.dumps(env_kwargs)}" if env_kwargs else "")
