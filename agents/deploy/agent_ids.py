"""What both game-loop runners (``PolicyRunner``, ``OnnxRunner``) mean by an agent id; numpy only, no torch.

An id is any hashable value: ``3``, ``"player-1"``, or a tuple such as ``(team, slot)``, which is ONE id.
A batch of ids is a list, a ``range`` or a 1-D numpy array; a tuple is never read as a batch, so that
tuples can be ids.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

SINGLE_AGENT_ID = 0
"""The id ``act(obs)`` uses when no ``agent_ids`` are given."""

ID_BATCHES = (list, range, np.ndarray)
"""The types read as several ids (one per observation); anything else is one id."""


class UnknownAgentError(KeyError):
    """An agent id the runner has never seen (or has removed)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclass
class ActInfo:
    """What ``act(..., return_info=True)`` returns next to the action(s).

    Scalars for a single observation, arrays ``(B,)`` for a batch.
    """

    value: float | np.ndarray
    """The critic's estimate V(obs) for the observation just acted on."""
    logprob: float | np.ndarray
    """Log-probability of the returned action under the policy (before Box clipping)."""
    episode_start: bool | np.ndarray
    """True where this was the agent's first step after joining or ``reset()``."""


def is_id_batch(agent_ids: object) -> bool:
    """True when ``agent_ids`` names several agents (a list, range or array), False for one id or None."""
    return isinstance(agent_ids, ID_BATCHES)


def as_id_list(agent_ids: Hashable | Iterable[Hashable]) -> list[Hashable]:
    """``agent_ids`` as a list of ids: a batch's items, or ``[agent_ids]`` for one id (a tuple included)."""
    if isinstance(agent_ids, np.ndarray):
        return agent_ids.tolist()
    if isinstance(agent_ids, (list, range)):
        return list(agent_ids)
    return [agent_ids]


def check_hashable(agent_id: object) -> None:
    """Raise TypeError naming an id that cannot be a dict key."""
    try:
        hash(agent_id)
    except TypeError as exc:
        raise TypeError(f"agent ids must be hashable (int, str, a tuple such as (team, slot), ...); "
                        f"got {agent_id!r}.") from exc


def check_distinct(ids: list[Hashable]) -> None:
    """Raise ValueError naming the ids repeated in one call."""
    if len(set(ids)) != len(ids):
        dupes = sorted({repr(i) for i in ids if ids.count(i) > 1})
        raise ValueError(f"agent_ids must be distinct in one call; repeated: {', '.join(dupes)}.")
