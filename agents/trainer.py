"""The training loop: collect -> GAE -> sequences -> PPO update -> log -> checkpoint, then evaluate.

The trainer knows nothing about any particular env: it builds a vector env
from the config, a policy from the env's spaces, and runs PPO.

Run directory layout::

    RUN_DIR/
      config.json              resolved config
      events.out.tfevents.*    TensorBoard: charts/*, losses/*, perf/*, hyperparameters
      checkpoints/latest.pt    written every --checkpoint-every steps and at the end
      checkpoints/best.pt      best recent training return so far
      summary.json             final figures (eval return, steps, wall time, SPS)
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from agents.buffer import RolloutBuffer, compute_gae, gather_sequences, make_sequences
from agents.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    LATEST,
    CheckpointError,
    atomic_torch_save,
    build_payload,
    load_payload,
)
from agents.collector import VectorCollector, import_env_modules, make_vector_env
from agents.config import ConfigError, TrainConfig
from agents.evaluation import evaluate_policy
from agents.policy import RecurrentActorCritic
from agents.ppo import ppo_update, refresh_start_states


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto.")
    return torch.device(name)


def default_run_dir(config: TrainConfig) -> Path:
    env_name = config.env.env_id.replace("/", "_")
    return Path("runs") / f"{env_name}__{config.run.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


class Trainer:
    """Owns one training run: its envs, policy, optimizer, RNGs, counters and run directory.

    Args:
        config: the full, validated config.
        resume: continue the run in ``config.run.run_dir`` from its latest checkpoint.
    """

    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = config.validate()
        cfg = config
        import_env_modules(cfg.env.env_import)
        self.device = resolve_device(cfg.run.device)
        self.run_dir = Path(cfg.run.run_dir) if cfg.run.run_dir else default_run_dir(cfg)
        self._check_run_dir(resume)

        self.envs = make_vector_env(cfg.env.env_id, cfg.env.num_envs, cfg.env.env_kwargs, cfg.env.async_envs)
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        # Seed the network's initialisation without leaving the global RNG changed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            self.policy = RecurrentActorCritic(obs_space, act_space, cfg.policy).to(self.device)
        # fused: one kernel for all parameters instead of a dozen small ops per tensor (the update's
        # minibatches are small, so per-op overhead dominates).
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.ppo.learning_rate, eps=cfg.ppo.adam_eps,
                                          fused=True)
        self.generator = torch.Generator(self.device).manual_seed(cfg.run.seed)
        self.np_rng = np.random.default_rng(cfg.run.seed)
        head = self.policy.action_head
        self.buffer = RolloutBuffer(cfg.ppo.num_steps, cfg.env.num_envs, obs_space, head.action_shape,
                                    head.action_dtype, self.policy.state_shape, self.device)

        self.global_step, self.iteration, self.episodes = 0, 0, 0
        self.best_return = -math.inf
        self.recent_returns: deque[float] = deque(maxlen=20)
        env_seed = cfg.run.seed
        checkpoint = None
        if resume:
            checkpoint = self._load_resume_checkpoint()
            # Envs cannot be snapshotted in general: they restart with a seed derived from the step count.
            env_seed = cfg.run.seed + self.global_step
        self.collector = VectorCollector(self.envs, self.policy, self.device, self.generator, env_seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)  # only once everything above has worked
        if checkpoint is not None and "collector" in checkpoint:
            self.collector.load_state_dict(checkpoint["collector"])

        from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training

        self.writer = SummaryWriter(str(self.run_dir), purge_step=self.global_step if resume else None)
        if not resume:
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
            table = "\n".join(f"|{k}|{v}|" for section in cfg.to_dict().values() for k, v in section.items())
            self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)

    # ------------------------------------------------------------------ run directory
    def _check_run_dir(self, resume: bool) -> None:
        has_run = (self.run_dir / "config.json").exists()
        if resume and not has_run:
            raise ConfigError(f"--resume {self.run_dir}: no training run there (config.json missing).")
        if not resume and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ConfigError(
                f"Run directory {self.run_dir} already exists and is not empty; pass --resume {self.run_dir} "
                f"to continue it, or choose another --run-dir.")

    def _load_resume_checkpoint(self) -> dict:
        path = self.run_dir / CHECKPOINT_DIR / LATEST
        payload, meta = load_payload(path, map_location=self.device)
        saved = TrainConfig.from_dict(meta["config"])
        if saved.policy != self.config.policy:
            raise CheckpointError(
                f"The checkpoint in {self.run_dir} was trained with policy settings {saved.policy}, "
                f"which differ from the requested {self.config.policy}; drop the changed flags to resume.")
        self.policy.load_state_dict(payload["policy"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if "generator" in payload:
            self.generator.set_state(payload["generator"].cpu())
        if meta.get("numpy_rng") is not None:
            self.np_rng.bit_generator.state = meta["numpy_rng"]
        c = meta["counters"]
        self.global_step, self.iteration, self.episodes = c["global_step"], c["iteration"], c["episodes"]
        self.best_return = c.get("best_return", -math.inf)
        self.recent_returns.extend(c.get("recent_returns", []))
        return payload

    def save_checkpoint(self, name: str = LATEST) -> Path:
        """Write ``checkpoints/<name>`` atomically with everything needed to resume."""
        counters = {"global_step": self.global_step, "iteration": self.iteration, "episodes": self.episodes,
                    "best_return": self.best_return if math.isfinite(self.best_return) else None,
                    "recent_returns": list(self.recent_returns)}
        if counters["best_return"] is None:
            counters.pop("best_return")
        payload = build_payload(self.config, self.policy, self.optimizer, counters, self.collector.state_dict(),
                                self.generator.get_state(), self.np_rng.bit_generator.state)
        path = self.run_dir / CHECKPOINT_DIR / name
        atomic_torch_save(payload, path)
        return path

    # ------------------------------------------------------------------ training
    def train(self) -> dict:
        """Train to ``total_steps``, evaluate, write summary.json; returns the summary."""
        cfg, ppo = self.config, self.config.ppo
        num_iterations = cfg.num_iterations
        start_time, start_step = time.perf_counter(), self.global_step
        last_checkpoint_step = self.global_step
        progress = _progress_bar(cfg, self.global_step)
        try:
            while self.iteration < num_iterations:
                self.iteration += 1
                frac = 1.0 - (self.iteration - 1) / num_iterations
                lr = ppo.learning_rate * (frac if ppo.anneal_lr else 1.0)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                clip_coef = ppo.clip_coef * (frac if ppo.anneal_clip else 1.0)

                t0 = time.perf_counter()
                rollout = self.collector.collect(self.buffer)
                self.global_step += cfg.batch_size
                t1 = time.perf_counter()
                stats = self._update(clip_coef)
                t2 = time.perf_counter()

                self._log(rollout, stats, lr, clip_coef, t1 - t0, t2 - t1, start_time, start_step, progress)
                if self.global_step - last_checkpoint_step >= cfg.run.checkpoint_every:
                    self.save_checkpoint(LATEST)
                    last_checkpoint_step = self.global_step
            wall = time.perf_counter() - start_time
            self.save_checkpoint(LATEST)
        finally:
            if progress is not None:
                progress.close()
            self.collector.close()
        return self._finish(wall, start_step)

    def _update(self, clip_coef: float) -> dict[str, float]:
        cfg, buf = self.config, self.buffer
        last_value = self.collector.bootstrap_value()
        advantages, returns = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated,
                                          buf.truncation_values, last_value, cfg.ppo.gamma, cfg.ppo.gae_lambda)
        seqs = make_sequences(buf.episode_starts.cpu().numpy(), cfg.ppo.bptt_len,
                              cut_at_episode_starts=not cfg.policy.carry_across_episodes)
        batch = gather_sequences(buf, seqs, advantages, returns)
        refresh = None
        if cfg.ppo.refresh_start_states and self.policy.state_shape[0] > 0:
            def refresh() -> None:
                refresh_start_states(self.policy, batch, buf.states, buf.obs, buf.episode_starts,
                                     seqs.start_time.to(self.device), seqs.start_env.to(self.device))
        stats = ppo_update(self.policy, self.optimizer, batch, cfg.ppo, clip_coef, self.np_rng, refresh)
        # Normaliser statistics change only between updates, so the policy that collected a
        # rollout and the one that trains on it see identical inputs.
        self.policy.update_obs_normalizer(buf.obs)
        stats["num_sequences"] = seqs.num_sequences
        return stats

    def _log(self, rollout, stats, lr, clip_coef, collect_s, update_s, start_time, start_step, progress) -> None:
        step, w = self.global_step, self.writer
        for ret, length in zip(rollout.episode_returns, rollout.episode_lengths, strict=True):
            w.add_scalar("charts/episodic_return", ret, step)
            w.add_scalar("charts/episodic_length", length, step)
        self.episodes += len(rollout.episode_returns)
        self.recent_returns.extend(rollout.episode_returns)
        for name in ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac",
                     "explained_variance"):
            w.add_scalar(f"losses/{name}", stats[name], step)
        w.add_scalar("charts/learning_rate", lr, step)
        w.add_scalar("charts/clip_coef", clip_coef, step)
        w.add_scalar("charts/update_epochs_run", stats["epochs"], step)
        sps = (step - start_step) / max(time.perf_counter() - start_time, 1e-9)
        w.add_scalar("perf/sps", sps, step)
        w.add_scalar("perf/collect_sps", self.config.batch_size / max(collect_s, 1e-9), step)
        w.add_scalar("perf/update_s", update_s, step)
        recent = float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")
        if len(self.recent_returns) >= self.recent_returns.maxlen and recent > self.best_return:
            self.best_return = recent
            self.save_checkpoint(BEST)
        if progress is not None:
            progress.update(self.config.batch_size)
            progress.set_postfix(sps=f"{sps:.0f}", ret=f"{recent:.2f}", refresh=False)

    def _finish(self, wall: float, start_step: int) -> dict:
        cfg = self.config
        eval_returns = np.array([])
        if cfg.run.eval_episodes > 0:
            eval_returns = evaluate_policy(self.policy, cfg.env.env_id, cfg.run.eval_episodes,
                                           seed=cfg.run.seed + 10_000, env_kwargs=cfg.env.env_kwargs,
                                           device=self.device)
        summary = {
            "env_id": cfg.env.env_id,
            "core": cfg.policy.core,
            "seed": cfg.run.seed,
            "total_steps": self.global_step,
            "wall_time_s": round(wall, 2),
            "sps": round((self.global_step - start_step) / max(wall, 1e-9), 1),
            "episodes": self.episodes,
            "train_return_recent": float(np.mean(self.recent_returns)) if self.recent_returns else None,
            "eval_return_mean": float(eval_returns.mean()) if eval_returns.size else None,
            "eval_return_std": float(eval_returns.std()) if eval_returns.size else None,
            "eval_episodes": int(eval_returns.size),
        }
        if eval_returns.size:
            self.writer.add_scalar("eval/return_mean", summary["eval_return_mean"], self.global_step)
        self.writer.close()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def _progress_bar(cfg: TrainConfig, initial: int):
    if not cfg.run.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.num_iterations * cfg.batch_size, initial=initial, unit="step", dynamic_ncols=True)
