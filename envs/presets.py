"""Tuned training settings for the built-in envs; ``train.py`` flags override them.

Keys are flat setting names from ``agents.config`` (e.g. ``bptt_len``).
Each preset gives its reason in one line; how it was found (the tuning runs)
and what it reaches (steps and wall time to each env's success threshold, LSTM
against the memoryless core on the same budget) are in ``docs/results.md`` and ``docs/benchmarks.md``,
produced by ``benchmarks/memory_suite.py``, which also holds the thresholds.
An env without a preset gets the defaults (``docs/defaults.md``).
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The default task of `python train.py`: short rollouts and lr 1e-3 solve it in about 10 s.
    "mnemo/TMaze-v0": {
        "total_steps": 100_000, "num_envs": 16, "num_steps": 32, "bptt_len": 16, "num_minibatches": 4,
        "update_epochs": 4, "learning_rate": 1e-3, "ent_coef": 0.02, "gamma": 0.99, "hidden_size": 64,
    },
    # Answers are rewarded at once and never change what comes next: gamma 0.5, big batches, 8 epochs.
    "mnemo/GatedMemory-v0": {
        "total_steps": 100_000, "num_envs": 32, "num_steps": 24, "bptt_len": 12, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 2e-3, "gamma": 0.5, "ent_coef": 0.003, "hidden_size": 128,
    },
    # The other answer task: GatedMemory's reasoning and settings.
    "mnemo/CountRecall-v0": {
        "total_steps": 100_000, "num_envs": 32, "num_steps": 20, "bptt_len": 10, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 2e-3, "gamma": 0.5, "ent_coef": 0.003, "hidden_size": 128,
    },
    # The pixel catch game: DarkCatch's tuned settings (before the vector game became budget-only) on a longer budget,
    # since the CNN learns to see first: rollouts of one episode (100 steps) cut into one sequence per falling ball.
    "mnemo/DarkCatchPixels-v0": {
        "total_steps": 500_000, "num_envs": 32, "num_steps": 100, "bptt_len": 20, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 1e-3, "gamma": 0.95, "hidden_size": 128,
    },
    # Pixels: a high entropy bonus (0.03) gets out of the fixed-corner local optimum.
    "mnemo/FogMazePixels-v0": {
        "total_steps": 1_600_000, "num_envs": 32, "num_steps": 64, "bptt_len": 16, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 5e-4, "gamma": 0.99, "ent_coef": 0.03, "hidden_size": 128,
    },
    # Long matches: long rollouts and 32-frame sequences.
    "mnemo/FlickerPong-v0": {
        "total_steps": 500_000, "num_envs": 16, "num_steps": 128, "bptt_len": 32, "num_minibatches": 4,
        "update_epochs": 4, "learning_rate": 5e-4, "gamma": 0.99, "ent_coef": 0.005, "hidden_size": 128,
    },
    # Speed: 64 units, forget bias 5 and 128-step sequences hold the 100-step cue in about half the defaults' time.
    "mnemo/TMazeLong-v0": {
        "total_steps": 600_000, "num_envs": 8, "num_steps": 512, "bptt_len": 128, "num_minibatches": 4,
        "update_epochs": 4, "learning_rate": 1e-3, "gamma": 0.99, "ent_coef": 0.02, "hidden_size": 64,
        "forget_bias": 5.0,
    },
    # Larger batches than the zoo's CartPole settings, a separate critic and both normalisations.
    "mnemo/CartPoleFlicker-v1": {
        "total_steps": 500_000, "num_envs": 16, "num_steps": 128, "bptt_len": 32, "num_minibatches": 4,
        "update_epochs": 8, "learning_rate": 5e-4, "anneal_lr": True, "anneal_clip": True, "gamma": 0.99,
        "gae_lambda": 0.95, "ent_coef": 0.0, "hidden_size": 128, "separate_critic": True, "encoder_sizes": (),
        "head_sizes": (64,), "activation": "relu", "normalize_obs": True, "normalize_reward": True,
    },
    # After rl-baselines3-zoo's ppo_lstm PendulumNoVel-v1, with a separate critic and normalisations.
    "mnemo/PendulumNoVel-v1": {
        "total_steps": 250_000, "num_envs": 4, "num_steps": 1024, "bptt_len": 32, "num_minibatches": 32,
        "update_epochs": 10, "learning_rate": 1e-3, "gamma": 0.9, "gae_lambda": 0.95, "ent_coef": 0.0,
        "hidden_size": 64, "separate_critic": True, "encoder_sizes": (), "head_sizes": (64,), "activation": "relu",
        "normalize_obs": True, "normalize_reward": True,
    },
    # Correlated sampling noise finds the flag; a separate critic and reward scaling then learn it.
    "mnemo/MountainCarNoVel-v0": {
        "total_steps": 400_000, "num_envs": 16, "num_steps": 32, "bptt_len": 16, "num_minibatches": 4,
        "update_epochs": 4, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.98, "ent_coef": 0.01,
        "noise_correlation": 0.98, "hidden_size": 64, "separate_critic": True, "normalize_obs": True,
        "normalize_reward": True,
    },
}
# Defaults that changed after these presets were tuned (docs/defaults.md): each preset keeps the value it was tuned
# and measured with.
_TUNED_WITH = {"normalize_reward": False, "forget_bias": 0.0, "chrono_init": None}
PRESETS = {env_id: {**_TUNED_WITH, **preset} for env_id, preset in PRESETS.items()}

# The pixel ids use tuned settings with longer budgets (the CNN learns to see first): FogMazePixels and
# DarkCatchPixels keep the settings their vector games were tuned with before those became budget-only (above),
# FlickerPongPixels takes FlickerPong's and halves the learning rate.
PRESETS["mnemo/FlickerPongPixels-v0"] = {
    **PRESETS["mnemo/FlickerPong-v0"], "total_steps": 1_000_000, "learning_rate": 2.5e-4}

# Envs whose preset is only a training budget: the defaults (docs/defaults.md) reach the threshold on every seed
# measured within it (docs/archive/results-log.md#defaults-benchmark), so nothing else needs tuning.
BUDGET_ONLY = {
    "mnemo/AcrobotNoVel-v1": 150_000,
    "mnemo/FogMaze-v0": 400_000,
    "mnemo/CartPoleNoVel-v1": 200_000,
    "mnemo/DarkCatch-v0": 300_000,
}
PRESETS.update({env_id: {"total_steps": steps} for env_id, steps in BUDGET_ONLY.items()})


# rl-baselines3-zoo's ppo_lstm CartPoleNoVel-v1 settings: the speed benchmark's (benchmarks/cartpole_novel.py); SB3's
# vf_coef 0.5 is 1.0 here (CleanRL's 0.5 * mse).
ZOO_CARTPOLE_NOVEL: dict[str, Any] = {
    "total_steps": 100_000, "num_envs": 8, "num_steps": 32, "bptt_len": 32, "num_minibatches": 1,
    "update_epochs": 20, "learning_rate": 1e-3, "anneal_lr": True, "anneal_clip": True, "gamma": 0.98,
    "gae_lambda": 0.8, "ent_coef": 0.0, "vf_coef": 1.0, "hidden_size": 64, "separate_critic": True,
    "encoder_sizes": (), "head_sizes": (64,), "activation": "relu", "ortho_init": False,
    "normalize_obs": True, "normalize_reward": True, "forget_bias": 0.0, "chrono_init": None,
}


def preset_for(env_id: str) -> dict[str, Any]:
    """The tuned settings for ``env_id`` (empty for envs without a preset)."""
    return dict(PRESETS.get(env_id, {}))
