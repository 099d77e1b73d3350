"""Small vector memory tasks in pure numpy, one per module.

Each task hides what the agent needs behind time: the information is shown once
(or spread over many steps) and asked for later. A memoryless policy is capped
well below the maximum return; an LSTM policy can reach it.

- :class:`TMazeEnv` (``mnemo/TMaze-v0``, ``mnemo/TMazeLong-v0``): remember a cue
  for the length of a corridor (Bakker 2001).
- :class:`GatedMemoryEnv` (``mnemo/GatedMemory-v0``): write, clear and read an
  additive memory cell, the hand-set LSTM cell of the tutorial turned into a game.
- :class:`CountRecallEnv` (``mnemo/CountRecall-v0``): count how often each symbol
  has appeared, answer for the one asked, every step.

The envs are built for speed (> 100k steps/s in one process): episodes are drawn
in ``reset``, observations precomputed, and ``step`` only indexes and copies.
"""

from envs.memory.count_recall import CountRecallEnv
from envs.memory.gated_memory import GatedMemoryEnv
from envs.memory.tmaze import TMazeEnv, tmaze_time_limit

__all__ = ["CountRecallEnv", "GatedMemoryEnv", "TMazeEnv", "tmaze_time_limit"]
