"""Correlated sampling noise switched on for games that have not paid anything yet (``--sparse-noise``, opt-in).

Correlated noise (``agents.model.noise``, ``--noise-correlation``) makes runs of one action longer, which finds
rewards that only a long, specific run of actions reaches: the climb of MountainCar, the corridor of a T-maze
whose time limit leaves a random walk no time to reach the turn. On a game that pays from the start it costs
steps instead (docs/results.md: about twice the steps on DarkCatch). The rule, asked for with ``--sparse-noise
0.98``, decides from the run's first episodes, with nothing named about the env:

- Once ``--sparse-noise-episodes`` (K) episodes have finished, if every one of them returned exactly the same
  total (nothing in the game has paid or cost anything the policy's actions changed), the noise of correlation
  ``--sparse-noise`` is switched on for the rest of the run. It stays on, as in the runs that measured it
  (docs/results.md); as the policy sharpens, the noise decides fewer of its actions (``agents.model.noise``).
- If two of those episodes return different totals, the run never uses it: it trains exactly as without the
  rule (no random number is drawn differently).

The decision is made between rollouts, from the returns of whole rollouts (all the episodes that finished in
the rollout in which the count reached K), so it does not depend on how a rollout is split among workers. It
is saved with the checkpoints' counters and restored on resume. The rule stands aside when the run chose its
own exploration: ``--noise-correlation`` > 0 (a preset may set it) or ``--exploration``.

It is not a default: measured as a candidate (docs/results.md, "The --sparse-noise rule"), it solved
MountainCarNoVel without a preset on every seed, but lost MiniGrid MultiRoom seeds that the defaults solve and
slowed one AcrobotNoVel seed; for a single game that pays late, noise from the first step did better.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.config import TrainConfig

UNDECIDED, ON, OFF = "undecided", "on", "off"


class SparseRewardNoise:
    """The ``--sparse-noise`` rule's state: whether the first episodes have all returned the same.

    Args:
        config: the run's config; ``ppo.sparse_noise`` is the correlation switched on, ``ppo.sparse_noise_episodes``
            the episodes the rule waits for.

    ``decision`` is ``"undecided"`` until the rule has seen enough episodes, then ``"on"`` or ``"off"``
    for good; ``active`` is False where the rule stands aside (``reason`` says why).
    """

    def __init__(self, config: TrainConfig):
        ppo = config.ppo
        self.correlation, self.episodes_needed = ppo.sparse_noise, ppo.sparse_noise_episodes
        self.reason = inactive_reason(config)
        self.decision = UNDECIDED if self.reason is None else OFF
        self.episodes_seen = 0
        self.first_return: float | None = None
        self.decided_at_step: int | None = None

    def stand_aside(self, reason: str) -> None:
        """Take no part in this run (``reason`` says why), before it has collected anything."""
        self.decision, self.reason = OFF, reason

    def observe(self, episode_returns: Sequence[float], global_step: int) -> bool:
        """Take one rollout's finished episodes' returns; True when this rollout switches the noise on.

        Args:
            episode_returns: the returns of the episodes that finished in the rollout (every agent's, in a
                multi-agent run).
            global_step: the run's step count after the rollout, recorded as the step of the decision.
        """
        if self.decision != UNDECIDED or not episode_returns:
            return False
        if self.first_return is None:
            self.first_return = float(episode_returns[0])
        self.episodes_seen += len(episode_returns)
        if any(float(ret) != self.first_return for ret in episode_returns):
            self.decision, self.decided_at_step = OFF, global_step
            return False
        if self.episodes_seen >= self.episodes_needed:
            self.decision, self.decided_at_step = ON, global_step
            return True
        return False

    @property
    def active(self) -> bool:
        """Whether the rule takes part in this run (``reason`` None)."""
        return self.reason is None

    @property
    def on(self) -> bool:
        return self.decision == ON

    def summary(self) -> dict:
        """What summary.json says of the rule: ``{"value": "undecided" | "on" | "off", "why": ...}``."""
        if not self.active:
            return {"value": OFF, "why": self.reason}
        if self.decision == UNDECIDED:
            why = f"fewer than {self.episodes_needed} episodes have finished, all returning {self.first_return}"
        elif self.decision == ON:
            why = (f"the first {self.episodes_seen} episodes all returned {self.first_return}: noise of correlation "
                   f"{self.correlation} from step {self.decided_at_step} on")
        else:
            why = f"the first episodes' returns differ (seen by step {self.decided_at_step})"
        return {"value": self.decision, "why": why}

    # ---------------------------------------------------------------- checkpointing (JSON: the counters)
    def state_dict(self) -> dict:
        return {"decision": self.decision, "episodes_seen": self.episodes_seen, "first_return": self.first_return,
                "decided_at_step": self.decided_at_step}

    def load_state_dict(self, state: dict | None, global_step: int) -> None:
        """Restore the rule; ``state`` None is a checkpoint written before the rule existed: a run that has
        trained (``global_step`` > 0) trained without it, and goes on without it."""
        if not self.active:
            return
        if state is None:
            if global_step > 0:
                self.stand_aside("the run was saved before the --sparse-noise rule existed")
            return
        if state["decision"] not in (UNDECIDED, ON, OFF):
            raise ValueError(f"unknown --sparse-noise decision {state['decision']!r}")
        self.decision, self.episodes_seen = state["decision"], int(state["episodes_seen"])
        self.first_return, self.decided_at_step = state["first_return"], state["decided_at_step"]


def inactive_reason(config: TrainConfig) -> str | None:
    """Why the rule stands aside in this run, or None where it applies."""
    ppo = config.ppo
    if ppo.sparse_noise == 0:
        return "--sparse-noise 0 (off, the default)"
    if ppo.noise_correlation > 0:
        return f"--noise-correlation {ppo.noise_correlation} is on from the start"
    if config.policy.exploration != "none":
        return f"--exploration {config.policy.exploration} explores instead"
    return None
