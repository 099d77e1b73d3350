"""What a training run records for people: TensorBoard scalars per iteration, the settings it derived
(config.json, summary.json) and the final summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from gymnasium import spaces

from agents.config import TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import Rollout
from agents.run.checkpoint import atomic_write_text
from agents.spaces import (
    MIN_FRAME_SIDE,
    choose_obs_encoder,
    image_layout,
    is_image_space,
    leaf_spaces,
    policy_observation_space,
)

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter  # heavy: imported only by a run that trains

LOSS_NAMES = ("loss", "pg_loss", "v_loss", "entropy_loss", "approx_kl", "old_approx_kl", "clipfrac",
              "explained_variance", "recall_loss")


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
        leaves = leaf_spaces(policy_observation_space(policy.observation_space))  # what the encoder reads
        kinds = sorted({choose_obs_encoder(leaf) for leaf in leaves})
        whys = list(dict.fromkeys(encoder_reason(leaf) for leaf in leaves))  # one per kind of leaf, in order
        derived["obs_encoder"] = {"value": kinds[0] if len(kinds) == 1 else kinds, "why": "; ".join(whys)}
    if cfg.spreads_envs_over_workers:
        workers, per_worker = cfg.worker_layout
        for name, value in (("num_workers", workers), ("envs_per_worker", per_worker)):
            if getattr(cfg.run, name) is None:
                derived[name] = {"value": value, "why": f"not set: --num-envs {cfg.env.num_envs} over "
                                 f"{workers} worker(s) of {per_worker} env(s) each"}
    if cfg.run.device == "auto":
        derived["device"] = {"value": device.type, "why": device_note}
    return derived


def merge_policy_settings(per_policy: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """One ``derived_settings`` record for a run with named policies, from each policy's: a setting every policy
    derived alike is kept as it is; one they derived differently (from their own spaces) gets
    ``{"value": {name: value}, "why": "name: why; ..."}``."""
    first = next(iter(per_policy.values()))
    merged = {}
    for key in first:
        entries = {name: derived[key] for name, derived in per_policy.items()}
        if all(entry == first[key] for entry in entries.values()):
            merged[key] = first[key]
        else:
            merged[key] = {"value": {name: entry["value"] for name, entry in entries.items()},
                           "why": "; ".join(f"{name}: {entry['why']}" for name, entry in entries.items())}
    return merged


def encoder_reason(leaf: spaces.Space) -> str:
    """Which branch of ``choose_obs_encoder``'s auto rule a leaf took: "uint8 7x7x3 with a side below 16: grid
    of codes"."""
    shape = getattr(leaf, "shape", None)
    shape = ("x".join(map(str, shape)) if len(shape) == 3 else str(shape)) if shape else type(leaf).__name__
    what = f"{getattr(leaf, 'dtype', '')} {shape}".strip()
    kind = choose_obs_encoder(leaf)
    if not is_image_space(leaf):
        return f"{what}, not a uint8 HxWxC frame: flat"
    if kind == "image":
        return f"{what} with both sides >= {MIN_FRAME_SIDE} and bound 255: image"
    _, _, height, width = image_layout(leaf)
    if min(height, width) < MIN_FRAME_SIDE:
        return f"{what} with a side below {MIN_FRAME_SIDE}: grid of codes"
    return f"{what} with values below 255: grid of codes"


def log_iteration(w: SummaryWriter, step: int, episode_returns: list[float], episode_lengths: list[int], stats: dict,
                  nonfinite_skips: int | None, lr: float, clip_coef: float, sps: float, collect_sps: float,
                  update_s: float) -> None:
    """One iteration's scalars: the episodes that ended, the update's statistics, the schedule and the speed.

    ``nonfinite_skips`` is the run's count when this iteration skipped some (None otherwise). The losses are
    those in ``stats``: a run with named policies logs each policy's own (``log_policy_iteration``) instead.
    """
    for ret, length in zip(episode_returns, episode_lengths, strict=True):
        w.add_scalar("charts/episodic_return", ret, step)
        w.add_scalar("charts/episodic_length", length, step)
    if nonfinite_skips is not None:
        w.add_scalar("charts/nonfinite_skips", nonfinite_skips, step)
    for name in LOSS_NAMES:
        if name in stats:
            w.add_scalar(f"losses/{name}", stats[name], step)
    w.add_scalar("charts/learning_rate", lr, step)
    w.add_scalar("charts/clip_coef", clip_coef, step)
    w.add_scalar("charts/update_epochs_run", stats["epochs"], step)
    if "reward_scale" in stats:
        w.add_scalar("charts/reward_scale", stats["reward_scale"], step)
    w.add_scalar("perf/sps", sps, step)
    w.add_scalar("perf/collect_sps", collect_sps, step)
    w.add_scalar("perf/update_s", update_s, step)


def log_policy_iteration(w: SummaryWriter, step: int, name: str, rollout: Rollout, stats: dict) -> None:
    """One named policy's share of an iteration (``--policy-map``): its agents' episodes and its update's
    statistics, under tags that end in ``/<name>``."""
    for ret, length in zip(rollout.episode_returns, rollout.episode_lengths, strict=True):
        w.add_scalar(f"charts/episodic_return/{name}", ret, step)
        w.add_scalar(f"charts/episodic_length/{name}", length, step)
    for loss in LOSS_NAMES:
        if loss in stats:
            w.add_scalar(f"losses/{loss}/{name}", stats[loss], step)
    w.add_scalar(f"charts/update_epochs_run/{name}", stats["epochs"], step)
    if "reward_scale" in stats:
        w.add_scalar(f"charts/reward_scale/{name}", stats["reward_scale"], step)


def policy_summaries(greedy: dict[str, np.ndarray], sampled: dict[str, np.ndarray]) -> dict[str, dict]:
    """summary.json's ``"policies"`` for a run with named policies: each policy's evaluation, under the keys the
    run's own evaluation has (``eval_return_mean`` and the rest), over its agents' episodes."""
    return {name: {
        "eval_return_mean": float(greedy[name].mean()) if greedy[name].size else None,
        "eval_return_std": float(greedy[name].std()) if greedy[name].size else None,
        "eval_sampled_return_mean": float(sampled[name].mean()) if sampled[name].size else None,
        "eval_sampled_return_std": float(sampled[name].std()) if sampled[name].size else None,
        "eval_episodes": int(max(greedy[name].size, sampled[name].size)),
    } for name in greedy}


def summarize(cfg: TrainConfig, global_step: int, start_step: int, wall: float, episodes: int,
              recent_returns: list[float], greedy: np.ndarray, sampled: np.ndarray, derived: dict,
              nonfinite_skips: int) -> dict:
    """summary.json: the run's final figures, floats cleaned for people (``clean_floats``).

    ``train_return_recent`` is the mean return of the last ``len(recent_returns)`` (20) training episodes, the
    progress bar's ``ret=``; ``write_summary`` adds ``train_return_trend`` (see ``return_trend``).
    """
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
    ordered = {}
    for key, value in summary.items():
        ordered[key] = value
        if key == "train_return_recent":  # beside it, where a person reading the file looks for it
            ordered["train_return_trend"] = return_trend(run_dir)
    summary = clean_floats(ordered)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary


RETURN_TAG = "charts/episodic_return"
TREND_SHARE = 5  # the trend compares the last fifth of the steps with the fifth before
TREND_MIN_ITERATIONS = 3  # per window; fewer give no trend (None)


def return_trend(run_dir: Path) -> dict | None:
    """Whether the training return was still rising when the run ended, from its TensorBoard episode returns.

    Each iteration logs its episodes at one step; an iteration's mean return is one sample (episodes of one
    iteration share a policy, so they are not independent draws). ``change`` is the mean over the iterations in
    the last fifth of the run's steps minus that over the fifth before; ``noise`` is twice the standard error of
    that difference; ``still_rising`` is ``change > noise``. The same rule for any env: it needs no return
    scale. None when either window holds fewer than 3 iterations with episodes, or the events cannot be read.
    """
    import logging

    # A resumed run's events purge those logged after its checkpoint; the reader reports that as a WARNING
    # ("out of order event.step ... TensorFlow restart") that would reach the user's terminal.
    tb_logger = logging.getLogger("tensorboard")
    level = tb_logger.level
    tb_logger.setLevel(logging.ERROR)
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        scalars = events.Scalars(RETURN_TAG)
    except Exception:  # no events, no tag, or an unreadable file: the trend is unknown, the run is not
        return None
    finally:
        tb_logger.setLevel(level)
    by_step: dict[int, list[float]] = {}
    for event in scalars:
        by_step.setdefault(event.step, []).append(event.value)
    if not by_step:
        return None
    end = max(by_step)
    cut_late, cut_early = end * (TREND_SHARE - 1) / TREND_SHARE, end * (TREND_SHARE - 2) / TREND_SHARE
    late = [float(np.mean(v)) for step, v in by_step.items() if step > cut_late]
    early = [float(np.mean(v)) for step, v in by_step.items() if cut_early < step <= cut_late]
    if min(len(late), len(early)) < TREND_MIN_ITERATIONS:
        return None
    change = float(np.mean(late) - np.mean(early))
    noise = 2.0 * math.sqrt(np.var(late, ddof=1) / len(late) + np.var(early, ddof=1) / len(early))
    return {"change": change, "noise": noise, "still_rising": bool(change > noise),
            "why": f"mean return of the {len(late)} iterations in the last fifth of the steps minus the "
                   f"{len(early)} in the fifth before; rising when above twice its standard error (noise)"}


def progress_bar(cfg: TrainConfig, initial: int):
    if not cfg.run.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.step_budget, initial=initial, unit="step", dynamic_ncols=True)


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
