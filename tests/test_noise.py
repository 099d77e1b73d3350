"""Correlated sampling noise (``--noise-correlation``): each action keeps the policy's law, runs grow longer.

The noise is an AR(1) process per env (agents/model/noise.py); the distributions turn standard-normal noise into
actions by inverse transform. What must hold: every draw is N(0, 1) and correlated rho with the one before,
each distribution's samples from such noise have the distribution's own law (so stored log-probs stay
exact), consecutive actions of a near-uniform policy agree far more often, and a resumed run continues the
same noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import toy_envs  # noqa: F401  (registers tests/Boundary-v0)

from agents.config import PolicyConfig
from agents.model.action_heads import Bernoulli, Categorical, DiagGaussian
from agents.model.noise import CorrelatedNoise
from agents.model.policy import RecurrentActorCritic
from agents.rollout.collector import VectorCollector, make_vector_env


def draws(rho: float, steps: int = 4000, shape=(32, 3), seed: int = 0) -> torch.Tensor:
    noise, gen = CorrelatedNoise(rho), torch.Generator().manual_seed(seed)
    return torch.stack([noise.draw(shape, gen).clone() for _ in range(steps)])


@pytest.mark.parametrize("rho", [0.0, 0.9, 0.98])
def test_every_draw_is_standard_normal_and_correlated_rho_with_the_one_before(rho):
    z = draws(rho)
    # Stationary from the first draw: the first step is N(0, 1) across 32 x 3 x many seeds too.
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.03
    first = torch.stack([draws(rho, steps=1, seed=s)[0] for s in range(50)])
    assert abs(first.std() - 1) < 0.1
    lag1 = (z[1:] * z[:-1]).mean() / z.var()
    assert abs(lag1 - rho) < 0.02


def test_rho_outside_zero_one_is_refused():
    for rho in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="rho must be in"):
            CorrelatedNoise(rho)


def test_each_distribution_turns_standard_normal_noise_into_its_own_law():
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    probs = torch.tensor([0.2, 0.5, 0.3])
    cat = Categorical(probs.log().expand(n, 3))
    counts = torch.bincount(cat.sample(normal=torch.randn(cat.noise_shape, generator=gen)), minlength=3)
    assert torch.allclose(counts / n, probs, atol=0.006)

    p = torch.tensor([0.1, 0.7])
    bern = Bernoulli(torch.logit(p).expand(n, 2))
    assert torch.allclose(bern.sample(normal=torch.randn(bern.noise_shape, generator=gen)).mean(0), p, atol=0.006)

    gauss = DiagGaussian(torch.tensor([[0.5, -1.0]]), torch.tensor([0.0, np.log(2.0)]))
    z = torch.tensor([[1.5, -0.25]])
    assert torch.equal(gauss.sample(normal=z), torch.tensor([[2.0, -1.5]]))


def rollout_actions(noise_correlation: float, steps: int = 200) -> np.ndarray:
    """Actions (T, 8) of a freshly initialised (near-uniform) policy over 3 actions."""
    envs = make_vector_env("tests/Boundary-v0", 8, {"max_len": 50})
    torch.manual_seed(0)
    policy = RecurrentActorCritic(envs.single_observation_space, envs.single_action_space,
                                  PolicyConfig(hidden_size=16))
    collector = VectorCollector(envs, steps, noise_correlation=noise_correlation)
    collector.start(policy, torch.device("cpu"), 0, 0)
    buf = collector.collect()
    collector.close()
    return buf.actions.numpy()


def test_correlated_noise_makes_a_uniform_policy_hold_its_action():
    independent, correlated = rollout_actions(0.0), rollout_actions(0.98)
    assert np.isin(independent, [0, 1, 2]).all() and np.isin(correlated, [0, 1, 2]).all()
    switch_independent = (independent[1:] != independent[:-1]).mean()
    switch_correlated = (correlated[1:] != correlated[:-1]).mean()
    assert abs(switch_independent - 2 / 3) < 0.05  # uniform over 3 actions: 2 in 3 steps change action
    assert switch_correlated < 0.15  # about 1 in 11 (see agents/model/noise.py)


def goals_in_first_steps(tmp_path, noise_correlation: float, steps: int = 12288, seed: int = 3) -> int:
    """Episodes of MountainCarNoVel (its preset) that reach the flag (return above -200) in ``steps`` steps."""
    from agents.config import TrainConfig
    from agents.train.trainer import Trainer
    from envs.presets import preset_for

    config = TrainConfig().with_overrides({
        **preset_for("mnemo/MountainCarNoVel-v0"), "env_id": "mnemo/MountainCarNoVel-v0",
        "noise_correlation": noise_correlation, "total_steps": steps,
        "seed": seed, "eval_episodes": 0, "progress": False, "run_dir": str(tmp_path / f"rho{noise_correlation}"),
    }).validate()
    trainer, seen = Trainer(config), {}

    def record(t: Trainer) -> None:  # at most one episode per env ends per 32-step iteration: fewer than 20
        for i, r in enumerate(t.recent_returns):
            seen[(t.episodes - len(t.recent_returns) + i)] = r

    trainer.train(record)
    assert len(seen) == trainer.episodes > 0
    return sum(r > -200 for r in seen.values())


@pytest.mark.slow
def test_the_presets_correlated_noise_reaches_mountaincars_flag_where_independent_draws_do_not(tmp_path):
    # MountainCarNoVel's preset relies on the noise to see any reward at all (docs/results.md): its first
    # 12k steps, seed 3.
    assert goals_in_first_steps(tmp_path, 0.98) >= 5  # 10 episodes (seeds 1 and 2: 3 and 9)
    assert goals_in_first_steps(tmp_path, 0.0) == 0
