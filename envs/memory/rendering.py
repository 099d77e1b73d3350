"""How the memory tasks render: the colours of their small rgb_array drawings and the render-mode check."""

from __future__ import annotations

from typing import Any

# Colours of the tiny rgb_array drawings (RGB, uint8).
BLACK = (0, 0, 0)
FLOOR = (200, 200, 200)
AGENT = (220, 40, 40)
GOOD = (40, 180, 60)
BAD = (120, 30, 30)
CUE_UP = (60, 90, 230)
CUE_DOWN = (240, 180, 30)


def check_render_mode(render_mode: str | None, metadata: dict[str, Any]) -> None:
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(f"render_mode must be None or one of {metadata['render_modes']}, got {render_mode!r}")
