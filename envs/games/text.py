"""Text on pygame surfaces, for every drawing in the project: the games' frames, the memory panel, versus.

pygame's default font where it works; a built-in 3x5 pixel font where pygame has
no font support (SDL_ttf missing). pygame is imported lazily, on the first draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.games.window import import_pygame

TEXT = (232, 234, 240)

# A 3x5 pixel font for machines whose pygame has no font module (SDL_ttf missing):
# five rows of three pixels per glyph, '#' = ink. Lower case draws as upper case.
_GLYPHS = {
    "A": ".#. #.# ### #.# #.#", "B": "##. #.# ##. #.# ##.", "C": ".## #.. #.. #.. .##", "D": "##. #.# #.# #.# ##.",
    "E": "### #.. ##. #.. ###", "F": "### #.. ##. #.. #..", "G": ".## #.. #.# #.# .##", "H": "#.# #.# ### #.# #.#",
    "I": "### .#. .#. .#. ###", "J": "..# ..# ..# #.# .#.", "K": "#.# #.# ##. #.# #.#", "L": "#.. #.. #.. #.. ###",
    "M": "#.# ### ### #.# #.#", "N": "##. #.# #.# #.# #.#", "O": ".#. #.# #.# #.# .#.", "P": "##. #.# ##. #.. #..",
    "Q": ".#. #.# #.# ##. .##", "R": "##. #.# ##. #.# #.#", "S": ".## #.. .#. ..# ##.", "T": "### .#. .#. .#. .#.",
    "U": "#.# #.# #.# #.# ###", "V": "#.# #.# #.# #.# .#.", "W": "#.# #.# ### ### #.#", "X": "#.# #.# .#. #.# #.#",
    "Y": "#.# #.# .#. .#. .#.", "Z": "### ..# .#. #.. ###", "0": "### #.# #.# #.# ###", "1": ".#. ##. .#. .#. ###",
    "2": "##. ..# .#. #.. ###", "3": "##. ..# .#. ..# ##.", "4": "#.# #.# ### ..# ..#", "5": "### #.. ##. ..# ##.",
    "6": ".## #.. ### #.# ###", "7": "### ..# .#. .#. .#.", "8": "### #.# ### #.# ###", "9": "### #.# ### ..# ##.",
    " ": "... ... ... ... ...", ".": "... ... ... ... .#.", ",": "... ... ... .#. #..", ":": "... .#. ... .#. ...",
    "-": "... ... ### ... ...", "+": "... .#. ### .#. ...", "=": "... ### ... ### ...", "(": ".#. #.. #.. #.. .#.",
    ")": ".#. ..# ..# ..# .#.", "/": "..# ..# .#. #.. #..", "%": "#.# ..# .#. #.. #.#", "?": "##. ..# .#. ... .#.",
    "_": "... ... ... ... ###", "<": "..# .#. #.. .#. ..#", ">": "#.. .#. ..# .#. #..", "!": ".#. .#. .#. ... .#.",
    "'": ".#. .#. ... ... ...", "[": "##. #.. #.. #.. ##.", "]": ".## ..# ..# ..# .##", "|": ".#. .#. .#. .#. .#.",
    "*": "... #.# .#. #.# ...", "#": "#.# ### #.# ### #.#",
}
_ASCII = {"×": "x", "·": ".", "±": "+-", "σ": "s", "μ": "u", "π": "pi", "…": "...", "–": "-", "—": "-"}


def _glyph_rows(char: str) -> np.ndarray:
    rows = _GLYPHS.get(char.upper(), _GLYPHS["?"]).split()
    return np.array([[b == "#" for b in row] for row in rows], dtype=bool)

class TextRenderer:
    """Text as pygame surfaces: pygame.font's default font, or a built-in pixel font when fonts are unavailable.

    Loaded fonts are cached (loading one costs milliseconds). ``pygame.quit()`` frees every font, and using a
    freed one crashes the interpreter, so the cache is emptied by a quit hook and whenever the font module is
    found shut down.

    Args:
        use_system_font: try pygame.font first (False forces the pixel font, e.g. in tests).
    """

    def __init__(self, use_system_font: bool = True):
        self._fonts: dict[int, Any] = {}
        self._use_system_font = use_system_font
        self._has_font: bool | None = None  # found out on the first draw, so that making one imports nothing

    @property
    def has_font(self) -> bool:
        """Whether text is drawn with pygame.font (else with the pixel font)."""
        if self._has_font is None:
            self._has_font = self._use_system_font and self._init_font()
        return self._has_font

    @staticmethod
    def _init_font() -> bool:
        pygame = import_pygame()
        try:
            if not pygame.font.get_init():
                pygame.font.init()
            pygame.font.Font(None, 12)
        except Exception:  # a missing SDL_ttf shows up as ImportError, NotImplementedError or pygame.error
            return False
        return True

    def font(self, size: int) -> Any:
        """pygame's default font at ``size`` points, cached."""
        pygame = import_pygame()
        if not pygame.font.get_init():
            self._fonts.clear()
            pygame.font.init()
        if size not in self._fonts:
            if not self._fonts:
                pygame.register_quit(self._fonts.clear)
            self._fonts[size] = pygame.font.Font(None, size)
        return self._fonts[size]

    def render(self, text: str, size: int, color: tuple[int, int, int]) -> Any:
        """A surface with per-pixel alpha holding ``text`` at about ``size`` pixels of line height."""
        pygame = import_pygame()
        if self.has_font:
            return self.font(size).render(text, True, color)
        text = "".join(_ASCII.get(ch, ch) for ch in text)
        scale = max(1, round(size / 9))
        ink = np.zeros((5, max(1, 4 * len(text))), dtype=bool)
        for n, ch in enumerate(text):
            ink[:, 4 * n: 4 * n + 3] = _glyph_rows(ch)
        ink = ink.repeat(scale, 0).repeat(scale, 1)
        rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
        rgba[..., :3] = color
        rgba[..., 3] = ink * 255
        return pygame.image.frombuffer(rgba.tobytes(), (ink.shape[1], ink.shape[0]), "RGBA").copy()

    def draw(self, surface: Any, text: str, pos: tuple[int, int], size: int,
             color: tuple[int, int, int] = TEXT, anchor: str = "topleft") -> Any:
        """Blit ``text`` with its ``anchor`` (a pygame Rect attribute name) at ``pos``; returns the Rect."""
        image = self.render(text, size, color)
        rect = image.get_rect(**{anchor: pos})
        surface.blit(image, rect)
        return rect


GAME_TEXT = TextRenderer()
"""The renderer of the built-in games' frames (their drawing functions are pure: they take no renderer)."""


def blit_text(surface: Any, text: str, center: tuple[int, int], size: int, color: tuple[int, int, int]) -> None:
    """Draw ``text`` centred at ``center`` (the games' captions and scores)."""
    GAME_TEXT.draw(surface, text, center, size, color, anchor="center")
