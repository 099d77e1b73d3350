"""Third-party memory tasks for the defaults benchmark, registered under ``thirdparty/...`` ids.

Import it with ``--env-import benchmarks.third_party_envs`` (from the repository root). It
registers what a user would write for these packages themselves: MiniGrid's Memory task returns a
Dict with a ``mission`` text that no policy reads, so the ids below keep only its view, as
MiniGrid's own ``ImgObsWrapper`` does:

| id | observation | needs |
| --- | --- | --- |
| ``thirdparty/MiniGridMemoryS7Codes-v0`` | (7, 7, 3) uint8 object codes (type, colour, state) | minigrid |
| ``thirdparty/MiniGridMemoryS7Pixels-v0`` | (28, 28, 3) uint8 RGB of the same partial view | minigrid |

popgym's tasks need no wrapper: ``--env-import popgym --env-id popgym-CountRecallEasy-v0``.
The packages are the ``benchmarks`` extra's, never dependencies of the package (MiniGrid depends on
pygame-ce; install it with ``pip install --no-deps minigrid`` beside pygame).
"""

from __future__ import annotations

import gymnasium as gym


def _memory_codes(size: int = 7, **kwargs) -> gym.Env:
    from minigrid.wrappers import ImgObsWrapper

    return ImgObsWrapper(gym.make(f"MiniGrid-MemoryS{size}-v0", **kwargs))


def _memory_pixels(size: int = 7, tile_size: int = 4, **kwargs) -> gym.Env:
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    return ImgObsWrapper(RGBImgPartialObsWrapper(gym.make(f"MiniGrid-MemoryS{size}-v0", **kwargs), tile_size))


for _id, _entry in (("thirdparty/MiniGridMemoryS7Codes-v0", _memory_codes),
                    ("thirdparty/MiniGridMemoryS7Pixels-v0", _memory_pixels)):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry)
