"""docs/architecture.md's table of registered names lists exactly what the registries hold."""

from __future__ import annotations

import re
from pathlib import Path

from agents.model.action_heads import ACTION_HEADS
from agents.registry import BACKENDS, CORES

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs/architecture.md"


def registered_table() -> dict[str, str]:
    """The "Registered now" table: registry column -> names column."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text[text.index("Registered now:"):].split("\n\n")[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {key.strip(): value.strip() for key, value in rows}


def test_the_docs_list_every_registered_core_backend_and_action_space():
    table = registered_table()
    assert re.findall(r"`([^`]+)`", table["`--core`"]) == list(CORES.names())
    assert re.findall(r"`([^`]+)`", table["`--backend`"]) == list(BACKENDS.names())
    assert table["action spaces"] == ", ".join(head.space_description for head in ACTION_HEADS.values())
