"""What the ``--sparse-noise`` rule decides on each task: whether a run switches correlated noise on.

The rule (``agents/train/sparse_noise.py``, opt-in: ``--sparse-noise 0.98``, which every run here adds) switches
noise on when the first ``--sparse-noise-episodes`` episodes all return the same, and otherwise leaves the run
exactly as it was. So where it decides "off", the
run's figures are those it had without the rule, and only the tasks where it decides "on" need training
again. This script trains each task with the settings of its suite, only until the rule has decided (a few
rollouts), and prints the decision, the step it came at and the return the first episodes shared.

    python benchmarks/sparse_noise_rule.py --suite defaults --seeds 1 2 3      # every defaults-suite task
    python benchmarks/sparse_noise_rule.py --suite presets --seeds 1 2 3       # every built-in with its preset
    python benchmarks/sparse_noise_rule.py --suite sparse --seeds 1 2 3        # the sparse-reward suite

Tasks whose packages are missing (popgym, MiniGrid) are listed as skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.defaults_suite import SUITE, settings_for  # noqa: E402
from benchmarks.sparse_suite import TASKS, available  # noqa: E402
from envs.presets import PRESETS, preset_for  # noqa: E402

# No decision within this many steps is reported as undecided (episodes longer than the whole budget).
STEP_CAP = 100_000


def decide(settings: dict[str, Any]) -> dict:
    """Train with ``settings`` (and ``--sparse-noise 0.98`` unless they set it) until the rule decides (or
    ``STEP_CAP``); the rule's state and the step."""
    import torch

    from agents.config import TrainConfig
    from agents.train.sparse_noise import inactive_reason
    from agents.train.trainer import Trainer

    torch.set_num_threads(1)
    config = TrainConfig().with_overrides({"sparse_noise": 0.98, **settings, "eval_episodes": 0}).validate()
    reason = inactive_reason(config)
    if reason is not None:  # nothing to train for
        return {"decision": f"stands aside ({reason})", "decided_at_step": None, "episodes_seen": 0,
                "first_return": None, "step": 0}
    trainer = Trainer(config)

    def stop_once_decided(t: Trainer) -> None:
        if t.sparse_noise.decision != "undecided" or t.global_step >= STEP_CAP:
            t.request_stop("decided")

    trainer.train(stop_once_decided)
    return {**trainer.sparse_noise.state_dict(), "step": trainer.global_step}


def suite_settings(suite: str, seed: int, run_dir: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """(task name, settings or None when its packages are missing) for every task of ``suite``."""
    if suite == "presets":
        return [(env_id, {**preset_for(env_id), "env_id": env_id, "seed": seed, "progress": False,
                          "device": "cpu", "torch_threads": 1, "run_dir": str(run_dir / env_id.split("/")[-1])})
                for env_id in PRESETS]
    tasks = SUITE if suite == "defaults" else TASKS
    return [(env.env_id, settings_for(env, "lstm", seed, run_dir / env.env_id.split("/")[-1], {})
             if available(env) else None) for env in tasks.values()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=("defaults", "presets", "sparse"), default="defaults")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    a = p.parse_args()
    print("| task | seed | decision | decided at step | episodes seen | their return |\n|---|---|---|---|---|---|")
    for seed in a.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            for name, settings in suite_settings(a.suite, seed, Path(tmp)):
                if settings is None:
                    print(f"| {name} | {seed} | skipped (not installed) | | | |", flush=True)
                    continue
                r = decide(settings)
                shared = r["first_return"] if r["decision"] == "on" else "-"
                print(f"| {name} | {seed} | {r['decision']} | {r['decided_at_step'] or r['step'] or ''} | "
                      f"{r['episodes_seen']} | {shared} |", flush=True)


if __name__ == "__main__":
    main()
