"""Soak: one long training run, resident memory (RSS) sampled over time; growth after warm-up must stay small.

A leak in the loop (a tensor kept per step, an ever-growing list, event-file or checkpoint handles
left open) shows as RSS that keeps climbing. This trains ``--steps`` env steps (default 1M) on a
fast env with checkpoints every ``--checkpoint-every`` steps (so rotation, env snapshots and
TensorBoard flushes are part of the soak) and samples RSS, open file descriptors and threads after
every iteration.

    python benchmarks/soak.py                                 # 1M steps of mnemo/TMaze-v0
    python benchmarks/soak.py --steps 200000 --env-id mnemo/CartPoleNoVel-v1
    python benchmarks/soak.py --json soak.json

Prints RSS at every tenth of the run, then: RSS at the end of warm-up (the first ``--warmup``
fraction of steps), the largest RSS after it, their ratio, and open files / threads at both points.
Exits 1 when growth after warm-up exceeds ``--max-growth`` (default 5%) or descriptors leak.
Linux only (reads /proc/self).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from agents.config import TrainConfig  # noqa: E402
from agents.train.trainer import Trainer  # noqa: E402
from envs.presets import preset_for  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process in MiB (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-id", default="mnemo/TMaze-v0")
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps treated as warm-up")
    parser.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS growth after warm-up")
    parser.add_argument("--async-envs", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the samples and figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    samples: list[dict] = []
    start = time.perf_counter()

    def sample(trainer: Trainer) -> None:
        samples.append({"step": trainer.global_step, "s": round(time.perf_counter() - start, 2),
                        "rss_mb": round(rss_mb(), 1), "fds": open_fds(), "threads": threads()})

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig().with_overrides({
            **preset_for(args.env_id), "env_id": args.env_id, "total_steps": args.steps, "eval_episodes": 0,
            "progress": False, "device": "cpu", "checkpoint_every": args.checkpoint_every,
            "async_envs": args.async_envs, "run_dir": f"{tmp}/run"})
        trainer = Trainer(config.validate())
        print(f"soak: {args.env_id}, {args.steps} steps, {config.env.num_envs} envs x {config.ppo.num_steps} "
              f"steps per iteration, checkpoint every {args.checkpoint_every}; RSS at start {rss_mb():.1f} MiB",
              flush=True)
        next_report = 0.0
        steps = args.steps

        def on_iteration(t: Trainer) -> None:
            nonlocal next_report
            sample(t)
            if t.global_step >= next_report * steps:
                s = samples[-1]
                print(f"  step {s['step']:>9}  {s['s']:>7.1f} s  RSS {s['rss_mb']:>7.1f} MiB  fds {s['fds']:>3}  "
                      f"threads {s['threads']}", flush=True)
                next_report += 0.1

        summary = trainer.train(on_iteration)

    warm_end = next(i for i, s in enumerate(samples) if s["step"] >= args.warmup * steps)
    warm, after = samples[warm_end], samples[warm_end:]
    peak = max(s["rss_mb"] for s in after)
    growth = peak / warm["rss_mb"] - 1
    fd_leak = samples[-1]["fds"] - warm["fds"]
    figures = {
        "env_id": args.env_id, "steps": summary["total_steps"], "wall_s": summary["wall_time_s"],
        "sps": summary["sps"], "rss_start_of_run_mb": samples[0]["rss_mb"], "rss_after_warmup_mb": warm["rss_mb"],
        "rss_peak_after_warmup_mb": peak, "rss_end_mb": samples[-1]["rss_mb"], "growth_after_warmup": round(growth, 4),
        "fds_after_warmup": warm["fds"], "fds_end": samples[-1]["fds"], "threads_end": samples[-1]["threads"],
    }
    print(json.dumps(figures, indent=2))
    ok = growth <= args.max_growth and fd_leak <= 0
    print(f"RSS growth after warm-up: {100 * growth:+.2f}% (limit {100 * args.max_growth:.0f}%), "
          f"open files {warm['fds']} -> {samples[-1]['fds']}: {'PASS' if ok else 'FAIL'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"figures": figures, "samples": samples}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
