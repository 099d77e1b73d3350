"""``python -m agents.watch RUN [--inspect] [--record FILE]``: see ``agents/watch/viewer.py``."""

import sys

from agents.watch.viewer import main

sys.exit(main())
