"""The learning-rate and clip-coefficient schedule: linear decay to zero, continued across resumes."""

from __future__ import annotations

from agents.config import TrainConfig


def schedule_fraction(iteration: int, start_iteration: int, start_frac: float, num_iterations: int) -> float:
    """The lr / clip multiplier of 1-based ``iteration``: linear from ``start_frac`` at iteration
    ``start_iteration + 1`` down to 0 after ``num_iterations`` (a fresh run: 1.0 from iteration 1)."""
    return start_frac * (1.0 - (iteration - 1 - start_iteration) / (num_iterations - start_iteration))


def continue_schedule(saved: dict | None, saved_config: TrainConfig, config: TrainConfig,
                      iteration: int) -> tuple[tuple[int, float], str | None]:
    """Continue a checkpoint's lr / clip schedule; a changed --total-steps keeps it continuous.

    With a new budget, an interrupted run's schedule decays from the fraction the next iteration would have
    had to zero over the iterations that remain, instead of restarting over the new length, which would make
    the rate jump. A finished run (its budget reached) has annealed to about zero, so continuing from there
    would not train: it goes on from the fraction a run of the new budget has at this iteration (a jump up,
    as SB3's ``learn(reset_num_timesteps=False)`` makes) down to zero at the new end.

    Args:
        saved: the checkpoint's ``counters["schedule"]`` (None before it was saved: the run's whole length).
        iteration: the iterations the checkpoint has run.

    Returns:
        The schedule's anchor ``(start iteration, start fraction)``, and a note when the budget changed.
    """
    if saved is None:  # a checkpoint from before the schedule was saved: it ran from the start of the run
        saved = {"start_iteration": 0, "start_frac": 1.0, "iterations": saved_config.num_iterations}
    start, start_frac, saved_iterations = saved["start_iteration"], saved["start_frac"], saved["iterations"]
    new_iterations = config.num_iterations
    if new_iterations == saved_iterations or new_iterations <= iteration:
        return (start, start_frac), None
    finished = iteration >= saved_iterations
    if finished:
        frac = schedule_fraction(iteration + 1, 0, 1.0, new_iterations)
    else:
        frac = schedule_fraction(iteration + 1, start, start_frac, saved_iterations)
    ppo = config.ppo
    annealed = [f"the learning rate ({ppo.learning_rate * frac:.3g})" if ppo.anneal_lr else "",
                f"the clip coefficient ({ppo.clip_coef * frac:.3g})" if ppo.anneal_clip else ""]
    annealed = [a for a in annealed if a]
    note = None
    if annealed:
        verb, their = ("decays", "its") if len(annealed) == 1 else ("decay", "their")
        if finished:
            note = (f"The step budget changed ({saved_config.ppo.total_steps} -> {ppo.total_steps}) after the run "
                    f"finished: {' and '.join(annealed)} {verb} linearly from what a {ppo.total_steps}-step run "
                    f"has at this step to 0 over the remaining {new_iterations - iteration} iterations.")
        else:
            note = (f"The step budget changed ({saved_config.ppo.total_steps} -> {ppo.total_steps}): "
                    f"{' and '.join(annealed)} {verb} linearly from {their} current value to 0 over the "
                    f"remaining {new_iterations - iteration} iterations (no jump back up).")
    return (iteration, frac), note
