"""Elo ratings: self-play's learning policy against its frozen past selves, and ``mnemo match``'s rating
difference (torch-free).

The Elo model (Elo 1978, as in Unity ML-Agents' ghost trainer): a player rated ``a`` scores against one rated
``b`` an expected

    E = 1 / (1 + 10 ** ((b - a) / 400))

(0.5 between equals; 400 points apart, the stronger one expects 10/11). After a game with score ``s`` (1 win,
0.5 draw, 0 loss) the first moves by ``k * (s - E)`` and the second by the opposite, so the sum of the two
ratings stays the same.
"""

from __future__ import annotations

import math

INITIAL_RATING = 1200.0  # ML-Agents' initial_elo
K_FACTOR = 16.0  # ML-Agents' K: a game moves a rating by at most 16 points

WIN, DRAW, LOSS = 1.0, 0.5, 0.0


def expected_score(rating: float, opponent: float) -> float:
    """The score a player rated ``rating`` expects against ``opponent`` (0..1)."""
    return 1.0 / (1.0 + 10.0 ** ((opponent - rating) / 400.0))


def game_score(own_return: float, other_return: float) -> float:
    """WIN, DRAW or LOSS, by comparing the two sides' summed rewards over the game."""
    if own_return > other_return:
        return WIN
    return DRAW if own_return == other_return else LOSS


def update(rating: float, opponent: float, score: float, k: float = K_FACTOR) -> tuple[float, float]:
    """Both ratings after one game in which the player rated ``rating`` scored ``score`` against ``opponent``.

    Returns:
        (the player's new rating, the opponent's new rating); their sum is the sum before.
    """
    change = k * (score - expected_score(rating, opponent))
    return rating + change, opponent - change


def elo_from_score(score: float) -> float:
    """The rating difference at which ``expected_score`` is ``score`` (its inverse): ``400 log10(s / (1 - s))``;
    -inf at 0 and +inf at 1 (``mnemo match`` reports a match's score this way)."""
    if score <= 0.0:
        return -math.inf
    if score >= 1.0:
        return math.inf
    return 400.0 * math.log10(score / (1.0 - score))
