"""Watching a policy play: rendered play and recording (``viewer.py``), the memory probe (``inspector.py``)
and the panel that draws it (``memory_panel.py``). ``python -m agents.watch RUN`` runs ``viewer.main``.
"""
