"""The memory panel: a live picture of an agent's memory, drawn with pygame (imported lazily).

The last ``history`` readouts of an ``agents.watch.inspector.MemoryProbe`` as heat strips,
one per quantity and layer, with units as rows and time steps as columns (newest
on the right). Gates, in [0, 1], use a sequential colour map (viridis); states, in
[-1, 1], a diverging blue-white-red one. Everything is drawn on off-screen
surfaces, so recording needs no window and no display.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from envs.games.text import TEXT, TextRenderer
from envs.games.window import array_to_surface, import_pygame, surface_to_array

if TYPE_CHECKING:
    from agents.watch.inspector import MemoryProbe, StepReadout

# Colour maps as anchor colours, linearly interpolated.
VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)], dtype=np.float64)
BLUE_WHITE_RED = np.array([  # ColorBrewer RdBu, reversed: blue for negative, red for positive
    (5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240), (247, 247, 247),
    (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)], dtype=np.float64)

BACKGROUND = (22, 24, 31)
EMPTY = (38, 41, 52)
DIM = (150, 156, 170)
ACCENT = (255, 186, 60)


def colormap(values: np.ndarray, anchors: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """values (...) -> uint8 colours (..., 3); NaN becomes the empty-cell colour."""
    v = np.asarray(values, dtype=np.float64)
    x = np.clip((np.nan_to_num(v, nan=lo) - lo) / (hi - lo), 0.0, 1.0) * (len(anchors) - 1)
    idx = np.minimum(x.astype(np.int64), len(anchors) - 2)
    frac = (x - idx)[..., None]
    out = anchors[idx] * (1.0 - frac) + anchors[idx + 1] * frac
    out[np.isnan(v)] = EMPTY
    return np.round(out).astype(np.uint8)


def _nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= x."""
    if not np.isfinite(x) or x <= 1.0:
        return 1.0
    decade = 10.0 ** np.floor(np.log10(x))
    return float(next(m * decade for m in (1.0, 2.0, 5.0, 10.0) if m * decade >= x))


# Each row scale's colour map and fixed range (None: ± a running round number above most values seen).
_SCALE_STYLE: dict[str, tuple[np.ndarray, tuple[float, float] | None]] = {
    "gate": (VIRIDIS, (0.0, 1.0)),
    "signed": (BLUE_WHITE_RED, (-1.0, 1.0)),
    "running": (BLUE_WHITE_RED, None),
}

_M = 14          # outer margin
_LABEL_W = 136   # label column
_GAP = 18        # between layer columns
_ROW_GAP = 9     # between strips
_NOW_W = 190     # current action probabilities, right of the action strip
_VALUE_H = 56
_REWARD_H = 12
_TITLE, _TEXT, _SMALL = 26, 19, 16  # font sizes
_CAPTION_LINES = 5  # lines of text under the game in a composed frame


@dataclass
class _Layout:
    width: int
    height: int
    step_px: int
    strip_w: int
    strip_h: int
    obs_row_px: int
    action_row_px: int
    rows: dict[str, int] = field(default_factory=dict)  # section name -> y


class MemoryPanel:
    """A live picture of the agent's memory: heat strips of the last ``history`` steps per quantity and layer.

    Args:
        probe: what to read (its network shapes fix the layout).
        history: steps shown, newest on the right.
        strip_width: target width of one strip in pixels (each step gets ``strip_width // history``).
        text: text renderer (a default one is made; pass ``TextRenderer(False)`` for the pixel font).
        agent: the name of the agent shown, in the title (a multi-agent env); its absent steps
            (``StepReadout.away``) are empty columns, and while it is absent the panel says so.
    """

    def __init__(self, probe: MemoryProbe, history: int = 48, strip_width: int = 288,
                 text: TextRenderer | None = None, agent: str | None = None):
        if history < 2:
            raise ValueError(f"history must be at least 2 steps, got {history}")
        self.probe = probe
        self.history = history
        self.readouts: deque[StepReadout] = deque(maxlen=history)
        self.text = text or TextRenderer()
        self.c_scale = 1.0
        self.v_lo, self.v_hi = 0.0, 0.0
        self.obs_scale = 1.0
        self.agent = agent
        self.layout = self._make_layout(strip_width)

    # ------------------------------------------------------------------ data
    def push(self, readout: StepReadout) -> None:
        """Add the newest step; running scales only grow, so colours keep their meaning within a video."""
        self.readouts.append(readout)
        if readout.absent:
            return
        running = [row.key for row in self.probe.rows if row.scale == "running"]
        for layer in readout.layers:
            for q in running:
                # A robust scale (95th percentile of |c|) so a few large units saturate instead of washing
                # out the rest, rounded up to 1, 2, 5, 10, ... so that it changes rarely during a video.
                self.c_scale = max(self.c_scale, _nice_ceil(float(np.percentile(np.abs(layer[q]), 95))))
        if readout.obs is not None and readout.obs.size:
            self.obs_scale = max(self.obs_scale, float(np.abs(readout.obs).max()))
        if np.isfinite(readout.value):  # NaN: a central critic, which needs env.state(), gives no value here
            self.v_lo, self.v_hi = min(self.v_lo, readout.value), max(self.v_hi, readout.value)

    def set_reward(self, reward: float) -> None:
        """The reward the newest step's action earned."""
        if self.readouts and not self.readouts[-1].absent:
            self.readouts[-1].reward = float(reward)

    # ------------------------------------------------------------------ layout
    def _make_layout(self, strip_width: int) -> _Layout:
        p = self.probe
        step_px = max(1, strip_width // self.history)
        strip_w = step_px * self.history
        units = p.hidden_size
        strip_h = units * max(1, 96 // units) if units <= 128 else 128
        obs_row_px = max(2, min(12, 48 // max(1, p.obs_size)))
        n_rows = len(p.action_labels)
        action_row_px = 16 if n_rows <= 8 else max(3, 128 // n_rows)
        n_cols = max(1, p.num_layers)
        width = _M + _LABEL_W + max(n_cols * strip_w + (n_cols - 1) * _GAP, strip_w + _GAP + _NOW_W) + _M
        rows: dict[str, int] = {}
        y = _M
        rows["title"] = y
        y += 30
        rows["subtitle"] = y
        y += 24
        if p.num_layers:
            rows["headers"] = y
            y += 20
        if p.obs_size:
            rows["obs"] = y
            y += max(p.obs_size * obs_row_px, 30) + _ROW_GAP
        if not p.num_layers:
            rows["note"] = y
            y += 64
        for q in p.quantities:
            rows[q] = y
            y += max(strip_h, 34) + _ROW_GAP
        y += 6
        rows["value"] = y
        y += _VALUE_H + _ROW_GAP
        rows["reward"] = y
        y += _REWARD_H + _ROW_GAP
        rows["action"] = y
        y += max(n_rows * action_row_px, 34) + 4
        rows["axis"] = y
        y += 18 + _M
        return _Layout(width, y, step_px, strip_w, strip_h, obs_row_px, action_row_px, rows)

    @property
    def absent(self) -> bool:
        """Whether the agent shown was absent at the newest step."""
        return bool(self.readouts) and self.readouts[-1].absent

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the panel in pixels."""
        return self.layout.width, self.layout.height

    def _column_x(self, k: int) -> int:
        return _M + _LABEL_W + k * (self.layout.strip_w + _GAP)

    # ------------------------------------------------------------------ drawing
    def _history_matrix(self, get: Any, rows: int) -> np.ndarray:
        """(rows, history) values, NaN where no step has been seen yet; newest column last."""
        out = np.full((rows, self.history), np.nan)
        offset = self.history - len(self.readouts)
        for j, r in enumerate(self.readouts):
            value = None if r.absent else get(r)
            if value is not None:
                out[:, offset + j] = value
        return out

    def _strip(self, surface: Any, x: int, y: int, data: np.ndarray, anchors: np.ndarray,
               lo: float, hi: float, height: int) -> None:
        pygame = import_pygame()
        image = array_to_surface(colormap(data, anchors, lo, hi))
        lay = self.layout
        surface.blit(pygame.transform.scale(image, (lay.strip_w, height)), (x, y))
        # A dark line where an episode began: the state was reset before that step.
        offset = self.history - len(self.readouts)
        for j, r in enumerate(self.readouts):
            if r.episode_start and offset + j > 0:
                sx = x + (offset + j) * lay.step_px
                pygame.draw.line(surface, (0, 0, 0), (sx, y), (sx, y + height - 1), max(1, lay.step_px // 4))

    def _label(self, surface: Any, y: int, title: str, note: str = "") -> None:
        self.text.draw(surface, title, (_M, y), _TEXT)
        if note:
            self.text.draw(surface, note, (_M, y + 17), _SMALL, DIM)

    def draw(self, surface: Any | None = None) -> Any:
        """Draw the panel (on a new surface unless one of at least ``size`` is given) and return the surface."""
        pygame = import_pygame()
        lay, p = self.layout, self.probe
        if surface is None:
            surface = pygame.Surface((lay.width, lay.height))
        surface.fill(BACKGROUND)
        title = p.title if self.agent is None else f"{p.title}: {self.agent}"
        self.text.draw(surface, title, (_M, lay.rows["title"]), _TITLE)
        if self.absent:
            self.text.draw(surface, f"{self.agent} is absent: its memory is held; it starts from zero at its "
                           "respawn", (_M, lay.rows["subtitle"]), _SMALL, ACCENT)
        else:
            subtitle = f"rows: units, columns: the last {self.history} steps (newest right)"
            if p.separate_critic:
                subtitle += "; actor core shown"
            self.text.draw(surface, subtitle, (_M, lay.rows["subtitle"]), _SMALL, DIM)

        if p.num_layers:
            for k, name in enumerate(p.column_names):
                self.text.draw(surface, name, (self._column_x(k), lay.rows["headers"]), _SMALL, DIM)
        if p.obs_size:
            y = lay.rows["obs"]
            self._label(surface, y, "observation x", f"±{self.obs_scale:.3g}")
            data = self._history_matrix(lambda r: r.obs, p.obs_size)
            self._strip(surface, self._column_x(0), y, data, BLUE_WHITE_RED, -self.obs_scale, self.obs_scale,
                        p.obs_size * lay.obs_row_px)
        if not p.num_layers:
            y = lay.rows["note"]
            self.text.draw(surface, f"This agent has no memory (core = {p.kind}):", (_M, y), _TEXT, ACCENT)
            self.text.draw(surface, "it acts on the current observation alone; only its value and action",
                           (_M, y + 22), _SMALL, DIM)
            self.text.draw(surface, "probabilities are shown.", (_M, y + 38), _SMALL, DIM)
        for row in p.rows:
            q = row.key
            anchors, fixed = _SCALE_STYLE[row.scale]
            lo, hi = fixed if fixed is not None else (-self.c_scale, self.c_scale)
            note = "0 .. 1" if lo == 0.0 else f"±{hi:g}"
            y = lay.rows[q]
            self._label(surface, y, f"{row.name} {q}", note)
            for k in range(p.num_layers):
                data = self._history_matrix(lambda r, k=k, q=q: r.layers[k][q] if r.layers else None, p.hidden_size)
                self._strip(surface, self._column_x(k), y, data, anchors, lo, hi, lay.strip_h)
        self._draw_value(surface)
        self._draw_reward(surface)
        self._draw_actions(surface)
        y = lay.rows["axis"]
        x0 = self._column_x(0)
        self.text.draw(surface, f"-{self.history} steps", (x0, y), _SMALL, DIM)
        self.text.draw(surface, "now", (x0 + lay.strip_w, y), _SMALL, DIM, anchor="topright")
        return surface

    def _step_x(self, j: int) -> float:
        """Centre x of the j-th stored readout's column."""
        offset = self.history - len(self.readouts)
        return self._column_x(0) + (offset + j + 0.5) * self.layout.step_px

    def _draw_value(self, surface: Any) -> None:
        pygame = import_pygame()
        lay = self.layout
        y, x0 = lay.rows["value"], self._column_x(0)
        current = self.readouts[-1].value if self.readouts and not self.absent else None
        if current is not None and not np.isfinite(current):
            note = "none: the critic reads env.state()"
        else:
            note = "" if current is None else f"now {current:+.2f}"
        self._label(surface, y, "value V", note)
        pygame.draw.rect(surface, EMPTY, (x0, y, lay.strip_w, _VALUE_H))
        lo, hi = self.v_lo, self.v_hi
        if hi - lo < 1e-6:
            lo, hi = lo - 1.0, hi + 1.0
        pad = 4

        def to_y(v: float) -> float:
            return y + pad + (hi - v) / (hi - lo) * (_VALUE_H - 2 * pad)

        pygame.draw.line(surface, (90, 95, 110), (x0, to_y(0.0)), (x0 + lay.strip_w - 1, to_y(0.0)))
        digits = 1 if hi - lo >= 2.0 else 2
        self.text.draw(surface, f"{hi:+.{digits}f}", (x0 + lay.strip_w + 6, y), _SMALL, DIM)
        self.text.draw(surface, f"{lo:+.{digits}f}", (x0 + lay.strip_w + 6, y + _VALUE_H), _SMALL, DIM,
                       anchor="bottomleft")
        points: list[tuple[float, float]] = []
        for j, r in enumerate(self.readouts):
            gap = r.absent or not np.isfinite(r.value)
            if (r.episode_start or gap) and len(points) > 1:
                pygame.draw.lines(surface, ACCENT, False, points, 2)
            if r.episode_start or gap:
                points = []
            if not gap:
                points.append((self._step_x(j), to_y(r.value)))
        if len(points) > 1:
            pygame.draw.lines(surface, ACCENT, False, points, 2)
        if points:
            pygame.draw.circle(surface, ACCENT, (round(points[-1][0]), round(points[-1][1])), 3)

    def _draw_reward(self, surface: Any) -> None:
        pygame = import_pygame()
        lay = self.layout
        y, x0 = lay.rows["reward"], self._column_x(0)
        self.text.draw(surface, "reward r", (_M, y - 3), _SMALL, DIM)
        pygame.draw.rect(surface, EMPTY, (x0, y, lay.strip_w, _REWARD_H))
        for j, r in enumerate(self.readouts):
            if r.reward:
                color = (80, 200, 110) if r.reward > 0 else (230, 80, 70)
                radius = 5 if abs(r.reward) >= 1.0 else 2
                pygame.draw.circle(surface, color, (round(self._step_x(j)), y + _REWARD_H // 2), radius)

    def _draw_actions(self, surface: Any) -> None:
        pygame = import_pygame()
        lay, p = self.layout, self.probe
        y, x0 = lay.rows["action"], self._column_x(0)
        labels = p.action_labels
        signed = p.rows_signed  # Gaussian means, scaled to [-1, 1]; else probabilities
        self.text.draw(surface, p.rows_title, (_M, y - 2), _TEXT)
        row = lay.action_row_px
        data = self._history_matrix(lambda r: r.action_values, len(labels))
        anchors, lo = (BLUE_WHITE_RED, -1.0) if signed else (VIRIDIS, 0.0)
        self._strip(surface, x0, y, data, anchors, lo, 1.0, len(labels) * row)
        # A dot marks the action taken at each step.
        radius = max(1, min(lay.step_px, row) // 4)
        for j, r in enumerate(self.readouts):
            for c in r.chosen:
                centre = (round(self._step_x(j)), y + c * row + row // 2)
                pygame.draw.circle(surface, (0, 0, 0), centre, radius + 1)
                pygame.draw.circle(surface, (255, 255, 255), centre, radius)
        # Current values as bars with their labels, right of the strip.
        bx = x0 + lay.strip_w + _GAP
        bar_w = _NOW_W - 60
        current = self.readouts[-1] if self.readouts and not self.absent else None
        show_labels = row >= 12
        for n, label in enumerate(labels):
            ry = y + n * row
            if show_labels:
                self.text.draw(surface, label, (x0 - 6, ry + row // 2), _SMALL, DIM, anchor="midright")
            if current is None or row < 6:
                continue
            v = float(current.action_values[n])
            pygame.draw.rect(surface, EMPTY, (bx, ry + 2, bar_w, row - 4))
            color = tuple(int(cv) for cv in colormap(np.array([v]), anchors, lo, 1.0)[0])
            if signed:
                half = bar_w // 2
                length = round(abs(v) * half)
                start = bx + half if v >= 0 else bx + half - length
                pygame.draw.rect(surface, color, (start, ry + 2, length, row - 4))
            else:
                pygame.draw.rect(surface, color, (bx, ry + 2, round(v * bar_w), row - 4))
            if n in current.chosen:
                pygame.draw.rect(surface, (255, 255, 255), (bx, ry + 2, bar_w, row - 4), 1)
            if show_labels:
                self.text.draw(surface, f"{v:.2f}", (bx + bar_w + 6, ry + row // 2), _SMALL, TEXT, anchor="midleft")

    # ------------------------------------------------------------------ whole frame
    def compose(self, game_frame: np.ndarray, caption: Sequence[str] = ()) -> np.ndarray:
        """One inspector frame: the game (with ``caption`` lines and a colour legend below it) beside the panel.

        Args:
            game_frame: (h, w, 3) uint8, already scaled for display.
            caption: up to five short lines of text shown under the game (episode, step, return...).

        Returns:
            (H, W, 3) uint8, the same size for every call with same-sized game frames.
        """
        pygame = import_pygame()
        gh, gw = game_frame.shape[:2]
        left_w = max(gw, 300) + 2 * _M
        legend_y = _M + gh + 12 + 22 * _CAPTION_LINES + 10  # fixed: frames keep one size whatever the caption
        height = max(self.layout.height, legend_y + 150 + _M)
        canvas = pygame.Surface((left_w + self.layout.width, height))
        canvas.fill(BACKGROUND)
        canvas.blit(array_to_surface(game_frame), (_M + (left_w - 2 * _M - gw) // 2, _M))
        y = _M + gh + 12
        for n, line in enumerate(caption[:_CAPTION_LINES]):
            self.text.draw(canvas, line, (_M, y), _TEXT if n == 0 else _SMALL, TEXT if n == 0 else DIM)
            y += 22
        self._draw_legend(canvas, _M, legend_y)
        pygame.draw.line(canvas, EMPTY, (left_w - 1, 0), (left_w - 1, height), 2)
        self.draw(canvas.subsurface((left_w, 0, self.layout.width, self.layout.height)))
        return surface_to_array(canvas)

    def _draw_legend(self, surface: Any, x: int, y: int) -> None:
        pygame = import_pygame()
        bar_w, bar_h = 160, 12
        ramp = np.linspace(0.0, 1.0, bar_w)[None, :].repeat(bar_h, 0)
        rows = self.probe.rows
        gates = [row.key for row in rows if row.scale == "gate"]
        states = [row.key for row in rows if row.scale != "gate"]
        scaled = [row.key for row in rows if row.scale == "running"]
        entries = [("probabilities", VIRIDIS, ("0", "1"))] if not rows else []
        if gates:
            entries.append((f"gates {', '.join(gates)}", VIRIDIS, ("0", "1")))
        if states:
            entries.append((f"states {', '.join(states)}", BLUE_WHITE_RED, ("-1", "+1")))
        for label, anchors, (lo_text, hi_text) in entries:
            self.text.draw(surface, label, (x, y), _SMALL, DIM)
            surface.blit(array_to_surface(colormap(ramp, anchors, 0.0, 1.0)), (x, y + 18))
            pygame.draw.rect(surface, EMPTY, (x, y + 18, bar_w, bar_h), 1)
            self.text.draw(surface, lo_text, (x, y + 18 + bar_h + 2), _SMALL, DIM)
            self.text.draw(surface, hi_text, (x + bar_w, y + 18 + bar_h + 2), _SMALL, DIM, anchor="topright")
            y += 56
        if scaled:
            self.text.draw(surface, f"{', '.join(scaled)}: ± a round number above most |{scaled[0]}|", (x, y - 4),
                           _SMALL, DIM)
