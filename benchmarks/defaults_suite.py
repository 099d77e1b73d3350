"""Defaults benchmark: what a user's game gets. Every env trains with ``--preset none`` and nothing else.

For each env id and seed it trains the LSTM and the memoryless core with the
defaults alone (no preset, no flag but the step budget), then prints per env:
the success threshold, the steps and training wall time to reach it, the final
greedy and sampled evaluation returns, and the memoryless core's result on the
same settings. With ``--peer-python PY`` (a Python that has sb3-contrib, never
this package's dependency) it also runs sb3-contrib's RecurrentPPO with its
own defaults at the same step budget (``benchmarks/sb3_defaults_peer.py``)
and prints its figures in the same row.

The suite (``SUITE`` below): every built-in id, on twice its preset's budget
(the target is to reach each threshold within that; an env whose preset is
only a budget, ``BUDGET_ONLY``, on that budget, which is what the preset
promises the defaults reach it in), plus third-party memory
tasks loaded through ``--env-import`` as a user would (the ``benchmarks``
extra installs them; ``benchmarks/third_party_envs.py`` registers the MiniGrid
views), and variants of the built-in games that no preset covers
(``benchmarks/variant_envs.py``: the sparse +1 / -1 T-maze). Thresholds and
budgets of the third-party tasks and the variants are fixed here, before any
tuning, from what each task's memoryless and perfect players score.

    nice -n 19 python benchmarks/defaults_suite.py --envs popgym-CountRecallEasy-v0 --seeds 1 2 3 --jobs 2
    nice -n 19 python benchmarks/defaults_suite.py --third-party --seeds 1 2 3 --peer-python /tmp/peer/bin/python
    python benchmarks/defaults_suite.py --report-only --seeds 1 2 3          # table from finished runs
    nice -n 19 python benchmarks/defaults_suite.py --envs mnemo/TMaze-v0 --set forget_bias=0 --out runs/ablate_fb0

``--set KEY=VALUE`` changes one setting on top of the defaults, for ablations
(each ablation in its own ``--out``). Runs go to ``--out`` (default
``runs/defaults_suite``), one directory per env, core and seed; finished runs
are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.registry import CORES as REGISTERED_CORES  # noqa: E402
from benchmarks.memory_suite import (  # noqa: E402
    THRESHOLDS,
    Threshold,
    _fmt,
    _kilo,
    _parse_set,
    _spread,
    read_run,
    run_dir_for,
    train_one,
)
from envs.presets import BUDGET_ONLY, PRESETS  # noqa: E402


@dataclass(frozen=True)
class SuiteEnv:
    """One task of the suite: its id, the modules that register it, the step budget and what solved means."""

    env_id: str
    budget: int
    threshold: Threshold
    env_import: tuple[str, ...] = ()


POPGYM = ("popgym",)
MINIGRID = ("benchmarks.third_party_envs",)
VARIANT = ("benchmarks.variant_envs",)

# popgym's card and count tasks score in [-1, 1] per episode; a memoryless player guesses (-0.5 on the repeat
# tasks, about -0.9 on the count). MiniGrid's Memory room pays 1 - 0.9 * steps / max_steps for the matching
# object, 0 otherwise: a memoryless agent that walks to one object at random averages under 0.5.
THIRD_PARTY = (
    SuiteEnv("popgym-RepeatFirstEasy-v0", 200_000, Threshold(0.9, "cue 50 steps back at the end; guessing -0.5"),
             POPGYM),
    SuiteEnv("popgym-RepeatPreviousEasy-v0", 200_000,
             Threshold(0.9, "repeat the card seen 4 steps before; guessing -0.5"), POPGYM),
    SuiteEnv("popgym-CountRecallEasy-v0", 300_000, Threshold(0.5, "a running count; guessing about -0.9"),
             POPGYM),
    SuiteEnv("popgym-HigherLowerEasy-v0", 200_000, Threshold(0.3, "recall the last card; guessing 0.0"), POPGYM),
    SuiteEnv("popgym-MultiarmedBanditEasy-v0", 200_000,
             Threshold(0.5, "explore, then remember the best arm; random about 0"), POPGYM),
    SuiteEnv("popgym-PositionOnlyPendulumEasy-v0", 300_000,
             Threshold(0.8, "swing up from positions alone (max 1)"), POPGYM),
    SuiteEnv("thirdparty/MiniGridMemoryS7Codes-v0", 300_000,
             Threshold(0.8, "the matching object (max 0.96); one at random under 0.5"), MINIGRID),
    SuiteEnv("thirdparty/MiniGridMemoryS7Pixels-v0", 500_000,
             Threshold(0.8, "the matching object (max 0.96); one at random under 0.5"), MINIGRID),
)
# Built-in games with other arguments (benchmarks/variant_envs.py): no preset applies to them. The sparse T-maze
# pays +1 / -1 for the turn and nothing else: a memoryless player averages 0, a perfect one 1.
_SPARSE_TMAZE = Threshold(0.9, "95% right turns (max 1); memoryless 0")
VARIANTS = (
    SuiteEnv("variant/TMazeSparse10-v0", 100_000, _SPARSE_TMAZE, VARIANT),
    SuiteEnv("variant/TMazeSparse30-v0", 300_000, _SPARSE_TMAZE, VARIANT),
)
BUILT_IN = tuple(SuiteEnv(env_id, BUDGET_ONLY.get(env_id, 2 * preset["total_steps"]), THRESHOLDS[env_id])
                 for env_id, preset in PRESETS.items())
SUITE = {env.env_id: env for env in BUILT_IN + VARIANTS + THIRD_PARTY}


def settings_for(env: SuiteEnv, core: str, seed: int, run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The defaults with no preset: only the budget, the core, the seed and where the run goes are set."""
    return {"env_id": env.env_id, "env_import": env.env_import, "preset": "none", "total_steps": env.budget,
            "core": core, "seed": seed, "run_dir": str(run_dir), "progress": False, "device": "cpu",
            "torch_threads": 1, "eval_episodes": 20, "checkpoint_every": 10**9, **extra}


def peer_path(out: Path, env: SuiteEnv, seed: int) -> Path:
    return out / "sb3" / f"{env.env_id.split('/')[-1]}__s{seed}.json"


def run_peer(python: str, env: SuiteEnv, seed: int, path: Path) -> dict:
    """sb3-contrib's RecurrentPPO with its defaults on ``env`` (cached in ``path``)."""
    if path.exists():
        return json.loads(path.read_text())
    cmd = [python, str(ROOT / "benchmarks" / "sb3_defaults_peer.py"), "--env-id", env.env_id, "--steps",
           str(env.budget), "--seed", str(seed)]
    for module in env.env_import:
        cmd += ["--env-import", module]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peer run failed on {env.env_id} seed {seed}:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def peer_crossing(result: dict, threshold: Threshold) -> tuple[int | None, float | None]:
    """First (step, seconds) at which the peer's rolling training mean reaches the threshold."""
    curve = np.array(result["curve"], dtype=float).reshape(-1, 2)
    window = threshold.window
    if len(curve) < window:
        return None, None
    c = np.concatenate([[0.0], np.cumsum(curve[:, 1])])
    roll = (c[window:] - c[:-window]) / window
    hit = np.flatnonzero(roll >= threshold.value)
    if hit.size == 0:
        return None, None
    step = int(curve[hit[0] + window - 1, 0])
    return step, step / result["sps"]


def table(rows: list[dict]) -> str:
    """Markdown table, one row per env."""
    head = ("| Env | Threshold | Budget | LSTM: steps to threshold | LSTM: wall time | LSTM: solved | "
            "LSTM: final train | LSTM: eval greedy | LSTM: eval sampled | None: final train | "
            "None: eval sampled | sb3: steps to threshold | sb3: wall time | sb3: final train | "
            "sb3: eval sampled |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        lines.append("| " + " | ".join(row.values()) + " |")
    return "\n".join(lines)


def summarise(env: SuiteEnv, out: Path, seeds: list[int], peer: dict[int, dict]) -> dict[str, str]:
    thr = env.threshold
    lstm = [read_run(d) for s in seeds if ((d := run_dir_for(out, env.env_id, "lstm", s)) / "summary.json").exists()]
    none = [read_run(d) for s in seeds if ((d := run_dir_for(out, env.env_id, "none", s)) / "summary.json").exists()]
    crossings = [r.crossing(thr.value, thr.window) for r in lstm]
    peer_cross = [peer_crossing(peer[s], thr) for s in seeds if s in peer]

    def steps_txt(cs: list) -> str:
        return " / ".join(_kilo(c[0]) for c in cs) if cs else "-"

    def wall_txt(cs: list) -> str:
        return " / ".join("-" if c[1] is None else f"{c[1]:.0f} s" for c in cs) if cs else "-"

    solved = sum(c[0] is not None for c in crossings)
    return {
        "env": env.env_id.split("/")[-1], "threshold": _fmt(thr.value), "budget": _kilo(env.budget),
        "steps": steps_txt(crossings), "wall": wall_txt(crossings), "solved": f"{solved}/{len(lstm)}",
        "final": _spread([r.final_rolling(thr.window) for r in lstm]),
        "greedy": _spread([r.summary["eval_return_mean"] for r in lstm]),
        "sampled": _spread([r.summary.get("eval_sampled_return_mean") for r in lstm]),
        "none_final": _spread([r.final_rolling(thr.window) for r in none]),
        "none_sampled": _spread([r.summary.get("eval_sampled_return_mean") for r in none]),
        "peer_steps": steps_txt(peer_cross), "peer_wall": wall_txt(peer_cross),
        "peer_final": _spread([peer[s]["train_return_recent"] for s in seeds if s in peer]),
        "peer_sampled": _spread([peer[s]["eval_sampled_return_mean"] for s in seeds if s in peer]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=None, help="env ids (default: the whole suite)")
    p.add_argument("--third-party", action="store_true", help="only the third-party tasks")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--cores", nargs="+", default=["lstm", "none"], choices=REGISTERED_CORES.names())
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings over the defaults")
    p.add_argument("--steps", type=int, default=None, help="override every env's budget")
    p.add_argument("--jobs", type=int, default=1, help="training processes side by side")
    p.add_argument("--peer-python", default=None, help="a Python with sb3-contrib: also run RecurrentPPO")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "defaults_suite")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    p.add_argument("--json", type=Path, default=None, help="also write the table's rows to this file")
    a = p.parse_args()
    names = a.envs or ([e.env_id for e in THIRD_PARTY] if a.third_party else list(SUITE))
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        raise SystemExit(f"not in the suite: {unknown}; known: {sorted(SUITE)}")
    envs = [SUITE[n] for n in names]
    if a.steps is not None:
        envs = [SuiteEnv(e.env_id, a.steps, e.threshold, e.env_import) for e in envs]
    extra = _parse_set(a.set)

    jobs = []
    for env in envs:
        for seed in a.seeds:
            for core in a.cores:
                run_dir = run_dir_for(a.out, env.env_id, core, seed)
                if a.report_only or (run_dir / "summary.json").exists():
                    continue
                jobs.append(settings_for(env, core, seed, run_dir, extra))
    print(f"{len(jobs)} training runs, {a.jobs} at a time, cpu count {os.cpu_count()}", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        for summary in pool.map(train_one, jobs):
            print(f"  {summary['env_id']} {summary['core']} seed={summary['seed']} wall={summary['wall_time_s']:.0f}s "
                  f"greedy={summary['eval_return_mean']:.2f} sampled={summary['eval_sampled_return_mean']:.2f}",
                  flush=True)

    peers: dict[str, dict[int, dict]] = {}
    if a.peer_python and not a.report_only:
        # The peer runs one at a time, after this project's runs, so the two never share the cores.
        for env in envs:
            for seed in a.seeds:
                result = run_peer(a.peer_python, env, seed, peer_path(a.out, env, seed))
                print(f"  sb3-contrib {env.env_id} seed={seed} wall={result['wall_s']:.0f}s "
                      f"sampled={result['eval_sampled_return_mean']:.2f}", flush=True)
    for env in envs:
        peers[env.env_id] = {s: json.loads(path.read_text()) for s in a.seeds
                             if (path := peer_path(a.out, env, s)).exists()}
    rows = [summarise(env, a.out, a.seeds, peers[env.env_id]) for env in envs]
    print()
    print(table(rows))
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
