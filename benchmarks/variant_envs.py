"""Variants of the built-in games that no preset covers, registered under ``variant/...`` ids.

Import it with ``--env-import benchmarks.variant_envs`` (from the repository root). Each id is a built-in game
with other arguments, trained exactly as a user's game would be: no preset applies to it.

| id | game | what changes |
| --- | --- | --- |
| ``variant/TMazeSparse10-v0`` | ``TMazeEnv``, corridor 10, time limit 50 | +1 / -1 for the turn, 0 for bumping |
| ``variant/TMazeSparse30-v0`` | ``TMazeEnv``, corridor 30, time limit 150 | the same |
| ``variant/TMazeSparse30Tight-v0`` | ``TMazeEnv``, corridor 30, time limit 50 | the same (seldom reached) |

In the sparse T-maze a memoryless policy averages 0 and nothing but the turn is paid, so nothing draws the agent
towards the junction until its memory of the cue works; with Bakker's rewards (the built-in ids) the -0.1 for
bumping and the +4 / -1 payout already do.
"""

from __future__ import annotations

import gymnasium as gym

from envs.memory import tmaze_time_limit

_SPARSE = {"goal_reward": 1.0, "wrong_reward": -1.0, "bump_reward": 0.0}
# (id, corridor length, time limit). The tight maze's 50 steps (the registered mnemo/TMaze-v0 limit) leave 20 to
# spare: a uniform random walk needs 30 steps east among its first 50 (probability about 1e-4 per episode).
_MAZES = (("variant/TMazeSparse10-v0", 10, tmaze_time_limit(10)),
          ("variant/TMazeSparse30-v0", 30, tmaze_time_limit(30)),
          ("variant/TMazeSparse30Tight-v0", 30, 50))
for _id, _length, _limit in _MAZES:
    if _id not in gym.registry:
        gym.register(_id, entry_point="envs.memory:TMazeEnv", max_episode_steps=_limit,
                     kwargs={"corridor_length": _length, **_SPARSE})
