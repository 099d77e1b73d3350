"""Checks of env constructor arguments that every game shares."""

from __future__ import annotations


def check_min_ints(*checks: tuple[str, object, int]) -> None:
    """Raise ``ValueError`` naming the first ``(name, value, low)`` whose value is not an int >= ``low``
    (a bool is not taken for an int)."""
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
