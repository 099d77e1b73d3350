"""Sparse-reward benchmark: the defaults, correlated sampling noise and the exploration bonuses side by side.

Every task here pays nothing until the agent has done something long and specific, so a uniform random player
almost never sees a reward within the time limit. Each task trains with ``--preset none`` and one of the arms
below on top, at the same budget and seeds, and the table gives per task and arm: how many seeds reach the
threshold (rolling mean of 100 training episodes, extrinsic return only), the steps and training wall time to
it, and the greedy evaluation at the end. The dense tasks' side of the question (does an arm cost the tasks the
defaults already learn?) is ``benchmarks/defaults_suite.py --set exploration=rnd``.

| task | what pays (nothing else does) | random player | budget | threshold |
| --- | --- | --- | --- | --- |
| ``variant/TMazeSparse30Tight-v0`` | +1 / -1: the turn after 30 steps east, limit 50 | 1e-4 at the turn | 300k | 0.9 |
| ``mnemo/MountainCarNoVel-v0`` | -1 a step until the flag | never at the flag | 800k | -110 |
| ``thirdparty/MiniGridDoorKey5x5Codes-v0`` | the goal behind a locked door | 8% reach it | 300k | 0.8 |
| ``thirdparty/MiniGridMultiRoomN2S4Codes-v0`` | the goal two rooms away, 40 steps | 2% reach it | 300k | 0.5 |

MountainCarNoVel's budget is twice its preset's; MiniGrid's goal pays ``1 - 0.9 * steps / max_steps``.

Arms (``--arms``; ``--set KEY=VALUE`` adds a setting to every arm, e.g. ``intrinsic_history=2``):

| arm | settings over the defaults |
| --- | --- |
| ``defaults`` | none |
| ``noise`` | ``noise_correlation=0.98`` (MountainCarNoVel's preset's correlated sampling noise) from the first step |
| ``rule`` | ``sparse_noise=0.98``: that noise from the point the first 32 episodes have all returned the same |
| ``rnd`` | ``exploration=rnd`` |
| ``noveld`` | ``exploration=noveld`` |
| ``noise_rnd`` | ``noise`` and ``rnd`` |
| ``rnd_none``, ``noise_none``, ``rule_none`` | ``rnd``, ``noise``, ``rule`` with ``core=none`` (memoryless) |

    nice -n 15 python benchmarks/sparse_suite.py --seeds 1 2 3 --jobs 2
    nice -n 15 python benchmarks/sparse_suite.py --tasks variant/TMazeSparse30Tight-v0 --arms defaults rnd noveld
    python benchmarks/sparse_suite.py --report-only

MiniGrid is not a dependency (it needs ``pip install --no-deps minigrid``: it depends on pygame-ce, which breaks
pygame beside it); its tasks are skipped with a note when it is missing. Runs go to ``--out`` (default
``runs/sparse_suite``), one directory per task, arm and seed; finished runs are reused.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.defaults_suite import MINIGRID, POPGYM, VARIANT, SuiteEnv, settings_for  # noqa: E402
from benchmarks.memory_suite import THRESHOLDS, Threshold, _fmt, _kilo, _parse_set, _spread, read_run, train_one  # noqa: E402

TASKS = {env.env_id: env for env in (
    SuiteEnv("variant/TMazeSparse30Tight-v0", 300_000,
             Threshold(0.9, "95% right turns (max 1); memoryless 0; a random walk almost never reaches the turn"),
             VARIANT),
    SuiteEnv("mnemo/MountainCarNoVel-v0", 800_000, THRESHOLDS["mnemo/MountainCarNoVel-v0"]),
    SuiteEnv("thirdparty/MiniGridDoorKey5x5Codes-v0", 300_000,
             Threshold(0.8, "key, door and goal in about 60 of 250 steps (max about 0.97); random 0.03"), MINIGRID),
    SuiteEnv("thirdparty/MiniGridMultiRoomN2S4Codes-v0", 300_000,
             Threshold(0.5, "through the door in about 20 of 40 steps (trained: about 0.85); random 0.01"), MINIGRID),
)}
ARMS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "rule": {"sparse_noise": 0.98},
    "noise": {"noise_correlation": 0.98},
    "rnd": {"exploration": "rnd"},
    "noveld": {"exploration": "noveld"},
    "noise_rnd": {"noise_correlation": 0.98, "exploration": "rnd"},
    "rnd_none": {"exploration": "rnd", "core": "none"},
    "noise_none": {"noise_correlation": 0.98, "core": "none"},
    "rule_none": {"sparse_noise": 0.98, "core": "none"},
}


def run_dir_for(out: Path, env_id: str, arm: str, seed: int) -> Path:
    return out / f"{env_id.split('/')[-1]}__{arm}__s{seed}"


def run_settings(env: SuiteEnv, arm: str, seed: int, run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """One run's settings: the defaults with no preset, then the arm's settings and ``extra`` (an arm's
    ``core`` picks the recurrent core, the LSTM otherwise)."""
    settings = {**ARMS[arm], **extra}
    return settings_for(env, settings.pop("core", "lstm"), seed, run_dir, settings)


def available(env: SuiteEnv) -> bool:
    """Whether the packages that register ``env`` are installed (MiniGrid and popgym are optional)."""
    optional = {MINIGRID: "minigrid", POPGYM: "popgym"}.get(env.env_import)
    return optional is None or importlib.util.find_spec(optional) is not None


def summarise(env: SuiteEnv, arm: str, out: Path, seeds: list[int]) -> dict[str, str]:
    thr = env.threshold
    runs = [read_run(d) for s in seeds if ((d := run_dir_for(out, env.env_id, arm, s)) / "summary.json").exists()]
    crossings = [r.crossing(thr.value, thr.window) for r in runs]
    solved = sum(c[0] is not None for c in crossings)
    return {
        "task": env.env_id.split("/")[-1], "arm": arm, "threshold": _fmt(thr.value), "budget": _kilo(env.budget),
        "solved": f"{solved}/{len(runs)}",
        "steps": " / ".join(_kilo(c[0]) for c in crossings) or "-",
        "wall": " / ".join("-" if c[1] is None else f"{c[1]:.0f} s" for c in crossings) or "-",
        "final": _spread([r.final_rolling(thr.window) for r in runs]),
        "greedy": _spread([r.summary["eval_return_mean"] for r in runs]),
    }


def table(rows: list[dict[str, str]]) -> str:
    head = ("| Task | Arm | Threshold | Budget | Seeds solved | Steps to threshold | Wall time to it | "
            "Final train (last 100) | Eval greedy |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines += ["| " + " | ".join(row.values()) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), metavar="ENV_ID")
    p.add_argument("--arms", nargs="+", default=["defaults", "noise", "rnd"], choices=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings added to every arm")
    p.add_argument("--jobs", type=int, default=1, help="training processes side by side")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "sparse_suite")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    a = p.parse_args()
    extra = _parse_set(a.set)
    tasks = [TASKS[t] for t in a.tasks]
    for env in tasks:
        if not available(env):
            print(f"skipping {env.env_id}: MiniGrid is not installed (pip install --no-deps minigrid)")
    tasks = [env for env in tasks if available(env)]

    jobs = []
    for env in tasks:
        for arm in a.arms:
            for seed in a.seeds:
                run_dir = run_dir_for(a.out, env.env_id, arm, seed)
                if a.report_only or (run_dir / "summary.json").exists():
                    continue
                jobs.append(run_settings(env, arm, seed, run_dir, extra))
    print(f"{len(jobs)} training runs, {a.jobs} at a time, cpu count {os.cpu_count()}", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for summary in pool.map(train_one, jobs):
            print(f"  {summary['env_id']} seed={summary['seed']} wall={summary['wall_time_s']:.0f}s "
                  f"greedy={summary['eval_return_mean']:.2f}", flush=True)
    rows = [summarise(env, arm, a.out, a.seeds) for env in tasks for arm in a.arms]
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
