"""The versus app's frame: a score bar over FlickerPong's own court drawing, optionally a banner."""

from __future__ import annotations

import numpy as np

from envs.games import flicker_pong
from envs.games.flicker_pong import PongParams, PongState
from envs.games.text import TextRenderer
from envs.games.window import import_pygame, surface_to_array

HUD_H = 72
COURT = 480
HUMAN_COLOR = (230, 140, 70)  # the left paddle's colour in FlickerPong's drawing
AGENT_COLOR = (92, 200, 92)
TEXT = (225, 228, 240)
DIM = (140, 146, 175)


class VersusScreen:
    """Draws one frame: a score bar over the court (FlickerPong's own ``draw``), optionally a banner."""

    def __init__(self, params: PongParams, court: int = COURT, text: TextRenderer | None = None):
        pygame = import_pygame()
        self.params = params
        self.surface = pygame.Surface((court, court + HUD_H))
        self.court = self.surface.subsurface((0, HUD_H, court, court))
        self.text = text or TextRenderer()

    def draw(self, state: PongState, reveal: bool, match: str, hint: str,
             banner: tuple[str, str] | None = None) -> np.ndarray:
        """The frame as ``(H, W, 3)`` uint8.

        Args:
            state: the match (``state.visible`` is whether the frame reaches the viewer when ``reveal`` is False).
            reveal: draw the whole court even on frames blank to the agent (hollow ball, "agent blind").
            match: e.g. ``"match 1 of 3"``.
            hint: the small line under it (keys, or who plays the left paddle).
            banner: two lines shown over the court (get ready, result), or None.
        """
        pygame = import_pygame()
        w = self.surface.get_width()
        flicker_pong.draw(self.court, state, self.params, reveal=reveal)
        hud = self.surface.subsurface((0, 0, w, HUD_H))
        hud.fill((18, 20, 32))
        pygame.draw.line(hud, (70, 76, 110), (0, HUD_H - 1), (w, HUD_H - 1), 2)
        t = self.text
        t.draw(hud, "YOU", (14, 8), 22, HUMAN_COLOR)
        t.draw(hud, str(state.opponent_score), (14, 26), 46, HUMAN_COLOR)
        t.draw(hud, "AGENT", (w - 14, 8), 22, AGENT_COLOR, anchor="topright")
        t.draw(hud, str(state.agent_score), (w - 14, 26), 46, AGENT_COLOR, anchor="topright")
        t.draw(hud, match, (w // 2, 14), 24, TEXT, anchor="midtop")
        t.draw(hud, hint, (w // 2, 42), 18, DIM, anchor="midtop")
        if banner is not None:  # low on the court: the serve and the paddles stay in view
            box = pygame.Surface((w, 96), pygame.SRCALPHA)
            box.fill((0, 0, 0, 190))
            top = round(self.court.get_height() * 0.74)
            self.court.blit(box, (0, top))
            mid = top + 48
            t.draw(self.court, banner[0], (w // 2, mid - 8), 40, TEXT, anchor="midbottom")
            t.draw(self.court, banner[1], (w // 2, mid + 8), 24, DIM, anchor="midtop")
        return surface_to_array(self.surface)
