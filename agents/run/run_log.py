"""What a training run records for people: TensorBoard scalars per iteration, the settings it derived
(config.json, summary.json) and the final summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import Rollout
from agents.run.checkpoint import atomic_write_text
from agents.spaces import choose_obs_encoder, leaf_spaces

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter  # heavy: imported only by a run that trains

LOSS_NAMES = ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac",
              "explained_variance")


def derived_settings(cfg: TrainConfig, policy: RecurrentActorCritic, device: torch.device,
                     device_note: str | None) -> dict[str, dict]:
    """The settings a run derived from the env rather than took from the config, each with its value and the
    rule that chose it (recorded in config.json and summary.json; the rules are listed in docs/defaults.md)."""
    derived = {}
    if cfg.ppo.bptt_len is None:
        whole = cfg.sequence_len == cfg.ppo.num_steps
        derived["bptt_len"] = {"value": cfg.sequence_len, "why": "not set: the whole rollout (--num-steps)" if whole
                               else "not set: an even share of the rollout for each of --num-minibatches"}
    if cfg.policy.normalize_obs is None:
        why = ("a vector observation is unbounded or has bounds beyond +-10" if policy.normalize_obs
               else "every vector observation is bounded within +-10 (or there is none)")
        derived["normalize_obs"] = {"value": policy.normalize_obs, "why": why}
    if cfg.policy.obs_encoder == "auto":
        kinds = sorted({choose_obs_encoder(leaf) for leaf in leaf_spaces(policy.observation_space)})
        derived["obs_encoder"] = {"value": kinds[0] if len(kinds) == 1 else kinds,
                                  "why": "uint8 HxWxC with both sides >= 16 and bound 255: image; smaller "
                                         "or lower-bounded: grid of codes; anything else: flat"}
    if cfg.run.device == "auto":
        derived["device"] = {"value": device.type, "why": device_note}
    return derived


def log_iteration(w: SummaryWriter, step: int, rollout: Rollout, stats: dict, nonfinite_skips: int, lr: float,
                  clip_coef: float, sps: float, collect_sps: float, update_s: float) -> None:
    """One iteration's scalars: the episodes that ended, the update's statistics, the schedule and the speed."""
    for ret, length in zip(rollout.episode_returns, rollout.episode_lengths, strict=True):
        w.add_scalar("charts/episodic_return", ret, step)
        w.add_scalar("charts/episodic_length", length, step)
    if rollout.nonfinite_skips:
        w.add_scalar("charts/nonfinite_skips", nonfinite_skips, step)
    for name in LOSS_NAMES:
        w.add_scalar(f"losses/{name}", stats[name], step)
    w.add_scalar("charts/learning_rate", lr, step)
    w.add_scalar("charts/clip_coef", clip_coef, step)
    w.add_scalar("charts/update_epochs_run", stats["epochs"], step)
    if "reward_scale" in stats:
        w.add_scalar("charts/reward_scale", stats["reward_scale"], step)
    w.add_scalar("perf/sps", sps, step)
    w.add_scalar("perf/collect_sps", collect_sps, step)
    w.add_scalar("perf/update_s", update_s, step)


def summarize(cfg: TrainConfig, global_step: int, start_step: int, wall: float, episodes: int,
              recent_returns: list[float], greedy: np.ndarray, sampled: np.ndarray, derived: dict,
              nonfinite_skips: int) -> dict:
    """summary.json: the run's final figures, floats cleaned for people (``clean_floats``)."""
    summary = {
        "env_id": cfg.env.env_id,
        "preset": cfg.env.preset,
        "core": cfg.policy.core,
        "seed": cfg.run.seed,
        "total_steps": global_step,
        "wall_time_s": round(wall, 2),
        "sps": round((global_step - start_step) / max(wall, 1e-9), 1),
        "episodes": episodes,
        "train_return_recent": float(np.mean(recent_returns)) if recent_returns else None,
        "eval_return_mean": float(greedy.mean()) if greedy.size else None,
        "eval_return_std": float(greedy.std()) if greedy.size else None,
        "eval_sampled_return_mean": float(sampled.mean()) if sampled.size else None,
        "eval_sampled_return_std": float(sampled.std()) if sampled.size else None,
        "eval_episodes": int(max(greedy.size, sampled.size)),
        "derived": derived,
    }
    if nonfinite_skips:
        summary["nonfinite_skips"] = nonfinite_skips
    return summary


def write_summary(w: SummaryWriter, run_dir: Path, summary: dict, step: int) -> dict:
    """Log the evaluation's means, flush the events, write summary.json (floats cleaned); returns what was
    written."""
    if summary["eval_return_mean"] is not None:
        w.add_scalar("eval/return_mean", summary["eval_return_mean"], step)
    if summary["eval_sampled_return_mean"] is not None:
        w.add_scalar("eval/sampled_return_mean", summary["eval_sampled_return_mean"], step)
    w.flush()
    summary = clean_floats(summary)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


def progress_bar(cfg: TrainConfig, initial: int):
    if not cfg.run.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.num_iterations * cfg.batch_size, initial=initial, unit="step", dynamic_ncols=True)


def clean_floats(value):
    """Figures for people: floats rounded to 10 significant digits, in dicts and lists at any depth.

    A mean of sums of rewards such as -0.1 carries binary rounding noise (-1.2950000000000002); ten
    digits drop it and keep every digit that means something. Other values are returned as they are.
    """
    if isinstance(value, dict):
        return {k: clean_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(clean_floats(v) for v in value)
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.10g}")
    return value
