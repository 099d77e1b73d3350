"""The training loop: collect -> GAE -> sequences -> PPO update -> log -> checkpoint, then evaluate.

The trainer knows nothing about any particular env: a ``Collector`` (``agents.rollout.collector``; the local
vector env by default) supplies the spaces and the rollouts, the policy is built from those spaces, and
PPO (``agents.train.ppo``) trains it. The run directory's layout is in ``agents.run.run_dir``.

Crash safety (docs/robustness.md): every file is written atomically; a
checkpoint holds the policy, optimizer, counters, every RNG, the recurrent
state, the next observations and (where the env allows, see
``agents/rollout/env_state.py``) every env's state, so a resumed run continues
exactly as if it had never stopped. TensorBoard events up to a checkpoint
are flushed before it is written, and a resume purges events logged after
it, so curves have neither gaps nor duplicates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.config import ConfigError, TrainConfig, flag_name
from agents.model.policy import RecurrentActorCritic
from agents.rollout.backends import make_collector
from agents.rollout.buffer import Rollout, compute_gae, gather_sequences, make_sequences
from agents.rollout.collector import (
    Collector,
    CollectorFactory,
    EnvError,
    IllegalActionCount,
    NonFiniteError,
    import_env_modules,
    local_collector,
)
from agents.rollout.multiagent_env import SHARED_POLICY, is_multiagent
from agents.run.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    LATEST,
    PREVIOUS,
    CheckpointError,
    atomic_torch_save,
    atomic_write_text,
    build_payload,
    check_spaces_match,
    describe_differences,
    load_for_resume,
)
from agents.run.run_dir import RunDirLock, check_run_dir, claim_run_dir, default_run_dir, refuse_finished_run
from agents.run.run_log import (
    derived_settings,
    log_iteration,
    log_policy_iteration,
    merge_policy_settings,
    policy_summaries,
    progress_bar,
    summarize,
    write_summary,
)
from agents.train.device import resolve_device
from agents.train.evaluation import evaluate_modes
from agents.train.exploration import IntrinsicBonus
from agents.train.parallel_critic import ParallelCritic, pays_off
from agents.train.ppo import divergence_cause, ppo_update
from agents.train.reward_scale import RewardScaler
from agents.train.schedule import continue_schedule, schedule_fraction
from agents.train.sparse_noise import SparseRewardNoise
from agents.trees import tree_map


def collector_env(collector: Collector, factory: CollectorFactory, config: TrainConfig) -> dict | None:
    """Which env a collector runs, as config.json and the checkpoints record it.

    ``make_collector`` (and ``local_collector``) run ``config.env`` by construction: None, nothing to record.
    Another factory's collector says which env it runs by an ``env_id`` attribute, the Gymnasium id that
    ``config.env`` (with its ``env_kwargs`` and ``env_import``) makes again: evaluation, ``mnemo watch`` and
    ``--resume`` make the env from the config, so the two must agree. A collector without one (its envs have
    no id, or it does not say) is recorded as ``env_id: None``: the final evaluation is refused up front, and
    ``load_policy(..., need_env=True)`` and a resume with the default collector refuse the run later.

    Returns:
        None, or ``{"factory": "module.qualname", "env_id": str | None}``.

    Raises:
        ConfigError: the collector's ``env_id`` differs from the config's, or its env has no id and the config
            asks for a final evaluation.
    """
    if factory in (make_collector, local_collector):
        return None
    name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__qualname__)}"
    env_id = getattr(collector, "env_id", None)
    if env_id is not None and env_id != config.env.env_id:
        raise ConfigError(f"The collector made by {name} runs {env_id!r}, but the config's env_id is "
                          f"{config.env.env_id!r}; set env_id={env_id!r} (and its env_kwargs) in the config, so that "
                          f"evaluation, watch and resume make the env it trained on.")
    if env_id is None and config.run.eval_episodes > 0:
        raise ConfigError(f"The collector made by {name} does not name its env (no env_id attribute), so the final "
                          f"evaluation cannot make it; set eval_episodes=0, or give the collector env_id = the "
                          f"Gymnasium id that the config's env settings make.")
    return {"factory": name, "env_id": env_id}


def check_collector_fits(meta: dict, record: dict | None, path: Path) -> None:
    """Refuse to resume with the default collector (``record`` None) a run whose collector named no env: the env
    that ``config.env`` makes would be a guess."""
    saved = meta.get("collector")
    if record is None and saved is not None and saved.get("env_id") is None:
        raise CheckpointError(
            f"The checkpoint {path} was trained with the collector made by {saved.get('factory')}, whose env has no "
            f"id, so the env to resume on is unknown; resume it from Python with "
            f"Trainer(config, resume=True, collector_factory=...) and that collector.")


@dataclass
class PolicyLearner:
    """One policy a run trains: its network, its optimizer and its reward scaler (None without
    --normalize-reward). A run has one; a multi-agent run with --policy-map has one per policy name."""

    policy: RecurrentActorCritic
    optimizer: torch.optim.Optimizer
    reward_scaler: RewardScaler | None


# The exploration bonus's statistics, logged as exploration/<name> and kept in summary.json's "exploration".
INTRINSIC_STATS = ("intrinsic_reward_raw", "intrinsic_reward", "intrinsic_return", "intrinsic_scale", "predictor_loss")


class ResumeWarning(UserWarning):
    """A resume cannot continue exactly (the env cannot be snapshotted, or a fallback checkpoint was used)."""


class TrainingDiverged(RuntimeError):
    """An update left non-finite parameters; nothing was saved, the last checkpoint is intact."""


class Trainer:
    """Owns one training run: its collector, policy, optimizer, RNGs, counters and run directory.

    Bad input fails here, before any file is written: invalid settings, an unknown env id or
    module, bad env arguments, unsupported spaces, a run directory that holds another run, a
    checkpoint that does not fit the env or flags.

    Args:
        config: the full, validated config.
        resume: continue the run in ``config.run.run_dir`` from its latest readable checkpoint.
        overwrite: start afresh in ``config.run.run_dir`` even if it holds a run (its files are deleted).
        collector_factory: makes the collector from the config (default: ``make_collector``, the vector env in
            this process or Ray actors, as ``--backend`` says); the trainer starts, checkpoints and closes it.
            Another factory's collector names its env by an ``env_id`` attribute (see ``collector_env``).

    Threads: ``torch.set_num_threads(config.run.torch_threads)`` is a setting of the whole process (torch has
    no per-object one). The trainer applies it when it is made, so a script trains as fast as ``train.py``,
    and puts the previous value back when ``train`` returns or ``close`` is called: it holds the setting for
    as long as it runs, and the script's own work before and after keeps its own. Anything else that runs
    torch in this process while the trainer exists shares the setting.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False,
                 collector_factory: CollectorFactory = make_collector):
        self.config = config.validate()
        cfg = self.config
        if resume and overwrite:
            raise ConfigError("--resume continues a run and --overwrite deletes it; pass one of them.")
        if cfg.opponents.self_play and not is_multiagent(cfg.env.env_id):
            raise ConfigError(f"--self-play plays the two sides of a multi-agent env against each other, and "
                              f"{cfg.env.env_id} is a single-agent env; drop --self-play.")
        if cfg.env.policy_map is not None and not is_multiagent(cfg.env.env_id):
            raise ConfigError(f"--{flag_name('policy_map')} maps the agents of a multi-agent env to policies, and "
                              f"{cfg.env.env_id} is a single-agent env; drop --{flag_name('policy_map')}.")
        import_env_modules(cfg.env.env_import)
        if cfg.policy.exploration != "none" and is_multiagent(cfg.env.env_id):
            raise ConfigError(f"--exploration is for single-agent envs for now, and {cfg.env.env_id} is a "
                              f"multi-agent env; drop --exploration.")
        self.run_dir = Path(cfg.run.run_dir) if cfg.run.run_dir else default_run_dir(cfg)
        check_run_dir(self.run_dir, resume, overwrite)
        self.stop_reason: str | None = None
        self.resume_note: str | None = None  # why a resume is not exact (None: exact, or a fresh run)
        self._lock: RunDirLock | None = None
        self.parallel_critic: ParallelCritic | None = None
        # Before anything runs torch: the parallel critic's decision and the collector's threads read it.
        self._threads_before: int | None = torch.get_num_threads()
        torch.set_num_threads(cfg.run.torch_threads)
        try:
            self.collector = collector_factory(cfg)
        except BaseException:
            self._restore_threads()
            raise
        try:
            # None for the config's own env; else what config.json ("derived") and the checkpoints record.
            self.collector_record = collector_env(self.collector, collector_factory, cfg)
            self._build(resume, overwrite)
        except BaseException:
            self.collector.close()
            self._release()
            raise

    def _build(self, resume: bool, overwrite: bool) -> None:
        cfg = self.config
        # Several policies (--policy-map): the collector's blocks of rows, one per policy, each with its spaces.
        blocks = getattr(self.collector, "policy_rows", None)
        obs_space, act_space = self.collector.observation_space, self.collector.action_space
        if blocks is not None:
            obs_space = gym.spaces.Tuple([block.observation_space for block in blocks])  # for resolve_device
        self.device, self.device_note = resolve_device(cfg.run.device, obs_space, cfg.policy)
        # Independent streams for the network's initialisation, action sampling and minibatch
        # shuffling, all derived from --seed. Seeding two torch generators with the same number
        # would make the first actions' sampling noise replay the uniforms that drew the weights.
        init_seed, sample_seed, shuffle_seed = (int(x) for x in np.random.SeedSequence(cfg.run.seed).generate_state(3))
        # Seed the initialisation without leaving the global RNG changed.
        # Several policies are drawn one after another from the same stream, in the order --policy-map names them.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            if blocks is None:
                # A multi-agent collector names its agents and (with a central critic) the global state's space.
                networks = {SHARED_POLICY: RecurrentActorCritic(
                    obs_space, act_space, cfg.policy, agents=getattr(self.collector, "agent_names", ()),
                    state_space=getattr(self.collector, "state_space", None)).to(self.device)}
            else:
                # Each policy reads the slots of its own agents and (a central critic) the same global state.
                networks = {block.name: RecurrentActorCritic(
                    block.observation_space, block.action_space, cfg.policy, agents=block.agents,
                    state_space=self.collector.state_space).to(self.device) for block in blocks}
        rows = {SHARED_POLICY: self.collector.num_envs} if blocks is None else {b.name: b.num_rows for b in blocks}
        # Every policy trains with the same PPO settings, each with its own optimizer and reward scaler. fused:
        # one kernel for all parameters instead of a dozen small ops per tensor (the update's minibatches are
        # small, so per-op overhead dominates). One running return per row the policy sees: an env, or an agent
        # slot.
        self.learners = {name: PolicyLearner(
            policy,
            torch.optim.Adam(policy.parameters(), lr=cfg.ppo.learning_rate, eps=cfg.ppo.adam_eps, fused=True),
            RewardScaler(rows[name], cfg.ppo.gamma, device=self.device) if cfg.ppo.normalize_reward else None)
            for name, policy in networks.items()}
        # Named policies (--policy-map) are saved, logged and evaluated by name; without it, the one policy is
        # ``self.policy`` and everything is laid out as in a single-agent run.
        self.named_policies = blocks is not None
        first = next(iter(self.learners.values()))
        self.policy, self.optimizer, self.reward_scaler = first.policy, first.optimizer, first.reward_scaler
        # Whether some policy acts under the env's action masks (training and evaluation count illegal actions).
        self.masked = any(learner.policy.masked for learner in self.learners.values())
        self.np_rng = np.random.default_rng(shuffle_seed)
        # --exploration: the bonus's networks and statistics (agents/train/exploration.py), seeded from a stream
        # of its own, so the policy's initialisation and every other draw stay those of a run without it.
        self.exploration: IntrinsicBonus | None = None
        self.exploration_stats: dict[str, float] = {}
        if cfg.policy.exploration != "none":
            bonus_seed = int(np.random.SeedSequence(cfg.run.seed, spawn_key=(1,)).generate_state(1)[0])
            self.exploration = IntrinsicBonus(obs_space, cfg, self.collector.num_envs, self.device, bonus_seed)
        # The critic's half of each update on a second thread pays only with a core free for it.
        if cfg.run.parallel_critic and pays_off(self.policy, self.device):
            self.parallel_critic = ParallelCritic()

        self.global_step, self.iteration, self.episodes = 0, 0, 0
        self.agent_steps = 0  # multi-agent runs: the steps agents acted (rows alive); 0 otherwise
        self.best_return = -math.inf
        # The lr / clip schedule decays linearly from ``schedule_start = (iteration i0, fraction f0)`` to zero
        # at num_iterations; a resume with a changed --total-steps moves the anchor (``continue_schedule``).
        self.schedule_start: tuple[int, float] = (0, 1.0)
        self.schedule_note: str | None = None
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.nonfinite_skips = 0
        # A masked env's env actions checked against the env's masks in training, and the illegal ones (0).
        self.mask_count = IllegalActionCount()
        # --sparse-noise: correlated sampling noise once the first episodes have all returned the same.
        self.sparse_noise = SparseRewardNoise(cfg)
        if self.sparse_noise.active and not callable(getattr(self.collector, "use_noise", None)):
            self.sparse_noise.stand_aside("the collector cannot switch noise on (it has no use_noise method)")
        env_seed = cfg.run.seed
        checkpoint = None
        if resume:
            self._lock = RunDirLock(self.run_dir)  # before reading: no other process may be writing
            checkpoint = self._load_resume_checkpoint()
            refuse_finished_run(self.run_dir, self.global_step, self.iteration, cfg)
            # Fallback when the envs cannot be restored exactly: restart them with a seed derived from the step.
            env_seed = cfg.run.seed + self.global_step
        self.collector.start(networks if self.named_policies else self.policy, self.device, sample_seed, env_seed)
        if self.sparse_noise.on:  # switched on before the checkpoint: its noise process is restored with the rest
            self.collector.use_noise(self.sparse_noise.correlation)
        if checkpoint is not None:
            payload, meta = checkpoint
            self.resume_note = self._restore_collector(payload, meta)
            if self.resume_note is not None:
                warnings.warn(f"Resuming {self.run_dir} at step {self.global_step}, but not exactly: "
                              f"{self.resume_note}. Every env starts a new episode (the recurrent state is kept).",
                              ResumeWarning, stacklevel=3)

        # Everything above has worked: only now touch the directory.
        self._lock = claim_run_dir(self.run_dir, overwrite, self._lock)

        from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training

        # Events after the checkpoint (logged before a crash) are hidden by TensorBoard from this step on;
        # the checkpoint's own step stays: its events were flushed before it was written.
        self.writer = SummaryWriter(str(self.run_dir), purge_step=self.global_step + 1 if resume else None)
        if self.named_policies:
            self.derived = merge_policy_settings({
                name: derived_settings(cfg, learner.policy, self.device, self.device_note)
                for name, learner in self.learners.items()})
            self.derived["policies"] = {"value": {block.name: list(block.agents) for block in blocks},
                                        "why": "--policy-map: each policy's agents"}
        else:
            self.derived = derived_settings(cfg, self.policy, self.device, self.device_note)
        if self.exploration is not None and cfg.ppo.intrinsic_history is None:
            self.derived["intrinsic_history"] = {"value": self.exploration.history,
                                                 "why": self.exploration.history_reason}
        if self.collector_record is not None:
            named = self.collector_record["env_id"] is not None
            self.derived["collector"] = {
                "value": self.collector_record,
                "why": "collector_factory made the collector; " + (
                    "its env_id is the config's env" if named else
                    "it names no env_id, so config.env need not be its env: evaluation, watch and resume refuse")}
        atomic_write_text(self.run_dir / "config.json", json.dumps({**cfg.to_dict(), "derived": self.derived},
                                                                   indent=2))
        if not resume:
            table = "\n".join(f"|{k}|{v}|" for section in cfg.to_dict().values() for k, v in section.items())
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)

    # ------------------------------------------------------------------ resuming
    def _load_resume_checkpoint(self) -> tuple[dict, dict]:
        """Load the newest readable checkpoint into the policy, optimizer, RNGs and counters."""
        cfg = self.config
        payload, meta, path, fallback = load_for_resume(self.run_dir, cfg, map_location=self.device)
        if fallback is not None:
            warnings.warn(fallback, ResumeWarning, stacklevel=4)
        saved = TrainConfig.from_dict(meta["config"])
        if saved.policy != cfg.policy:
            raise CheckpointError(
                f"The requested network settings differ from those the checkpoint {path} was trained with "
                f"({describe_differences(saved.policy, cfg.policy)}); drop the changed flags to resume.")
        check_collector_fits(meta, self.collector_record, path)
        if saved.env.num_envs != cfg.env.num_envs:
            raise CheckpointError(
                f"The checkpoint {path} ran {saved.env.num_envs} envs, this resume asks for --num-envs "
                f"{cfg.env.num_envs}; the per-env memory cannot be carried over. Drop --num-envs to resume.")
        if saved.opponents != cfg.opponents:
            raise CheckpointError(
                f"The checkpoint {path} was trained with other self-play settings "
                f"({describe_differences(saved.opponents, cfg.opponents)}); its opponent pool cannot be carried "
                f"over. Drop the changed flags to resume.")
        if saved.env.policy_map != cfg.env.policy_map:
            raise CheckpointError(
                f"The checkpoint {path} was trained with --policy-map {saved.env.policy_map!r}, this resume asks for "
                f"{cfg.env.policy_map!r}; its policies cannot be carried over. Drop --policy-map to resume.")
        if not self.named_policies:
            check_spaces_match(meta, self.collector.observation_space, self.collector.action_space,
                               cfg.env.env_id, path)
            self._load_learner(self.learners[SHARED_POLICY], payload["policy"], payload["optimizer"],
                               payload.get("reward_scaler"), path)
        else:
            for block in self.collector.policy_rows:
                saved_spaces = meta["policies"][block.name]
                check_spaces_match({**meta, **saved_spaces}, block.observation_space, block.action_space,
                                   f"{cfg.env.env_id} (policy {block.name!r})", path)
                self._load_learner(self.learners[block.name], payload["policies"][block.name],
                                   payload["optimizers"][block.name],
                                   (payload.get("reward_scalers") or {}).get(block.name), path)
        if self.exploration is not None:
            if "exploration" not in payload:
                raise CheckpointError(f"The checkpoint {path} holds no exploration bonus state, but the run has "
                                      f"--exploration {cfg.policy.exploration}; resume with the run's own flags.")
            try:
                self.exploration.load_state_dict(payload["exploration"])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"The checkpoint {path}'s exploration bonus does not fit this run ({exc}).") \
                    from exc
        if meta.get("numpy_rng") is not None:
            self.np_rng.bit_generator.state = meta["numpy_rng"]
        c = meta["counters"]
        self.global_step, self.iteration, self.episodes = c["global_step"], c["iteration"], c["episodes"]
        self.best_return = c.get("best_return", -math.inf)
        self.recent_returns.extend(c.get("recent_returns", []))
        self.nonfinite_skips = c.get("nonfinite_skips", 0)
        self.mask_count = IllegalActionCount(**c.get("action_masks", {}))
        self.agent_steps = c.get("agent_steps", 0)
        self.schedule_start, self.schedule_note = continue_schedule(c.get("schedule"), saved, cfg, self.iteration)
        try:
            self.sparse_noise.load_state_dict(c.get("sparse_noise"), self.global_step)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"The checkpoint {path}'s --sparse-noise state is damaged ({exc}).") from exc
        return payload, meta

    @staticmethod
    def _load_learner(learner: PolicyLearner, policy_state: dict, optimizer_state: dict,
                      reward_scaler_state: dict | None, path: Path) -> None:
        """One policy's network, optimizer and reward scaler from a checkpoint's state dicts."""
        try:
            learner.policy.load_state_dict(policy_state)
            learner.optimizer.load_state_dict(optimizer_state)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"The checkpoint {path} does not fit this network ({exc}).") from exc
        if learner.reward_scaler is not None and reward_scaler_state is not None:
            try:
                learner.reward_scaler.load_state_dict(reward_scaler_state)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"The checkpoint {path}'s reward scaler does not fit this run ({exc}).") from exc

    def _restore_collector(self, payload: dict, meta: dict) -> str | None:
        """Restore the collector (and the envs, where possible); returns why the resume is not exact, or None.

        The checkpoint keeps the collector's state in three places: ``collector`` (its tensors), ``generator``
        (the sampler) and the metadata's ``resume`` (observations and env snapshots, JSON).
        """
        state = {"tensors": payload.get("collector"), "generator": payload.get("generator"), "resume": None}
        if state["tensors"] is None:
            self.collector.load_state_dict(state)
            return "the checkpoint holds no collector state"
        resume = meta.get("resume")
        saved_env = TrainConfig.from_dict(meta["config"]).env
        env = self.config.env
        changed = [name for name in ("env_id", "env_kwargs", "env_import")
                   if getattr(saved_env, name) != getattr(env, name)]
        note = None
        if changed:
            note, resume = f"the env settings changed ({', '.join(changed)})", None
        elif resume is not None and not resume.get("exact", True):
            note, resume = resume.get("reason") or "the checkpoint was saved mid-rollout", None
        try:
            collector_note = self.collector.load_state_dict({**state, "resume": resume})
        except ValueError as exc:
            raise CheckpointError(f"{exc}") from exc
        return note or collector_note

    # ------------------------------------------------------------------ checkpoints
    def _counters(self) -> dict:
        counters = {"global_step": self.global_step, "iteration": self.iteration, "episodes": self.episodes,
                    "recent_returns": list(self.recent_returns), "nonfinite_skips": self.nonfinite_skips,
                    "schedule": {"start_iteration": self.schedule_start[0], "start_frac": self.schedule_start[1],
                                 "iterations": self.config.num_iterations}}
        if math.isfinite(self.best_return):
            counters["best_return"] = self.best_return
        if self.masked:
            counters["action_masks"] = dataclasses.asdict(self.mask_count)
        if self.agent_steps:
            counters["agent_steps"] = self.agent_steps
        if self.sparse_noise.active:
            counters["sparse_noise"] = self.sparse_noise.state_dict()
        return counters

    def save_checkpoint(self, name: str = LATEST, rollback: dict | None = None, reason: str | None = None) -> Path:
        """Write ``checkpoints/<name>`` atomically with everything needed to resume.

        Args:
            rollback: the collector's ``state_dict(snapshot_envs=False)`` from when the current rollout began,
                to save after a failure mid-rollout: the policy, optimizer and counters have not changed since,
                so the checkpoint is consistent, but the envs have moved on and restart on resume.
            reason: why a resume from this checkpoint cannot be exact (with ``rollback``).
        """
        if rollback is not None:
            state = rollback
            resume = {"exact": False, "reason": reason or "saved after a failure mid-rollout"}
        else:
            state = self.collector.state_dict(snapshot_envs=name == LATEST)
            if name == LATEST:
                resume = state["resume"]
                resume["exact"] = resume["envs"] is not None
            else:
                resume = {"exact": False, "reason": f"{name} is not meant for resuming"}
        if self.named_policies:
            named = {name: (learner.policy, learner.optimizer,
                            learner.reward_scaler.state_dict() if learner.reward_scaler is not None else None)
                     for name, learner in self.learners.items()}
            payload = build_payload(self.config, None, None, self._counters(), state["tensors"], state["generator"],
                                    self.np_rng.bit_generator.state, resume, None, self.collector_record,
                                    policies=named)
        else:
            payload = build_payload(self.config, self.policy, self.optimizer, self._counters(), state["tensors"],
                                    state["generator"], self.np_rng.bit_generator.state, resume,
                                    self.reward_scaler.state_dict() if self.reward_scaler is not None else None,
                                    self.collector_record,
                                    exploration=None if self.exploration is None else self.exploration.state_dict())
        # Every event up to this step reaches the disk before the checkpoint that a resume starts from.
        self.writer.flush()
        path = self.run_dir / CHECKPOINT_DIR / name
        atomic_torch_save(payload, path, keep_previous=PREVIOUS if name == LATEST else None)
        return path

    def request_stop(self, reason: str = "a stop request") -> None:
        """Finish the current iteration, save a checkpoint and return from ``train`` (signal-handler safe)."""
        self.stop_reason = reason

    # ------------------------------------------------------------------ training
    def train(self, on_iteration: Callable[[Trainer], None] | None = None) -> dict:
        """Train to ``total_steps``, evaluate, write summary.json; returns the summary.

        Args:
            on_iteration: called after every iteration (after logging and any scheduled checkpoint).

        Returns:
            The summary; after ``request_stop`` it has ``"stopped": reason`` and no evaluation.

        Raises:
            NonFiniteError / EnvError: an env misbehaved; a checkpoint of the training state as of the
                last update was saved first (resuming from it restarts the envs' episodes).
            TrainingDiverged: an update produced NaN / inf parameters; nothing was saved.
        """
        try:
            wall, start_step = self._train_loop(on_iteration)
            if self.stop_reason is not None:
                return {"stopped": self.stop_reason, "total_steps": self.global_step,
                        "checkpoint": str(self.run_dir / CHECKPOINT_DIR / LATEST)}
            return self._finish(wall, start_step)
        finally:
            self.writer.close()
            self._release()

    def _train_loop(self, on_iteration: Callable[[Trainer], None] | None) -> tuple[float, int]:
        cfg, ppo = self.config, self.config.ppo
        num_iterations = cfg.num_iterations
        start_time, start_step = time.perf_counter(), self.global_step
        self._start_agent_steps = self.agent_steps
        progress = progress_bar(cfg, self.global_step)
        try:
            if not (self.run_dir / CHECKPOINT_DIR / LATEST).exists():
                self.save_checkpoint(LATEST)  # from now on a kill at any moment leaves a run that resumes
            last_checkpoint_step = self.global_step
            while self.iteration < num_iterations and self.stop_reason is None:
                iteration = self.iteration + 1
                frac = schedule_fraction(iteration, *self.schedule_start, num_iterations)
                lr = ppo.learning_rate * (frac if ppo.anneal_lr else 1.0)
                for learner in self.learners.values():
                    for group in learner.optimizer.param_groups:
                        group["lr"] = lr
                clip_coef = ppo.clip_coef * (frac if ppo.anneal_clip else 1.0)

                t0 = time.perf_counter()
                rollback = self.collector.state_dict(snapshot_envs=False)
                if self.named_policies:
                    self.collector.set_weights({name: learner.policy.state_dict()
                                                for name, learner in self.learners.items()})
                else:
                    self.collector.set_weights(self.policy.state_dict())
                try:
                    collected = self.collector.collect()
                except (NonFiniteError, EnvError) as exc:
                    raise self._fail_mid_rollout(exc, rollback, last_checkpoint_step) from exc
                rollouts = ({name: r.to(self.device) for name, r in collected.items()} if self.named_policies
                            else {SHARED_POLICY: collected.to(self.device)})
                self.global_step += cfg.batch_size
                self.iteration = iteration
                t1 = time.perf_counter()
                # One PPO update per policy on its own rows (one shuffling stream, policy after policy).
                stats = {name: self._update(rollouts[name], clip_coef, learner)
                         for name, learner in self.learners.items()}
                t2 = time.perf_counter()
                self._check_finite_parameters(
                    last_checkpoint_step, next((s["nonfinite"] for s in stats.values() if s.get("nonfinite")), None))
                self._decide_sparse_noise(rollouts)

                self._log(rollouts, stats, lr, clip_coef, t1 - t0, t2 - t1, start_time, start_step, progress)
                if self.global_step - last_checkpoint_step >= cfg.run.checkpoint_every:
                    self.save_checkpoint(LATEST)
                    last_checkpoint_step = self.global_step
                if on_iteration is not None:
                    on_iteration(self)
            wall = time.perf_counter() - start_time
            if last_checkpoint_step != self.global_step:
                self.save_checkpoint(LATEST)
        finally:
            if progress is not None:
                progress.close()
            self.collector.close()
        return wall, start_step

    def _decide_sparse_noise(self, rollouts: dict[str, Rollout]) -> None:
        """Feed the rollout's finished episodes to the --sparse-noise rule; switch the collector's noise on when
        the rule decides so (from the next rollout on)."""
        if not self.sparse_noise.active:
            return
        returns = [ret for rollout in rollouts.values() for ret in rollout.episode_returns]
        if self.sparse_noise.observe(returns, self.global_step):
            self.collector.use_noise(self.sparse_noise.correlation)
            self.writer.add_text("sparse_noise", self.sparse_noise.summary()["why"], self.global_step)
        self.writer.add_scalar("charts/sparse_noise", float(self.sparse_noise.on), self.global_step)

    def _fail_mid_rollout(self, exc: Exception, rollback: dict, last_checkpoint_step: int) -> Exception:
        """Save what is consistent (the state before this rollout), and say so in the error."""
        self.writer.flush()
        try:
            path = self.save_checkpoint(LATEST, rollback=rollback,
                                        reason=f"it was saved after env {exc.env_index} failed mid-rollout")
            saved = (f"Saved the training state as of the last update (step {self.global_step}) to {path}; the "
                     f"checkpoint before it is {path.with_name(PREVIOUS)}. Resume with --resume {self.run_dir} "
                     f"(envs restart their episodes).")
        except Exception as save_exc:  # the checkpoint from step last_checkpoint_step is still intact
            saved = (f"Saving a checkpoint failed too ({save_exc}); the last checkpoint (step "
                     f"{last_checkpoint_step}) is intact.")
        where = f"during the rollout after step {self.global_step} (iteration {self.iteration + 1})"
        if isinstance(exc, NonFiniteError):
            return NonFiniteError(f"{exc} Stopped {where}. {saved}", exc.env_index, exc.rollout_step)
        error = EnvError(f"{exc}. Stopped {where}. {saved}", exc.env_index, exc.env_traceback)
        error.from_worker = getattr(exc, "from_worker", False)
        return error

    def _check_finite_parameters(self, last_checkpoint_step: int, nonfinite: str | None) -> None:
        """Raise TrainingDiverged if the update left NaN / inf weights, naming what went non-finite first.

        Args:
            nonfinite: ``ppo_update``'s account of the first non-finite loss or gradient, if any.
        """
        finite = torch.stack([p.isfinite().all() for learner in self.learners.values()
                              for p in learner.policy.parameters()]).all()
        if bool(finite):
            return
        cause = divergence_cause(nonfinite)
        raise TrainingDiverged(
            f"The update at step {self.global_step} (iteration {self.iteration}) left NaN or infinite weights, so "
            f"nothing was saved; the last checkpoint (step {last_checkpoint_step}) in "
            f"{self.run_dir / CHECKPOINT_DIR} is intact. {cause[0].upper()}{cause[1:]}")

    def _update(self, rollout: Rollout, clip_coef: float, learner: PolicyLearner) -> dict[str, float]:
        """One policy's PPO update on its rollout (its rows only); returns the update's statistics."""
        cfg = self.config
        policy, reward_scaler = learner.policy, learner.reward_scaler
        rewards, alive = rollout.rewards, rollout.alive
        if reward_scaler is not None:
            rewards = reward_scaler.scale_rollout(rewards, torch.maximum(rollout.terminated, rollout.truncated),
                                                  alive, rollout.acting)
        # Turn-based rows (rollout.acting): GAE over each row's own turns (docs/multiagent.md, "Turn-based games").
        advantages, returns = compute_gae(rewards, rollout.values, rollout.terminated, rollout.truncated,
                                          rollout.truncation_values, rollout.bootstrap_value, cfg.ppo.gamma,
                                          cfg.ppo.gae_lambda, rollout.acting)
        if alive is None:
            seqs = make_sequences(rollout.episode_starts.cpu().numpy(), cfg.sequence_len,
                                  cut_at_episode_starts=not cfg.policy.carry_across_episodes)
        else:
            # Agents that come and go (docs/architecture.md): sequences cut at every spawn, absent steps dropped.
            advantages, returns = advantages * alive, returns * alive
            seqs = make_sequences(rollout.episode_starts.cpu().numpy(), cfg.sequence_len, True,
                                  alive=alive.cpu().numpy())
        returns_int, intrinsic_stats = None, {}
        if self.exploration is not None:
            advantages, returns_int, intrinsic_stats = self._add_intrinsic(rollout, advantages)
        batch = gather_sequences(rollout, seqs, advantages, returns, returns_int)
        # --normalize-value only; the value outputs stay the same
        policy.update_value_statistics(returns if alive is None else returns[alive > 0])
        refresh = cfg.ppo.refresh_start_states and policy.state_shape[0] > 0
        stats = ppo_update(policy, learner.optimizer, batch, cfg.ppo, clip_coef, self.np_rng,
                           rollout if refresh else None, self.parallel_critic)
        # Normaliser statistics change only between updates, so the policy that collected a
        # rollout and the one that trains on it see identical inputs.
        if alive is None:
            policy.update_obs_normalizer(rollout.obs)
        else:
            live = alive > 0
            if live.any():
                inputs = None if rollout.agent_inputs is None else tree_map(lambda x: x[live], rollout.agent_inputs)
                policy.update_obs_normalizer(tree_map(lambda x: x[live], rollout.obs), inputs)
            stats["agent_steps"] = int(live.sum())
        stats["num_sequences"] = seqs.num_sequences
        if reward_scaler is not None:
            stats["reward_scale"] = reward_scaler.std
        stats.update(intrinsic_stats)
        return stats

    def _add_intrinsic(self, rollout: Rollout, advantages: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """--exploration: the rollout's intrinsic rewards and their own GAE, non-episodic (no step ends the
        intrinsic stream, so the dones are 0), joined to the extrinsic advantages (T, N).

        Returns:
            adv_ext + intrinsic_coef * adv_int (T, N), the intrinsic value targets (T, N), and the bonus's
            statistics (``IntrinsicBonus.rollout_rewards``, plus ``intrinsic_return``: the targets' mean).
        """
        ppo = self.config.ppo
        if rollout.values_int is None or rollout.bootstrap_value_int is None:
            raise ConfigError("--exploration needs the intrinsic values stored in the rollout, and this run's "
                              "collector stored none; use the built-in local collector (--backend local).")
        rewards_int, stats = self.exploration.rollout_rewards(rollout)
        never = torch.zeros_like(rewards_int)
        advantages_int, returns_int = compute_gae(rewards_int, rollout.values_int, never, never, never,
                                                  rollout.bootstrap_value_int, ppo.intrinsic_gamma, ppo.gae_lambda)
        stats["intrinsic_return"] = float(returns_int.mean())
        return advantages + ppo.intrinsic_coef * advantages_int, returns_int, stats

    def _log(self, rollouts: dict[str, Rollout], policy_stats: dict[str, dict], lr: float, clip_coef: float,
             collect_s: float, update_s: float, start_time: float, start_step: int, progress) -> None:
        step = self.global_step
        if self.named_policies:
            # The run's own charts count every agent's episodes; each policy's episodes and losses get tags of
            # their own (charts/episodic_return/<policy>, losses/<loss>/<policy>).
            for name, rollout in rollouts.items():
                log_policy_iteration(self.writer, step, name, rollout, policy_stats[name])
            stats = {"epochs": max(s["epochs"] for s in policy_stats.values()),
                     "agent_steps": sum(s["agent_steps"] for s in policy_stats.values())}
        else:
            stats = policy_stats[SHARED_POLICY]
            for name in INTRINSIC_STATS:
                if name in stats:
                    self.writer.add_scalar(f"exploration/{name}", stats[name], step)
                    self.exploration_stats[name] = stats[name]
        episode_returns = [ret for rollout in rollouts.values() for ret in rollout.episode_returns]
        episode_lengths = [length for rollout in rollouts.values() for length in rollout.episode_lengths]
        skips_now = sum(rollout.nonfinite_skips for rollout in rollouts.values())
        if self.masked:
            for rollout in rollouts.values():
                self.mask_count.illegal += rollout.illegal_actions
                self.mask_count.checked += rollout.checked_actions
            self.writer.add_scalar("charts/illegal_actions", self.mask_count.illegal, step)
        self.episodes += len(episode_returns)
        self.recent_returns.extend(episode_returns)
        if skips_now:
            if self.nonfinite_skips == 0:
                warnings.warn(f"An env returned NaN or inf output by step {step}; --on-nonfinite skip ended those "
                              f"episodes and reset the envs (counted in charts/nonfinite_skips).", RuntimeWarning,
                              stacklevel=3)
            self.nonfinite_skips += skips_now
        sps = (step - start_step) / max(time.perf_counter() - start_time, 1e-9)
        log_iteration(self.writer, step, episode_returns, episode_lengths, stats,
                      self.nonfinite_skips if skips_now else None, lr, clip_coef, sps,
                      self.config.batch_size / max(collect_s, 1e-9), update_s)
        if "agent_steps" in stats:
            self.agent_steps += stats["agent_steps"]
            agent_sps = (self.agent_steps - self._start_agent_steps) / max(time.perf_counter() - start_time, 1e-9)
            self.writer.add_scalar("charts/agent_steps", self.agent_steps, step)
            self.writer.add_scalar("perf/agent_sps", agent_sps, step)
        recent = float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")
        if len(self.recent_returns) >= self.recent_returns.maxlen and recent > self.best_return:
            self.best_return = recent
            self.save_checkpoint(BEST)
        self_play = getattr(self.collector, "report", None)
        if self_play is not None:  # --self-play: the ratings (agents.rollout.self_play)
            for name, value in self_play().items():
                self.writer.add_scalar(f"self_play/{name}", value, step)
        if progress is not None:
            progress.update(self.config.batch_size)
            progress.set_postfix(sps=f"{sps:.0f}", ret=f"{recent:.2f}", refresh=False)

    def _finish(self, wall: float, start_step: int) -> dict:
        policies = ({name: learner.policy for name, learner in self.learners.items()} if self.named_policies
                    else self.policy)
        eval_mask_count = IllegalActionCount()
        greedy, sampled = evaluate_modes(policies, self.config.env, self.config.run, self.device,
                                         should_stop=lambda: self.stop_reason is not None, mask_count=eval_mask_count)
        # Named policies: every agent episode's return, and each policy's own (``{name: returns}``).
        by_policy = None
        if self.named_policies:
            by_policy = {"greedy": greedy, "sample": sampled}
            greedy, sampled = (np.concatenate(list(returns.values())) for returns in (greedy, sampled))
        summary = summarize(self.config, self.global_step, start_step, wall, self.episodes, list(self.recent_returns),
                            greedy, sampled, self.derived, self.nonfinite_skips)
        if by_policy is not None:
            summary["policies"] = policy_summaries(by_policy["greedy"], by_policy["sample"])
        pool = getattr(self.collector, "pool", None)
        if pool is not None:  # --self-play: the learner's and every snapshot's rating and games
            summary["self_play"] = pool.summary()
        if self.masked:
            summary["action_masks"] = {"training": dataclasses.asdict(self.mask_count),
                                       "evaluation": dataclasses.asdict(eval_mask_count)}
            self.writer.add_scalar("eval/illegal_actions", eval_mask_count.illegal, self.global_step)
        if self.exploration is not None:  # the last update's bonus figures
            summary["exploration"] = {"method": self.config.policy.exploration, **self.exploration_stats}
        if self.config.ppo.sparse_noise > 0:  # asked for: what the rule decided, and why
            summary["sparse_noise"] = self.sparse_noise.summary()
        if self.agent_steps:
            summary["agent_steps"] = self.agent_steps
            summary["agent_sps"] = round((self.agent_steps - self._start_agent_steps) / max(wall, 1e-9), 1)
        return write_summary(self.writer, self.run_dir, summary, self.global_step)

    def _release(self) -> None:
        if self.parallel_critic is not None:
            self.parallel_critic.close()
        if self._lock is not None:
            self._lock.release()
        self._restore_threads()

    def _restore_threads(self) -> None:
        """Give the process back the torch thread count it had before this trainer (once)."""
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def close(self) -> None:
        """Release the envs, the event file and the run directory's lock without training (``train`` does this)."""
        self.collector.close()
        self.writer.close()
        self._release()

    def __del__(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
