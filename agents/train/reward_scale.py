"""Reward scaling by a running standard deviation of the discounted return.

The same transformation as Stable-Baselines3's ``VecNormalize(norm_reward=True)``
(which rl-baselines3-zoo's ``normalize: True`` turns on): every env keeps a
discounted sum of its raw rewards, ``R <- gamma * R + r``, reset to 0 after
an episode ends; a running variance of those sums is kept over all envs and
steps; rewards are divided by its square root and clipped. The mean is not
subtracted, so the sign of every reward is kept.

The scale is applied to a whole rollout at update time, after the rollout's
own discounted sums joined the statistics, so the collecting policy never
sees it and episode returns in the logs stay in the env's units. The
critic then learns returns in scaled units; truncation bootstraps are its
own outputs, so they are in the same units.
"""

from __future__ import annotations

import torch

from agents.model.encoders import RunningMeanStd


class RewardScaler:
    """Divides rewards by the running std of each env's discounted return.

    Args:
        num_envs: N, the vector env's width (one running discounted sum each).
        gamma: the discount of those sums (the trainer's ``--gamma``, as in VecNormalize).
        clip: scaled rewards are clipped to ``[-clip, clip]``.
        eps: added to the variance before the square root.
        window: None keeps the statistics of every return so far; a number W caps the sample count the
            statistics hold at W before each update, so they forget: a rollout of n sums weighs n / (W + n), an
            exponential window of about W samples (a reward whose scale keeps shrinking is then measured against
            its recent scale, not its first).
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8,
                 device: torch.device | str = "cpu", window: int | None = None):
        self.gamma, self.clip, self.eps, self.window = gamma, clip, eps, window
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.return_rms = RunningMeanStd(1).to(device)

    @torch.no_grad()
    def scale_rollout(self, rewards: torch.Tensor, dones: torch.Tensor, alive: torch.Tensor | None = None,
                      acting: torch.Tensor | None = None) -> torch.Tensor:
        """Advance the discounted sums over a rollout, update the statistics, return the scaled rewards.

        Args:
            rewards: (T, N) raw rewards of one rollout.
            dones: (T, N) 1.0 where the episode ended at that step (terminated or truncated).
            alive: (T, N) 1.0 where a multi-agent row's agent acted, or None (all): the sums of absent steps
                (0: an absent row follows an ended episode and gets reward 0) stay out of the statistics.
            acting: (T, N) 1.0 at a turn-based row's own turns (``Rollout.acting``), or None (every step): the
                sums advance only there, one discount per own turn (a waiting step carries reward 0).

        Returns:
            (T, N) float32 rewards divided by sqrt(var + eps) and clipped.
        """
        sums = torch.empty(rewards.shape, dtype=torch.float64, device=rewards.device)
        running = self.returns
        keep = 1.0 - dones.double()
        if acting is None:
            for t in range(rewards.shape[0]):
                running = running * self.gamma + rewards[t].double()
                sums[t] = running
                running = running * keep[t]  # the next episode's sum starts at 0
        else:
            turn = acting > 0
            for t in range(rewards.shape[0]):
                running = torch.where(turn[t], running * self.gamma + rewards[t].double(), running)
                sums[t] = running
                running = running * keep[t]
        self.returns = running
        seen = sums.reshape(-1, 1) if alive is None else sums[alive > 0].reshape(-1, 1)
        if seen.numel() > 0:
            if self.window is not None:
                self.return_rms.count.clamp_(max=self.window)
            self.return_rms.update(seen)
        std = torch.sqrt(self.return_rms.var + self.eps)
        return (rewards / std).clamp(-self.clip, self.clip).float()

    @property
    def std(self) -> float:
        """The current divisor, sqrt(var + eps)."""
        return float(torch.sqrt(self.return_rms.var + self.eps))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"returns": self.returns.clone(), **{k: v.clone() for k, v in self.return_rms.state_dict().items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the sums and statistics; ValueError when the saved sums are for another number of envs."""
        if state["returns"].shape != self.returns.shape:
            raise ValueError(f"The saved reward scaler has {state['returns'].shape[0]} envs' discounted returns, "
                             f"this run has {self.returns.shape[0]}.")
        self.returns = state["returns"].to(self.returns)
        self.return_rms.load_state_dict({k: v for k, v in state.items() if k != "returns"})
