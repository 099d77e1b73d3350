"""Tuned training settings for the built-in envs; ``train.py`` flags override them.

Keys are flat setting names from ``agents.config`` (e.g. ``bptt_len``).
Each preset notes what it was tuned for; the measured results (steps and wall
time to each env's success threshold, LSTM against the memoryless core on the
same budget) are in ``docs/results.md``, produced by
``benchmarks/memory_suite.py``, which also holds the thresholds.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Default task of `python train.py`: solved in about a minute on 2 CPU cores.
    "mnemo/TMaze-v0": {
        "total_steps": 60_000, "num_envs": 16, "num_steps": 32, "bptt_len": 16, "num_minibatches": 4,
        "update_epochs": 4, "learning_rate": 1e-3, "ent_coef": 0.02, "gamma": 0.99, "hidden_size": 64,
    },
    # rl-baselines3-zoo ppo_lstm hyperparameters for CartPoleNoVel (the benchmark's settings). SB3's value
    # loss is vf_coef * mse, this project's vf_coef * 0.5 * mse (CleanRL's), so the zoo's 0.5 becomes 1.0;
    # benchmarks/sb3_equivalence.py shows the two updates then agree to float rounding.
    "mnemo/CartPoleNoVel-v1": {
        "total_steps": 100_000, "num_envs": 8, "num_steps": 32, "bptt_len": 32, "num_minibatches": 1,
        "update_epochs": 20, "learning_rate": 1e-3, "anneal_lr": True, "anneal_clip": True, "gamma": 0.98,
        "gae_lambda": 0.8, "ent_coef": 0.0, "vf_coef": 1.0, "hidden_size": 64, "separate_critic": True,
        "encoder_sizes": (), "head_sizes": (64,), "activation": "relu", "ortho_init": False,
    },
    # The answer tasks reward every answer at once and the answers never change what is observed next,
    # so a low gamma keeps other steps' luck out of the advantages. Large batches (32 envs) with 8
    # epochs and a high learning rate: solved in ~30k steps (under a minute on 2 cores).
    "mnemo/GatedMemory-v0": {
        "total_steps": 100_000, "num_envs": 32, "num_steps": 24, "bptt_len": 12, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 2e-3, "gamma": 0.5, "ent_coef": 0.003, "hidden_size": 128,
    },
    "mnemo/CountRecall-v0": {
        "total_steps": 100_000, "num_envs": 32, "num_steps": 20, "bptt_len": 10, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 2e-3, "gamma": 0.5, "ent_coef": 0.003, "hidden_size": 128,
    },
}


def preset_for(env_id: str) -> dict[str, Any]:
    """The tuned settings for ``env_id`` (empty for envs without a preset)."""
    return dict(PRESETS.get(env_id, {}))
