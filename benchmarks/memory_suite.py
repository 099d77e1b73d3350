"""Learning suite: the LSTM agent against the memoryless one on every built-in env, on each preset's budget.

For each env id and seed, trains ``--core lstm`` and ``--core none`` with the
env's preset (``envs/presets.py``), then reads the TensorBoard events back:

- the learning curve: ``charts/episodic_return`` against env steps;
- the first env step at which the rolling mean of the last ``window`` (per env,
  in ``THRESHOLDS``) training episodes reaches the env's success threshold (``THRESHOLDS`` below),
  and the training wall time at that step (``step / perf/sps``: the trainer logs
  ``perf/sps`` as steps since the start of training over seconds since then, so
  this is the time spent training, env construction and evaluation excluded);
- the final deterministic evaluation return (``summary.json``).

It prints a Markdown table (one row per env: LSTM and memoryless side by side)
and writes one PNG per env with both curves (rolling mean, every seed). Columns:
steps and training wall time to the threshold per seed ("-": never reached),
seeds that reached it, the mean training return of the last ``window`` episodes
("final train"), the 20-episode deterministic evaluation ("final eval"), the
memoryless core's best rolling mean ("best train": a maximum over many noisy
windows, so biased upwards), and the LSTM run's steps per second. Several seeds
show as ``median [min, max]``.

    nice -n 19 python benchmarks/memory_suite.py                       # all built-in envs, seed 1
    nice -n 19 python benchmarks/memory_suite.py --envs mnemo/GatedMemory-v0 mnemo/CountRecall-v0 --seeds 1 2
    nice -n 19 python benchmarks/memory_suite.py --jobs 2 --plot-dir docs/assets/curves
    python benchmarks/memory_suite.py --report-only --seeds 1 2 --plot-dir docs/assets/curves  # from finished runs
    nice -n 19 python benchmarks/memory_suite.py --envs mnemo/DarkCatch-v0 --cores lstm --set learning_rate=5e-4

Runs go to ``--out`` (default ``runs/memory_suite/<env>__<core>__s<seed>``);
``--reuse`` skips runs whose ``summary.json`` already exists. ``--set`` applies
extra settings on top of the preset (for tuning; values are parsed as JSON when
they can be, e.g. ``--set encoder_sizes=[128]``). Plots need matplotlib, a
benchmark-only extra (``pip install matplotlib``).

Each training process uses one torch thread; ``--jobs N`` runs N of them side by
side (keep N at or below the number of cores, or the wall times stop meaning much).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.registry import CORES as REGISTERED_CORES  # noqa: E402
from envs.presets import PRESETS, preset_for  # noqa: E402


@dataclass(frozen=True)
class Threshold:
    """What "solved" means for one env: a rolling-mean training return to reach, and where it comes from."""

    value: float
    source: str
    window: int = 100  # episodes in the rolling mean


# Success thresholds on the rolling mean of training episode returns (stochastic policy, so
# slightly below what the deterministic policy scores). Sources in `docs/envs.md`, `docs/games.md`.
THRESHOLDS: dict[str, Threshold] = {
    "mnemo/TMaze-v0": Threshold(3.8, "max 4; memoryless at most 1.5"),
    "mnemo/TMazeLong-v0": Threshold(3.8, "max 4; memoryless at most 1.5"),
    "mnemo/GatedMemory-v0": Threshold(2.7, "90% of max 3; memoryless about 1.27", 500),
    "mnemo/CountRecall-v0": Threshold(0.9, "90% of max 1; memoryless about 0.2", 500),
    "mnemo/DarkCatch-v0": Threshold(4.0, "9 of 10 balls caught (max 5); memoryless about -1.6"),
    "mnemo/DarkCatchPixels-v0": Threshold(4.0, "9 of 10 balls caught (max 5); memoryless 0.1-0.5 (2 shown frames)"),
    "mnemo/FogMaze-v0": Threshold(0.8, "max 0.95, cue remembered on a shortest path 0.8-0.95; memoryless about -0.6"),
    "mnemo/FogMazePixels-v0": Threshold(0.8, "max 0.95; memoryless -0.3 to -0.9"),
    "mnemo/FlickerPong-v0": Threshold(3.0, "a 3-0 win (max about 3.7); random about -1.5"),
    "mnemo/FlickerPongPixels-v0": Threshold(3.0, "a 3-0 win (max about 3.7); random about -1.5"),
    "mnemo/CartPoleNoVel-v1": Threshold(475.0, "CartPole-v1's reward threshold (max 500)"),
    "mnemo/CartPoleFlicker-v1": Threshold(475.0, "CartPole-v1's reward threshold (max 500)"),
    "mnemo/PendulumNoVel-v1": Threshold(-200.0, "max 0; about -150 is solved with full observations"),
    "mnemo/AcrobotNoVel-v1": Threshold(-100.0, "Acrobot-v1's reward threshold"),
    "mnemo/MountainCarNoVel-v0": Threshold(-110.0, "MountainCar-v0's reward threshold"),
}

CORES = ("lstm", "none")


@dataclass
class RunResult:
    """One finished training run, read back from its directory."""

    env_id: str
    core: str
    seed: int
    steps: np.ndarray  # (E,) env step at which each training episode was logged
    returns: np.ndarray  # (E,) its return
    sps_steps: np.ndarray  # (I,) env step of each iteration
    sps: np.ndarray  # (I,) steps per second since the start of training, at that iteration
    summary: dict[str, Any]

    def rolling(self, window: int) -> np.ndarray:
        """(E,) mean return of the last ``window`` episodes (fewer at the start)."""
        c = np.concatenate([[0.0], np.cumsum(self.returns)])
        idx = np.arange(1, len(self.returns) + 1)
        lo = np.maximum(idx - window, 0)
        return (c[idx] - c[lo]) / (idx - lo)

    def wall_at(self, step: float) -> float:
        """Training seconds elapsed at env step ``step``."""
        i = int(np.searchsorted(self.sps_steps, step))
        i = min(i, len(self.sps_steps) - 1)
        return float(self.sps_steps[i] / self.sps[i])

    def crossing(self, threshold: float, window: int) -> tuple[int | None, float | None]:
        """First (env step, training seconds) at which the rolling mean over a full window reaches ``threshold``."""
        roll = self.rolling(window)
        full = np.arange(len(roll)) >= window - 1
        hit = np.flatnonzero(full & (roll >= threshold))
        if hit.size == 0:
            return None, None
        step = int(self.steps[hit[0]])
        return step, self.wall_at(step)

    def final_rolling(self, window: int) -> float:
        """Mean training return of the last ``window`` episodes."""
        return float(self.returns[-window:].mean()) if len(self.returns) else float("nan")

    def best_rolling(self, window: int) -> float:
        """Best rolling mean over a full window (biased upwards by noise: the max of many windows)."""
        roll = self.rolling(window)
        return float(roll[window - 1:].max()) if len(roll) >= window else float("nan")


def run_dir_for(out: Path, env_id: str, core: str, seed: int) -> Path:
    return out / f"{env_id.split('/')[-1]}__{core}__s{seed}"


def settings_for(env_id: str, core: str, seed: int, run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The preset, then the suite's run settings, then ``--set`` overrides."""
    return {**preset_for(env_id), "env_id": env_id, "core": core, "seed": seed, "run_dir": str(run_dir),
            "progress": False, "device": "cpu", "torch_threads": 1, "eval_episodes": 20,
            "checkpoint_every": 10**9, **extra}


def train_one(settings: dict[str, Any]) -> dict:
    """Train one run (in a worker process) and return its summary."""
    import torch

    from agents.config import TrainConfig
    from agents.train.trainer import Trainer

    torch.set_num_threads(settings["torch_threads"])
    config = TrainConfig().with_overrides(settings).validate()
    return Trainer(config).train()


def read_run(run_dir: Path) -> RunResult:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = json.loads((run_dir / "summary.json").read_text())
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    episodes = acc.Scalars("charts/episodic_return")
    sps = acc.Scalars("perf/sps")
    return RunResult(
        env_id=summary["env_id"], core=summary["core"], seed=summary["seed"],
        steps=np.array([e.step for e in episodes]), returns=np.array([e.value for e in episodes]),
        sps_steps=np.array([e.step for e in sps]), sps=np.array([e.value for e in sps]), summary=summary)


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if abs(x) < 100 else f"{x:.0f}"


def _kilo(step: int | None) -> str:
    return "-" if step is None else f"{step / 1000:.0f}k"


def _spread(values: list[float], digits: int = 2) -> str:
    """'m' for one value, 'median [min, max]' for several."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return _fmt(vals[0], digits)
    return f"{_fmt(statistics.median(vals), digits)} [{_fmt(min(vals), digits)}, {_fmt(max(vals), digits)}]"


def window_for(env_id: str, override: int | None) -> int:
    return override if override is not None else THRESHOLDS[env_id].window


def table(results: dict[str, dict[str, list[RunResult]]], window_override: int | None = None) -> str:
    """Markdown table, one row per env."""
    head = ("| Env | Threshold | Budget | LSTM: steps to threshold | LSTM: wall time | LSTM: solved | "
            "LSTM: final train | LSTM: final eval | None: final train | None: best train | None: final eval | "
            "LSTM sps |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for env_id, by_core in results.items():
        thr, window = THRESHOLDS[env_id].value, window_for(env_id, window_override)
        lstm, none = by_core.get("lstm", []), by_core.get("none", [])
        crossings = [r.crossing(thr, window) for r in lstm]
        solved = [c for c in crossings if c[0] is not None]
        steps = [c[0] for c in solved]
        walls = [c[1] for c in solved]
        step_txt = " / ".join(_kilo(c[0]) for c in crossings) if crossings else "-"
        wall_txt = " / ".join("-" if c[1] is None else f"{c[1]:.0f} s" for c in crossings) if crossings else "-"
        if len(solved) > 1:
            step_txt += f" (median {statistics.median(steps) / 1000:.0f}k)"
            wall_txt += f" (median {statistics.median(walls):.0f} s)"
        budget = max((r.summary["total_steps"] for runs in by_core.values() for r in runs), default=0)
        sps = [r.summary["sps"] for r in lstm]
        lines.append(
            f"| {env_id.split('/')[-1]} | {_fmt(thr)} | {_kilo(budget)} | {step_txt} | {wall_txt} | "
            f"{len(solved)}/{len(lstm)} | {_spread([r.final_rolling(window) for r in lstm])} | "
            f"{_spread([r.summary['eval_return_mean'] for r in lstm])} | "
            f"{_spread([r.final_rolling(window) for r in none])} | "
            f"{_spread([r.best_rolling(window) for r in none])} | "
            f"{_spread([r.summary['eval_return_mean'] for r in none])} | "
            f"{_spread(sps, 0) if sps else '-'} |")
    return "\n".join(lines)


def plot(env_id: str, by_core: dict[str, list[RunResult]], window: int, path: Path) -> None:
    """Rolling-mean training return against env steps, LSTM and memoryless, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"lstm": "#1f77b4", "gru": "#2ca02c", "none": "#d62728", "stack": "#ff7f0e"}
    labels = {"lstm": "LSTM", "gru": "GRU", "none": "memoryless", "stack": "frame stack"}
    fig, ax = plt.subplots(figsize=(5.0, 3.0), dpi=80)
    for core, runs in by_core.items():
        for i, r in enumerate(runs):
            skip = min(window, 20) - 1  # the first few episodes alone make a noisy spike
            ax.plot(r.steps[skip:], r.rolling(window)[skip:], color=colors.get(core, "gray"), lw=1.2, alpha=0.85,
                    label=labels.get(core, core) if i == 0 else None)
    thr = THRESHOLDS[env_id]
    ax.axhline(thr.value, color="black", ls="--", lw=0.8, label=f"threshold {thr.value:g}")
    ax.set_title(f"{env_id} ({window}-episode rolling mean)", fontsize=9)
    ax.set_xlabel("env steps", fontsize=8)
    ax.set_ylabel("episodic return", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(PRESETS), help="env ids (default: every preset)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--cores", nargs="+", default=list(CORES), choices=REGISTERED_CORES.names())
    p.add_argument("--steps", type=int, default=None, help="override every preset's total_steps")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra settings over the preset")
    p.add_argument("--window", type=int, default=None,
                   help="episodes in the rolling mean (default: the env's, in THRESHOLDS)")
    p.add_argument("--jobs", type=int, default=1, help="training processes side by side")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "memory_suite")
    p.add_argument("--reuse", action="store_true", help="skip runs that already have a summary.json")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: table and plots from the finished runs found in --out")
    p.add_argument("--plot-dir", type=Path, default=None, help="write <env>.png curves here")
    p.add_argument("--json", type=Path, default=None, help="also write the per-run figures to this file")
    a = p.parse_args()
    unknown = [e for e in a.envs if e not in THRESHOLDS]
    if unknown:
        raise SystemExit(f"no threshold for {unknown}; known: {sorted(THRESHOLDS)}")
    extra = _parse_set(a.set)
    if a.steps is not None:
        extra["total_steps"] = a.steps

    jobs = []
    for env_id in a.envs:
        for seed in a.seeds:
            for core in a.cores:
                run_dir = run_dir_for(a.out, env_id, core, seed)
                if a.report_only or (a.reuse and (run_dir / "summary.json").exists()):
                    continue
                if run_dir.exists() and any(run_dir.iterdir()):
                    raise SystemExit(f"{run_dir} exists; pass --reuse, or remove it or choose another --out")
                jobs.append(settings_for(env_id, core, seed, run_dir, extra))
    print(f"{len(jobs)} training runs, {a.jobs} at a time, cpu count {os.cpu_count()}", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for summary in pool.map(train_one, jobs):
            print(f"  {summary['env_id']} {summary['core']} "
                  f"seed={summary['seed']} steps={summary['total_steps']} wall={summary['wall_time_s']:.0f}s "
                  f"eval={summary['eval_return_mean']:.2f}", flush=True)

    results: dict[str, dict[str, list[RunResult]]] = {}
    for env_id in a.envs:
        for core in a.cores:
            for seed in a.seeds:
                run_dir = run_dir_for(a.out, env_id, core, seed)
                if (run_dir / "summary.json").exists():
                    results.setdefault(env_id, {}).setdefault(core, []).append(read_run(run_dir))
    print()
    print(table(results, a.window))
    if a.plot_dir is not None:
        for env_id, by_core in results.items():
            plot(env_id, by_core, window_for(env_id, a.window), a.plot_dir / f"{env_id.split('/')[-1]}.png")
    if a.json is not None:
        rows = []
        for env_id, by_core in results.items():
            for runs in by_core.values():
                for r in runs:
                    window = window_for(env_id, a.window)
                    step, wall = r.crossing(THRESHOLDS[env_id].value, window)
                    rows.append({**r.summary, "threshold": THRESHOLDS[env_id].value, "window": window,
                                 "threshold_step": step, "threshold_wall_s": wall,
                                 "final_rolling": r.final_rolling(window), "best_rolling": r.best_rolling(window)})
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
