"""Third-party tasks for the defaults and sparse-reward benchmarks, registered under ``thirdparty/...`` ids.

Import it with ``--env-import benchmarks.third_party_envs`` (from the repository root). It
registers what a user would write for these packages themselves: MiniGrid's Memory task returns a
Dict with a ``mission`` text that no policy reads, so the ids below keep only its view, as
MiniGrid's own ``ImgObsWrapper`` does:

| id | observation | needs |
| --- | --- | --- |
| ``thirdparty/MiniGridMemoryS7Codes-v0`` | (7, 7, 3) uint8 object codes (type, colour, state) | minigrid |
| ``thirdparty/MiniGridMemoryS7Pixels-v0`` | (28, 28, 3) uint8 RGB of the same partial view | minigrid |
| ``thirdparty/MiniGridDoorKey5x5Codes-v0`` | (7, 7, 3) object codes of ``MiniGrid-DoorKey-5x5-v0`` | minigrid |
| ``thirdparty/MiniGridMultiRoomN2S4Codes-v0`` | (7, 7, 3) object codes of ``MiniGrid-MultiRoom-N2-S4-v0`` | minigrid |

The last two are sparse: the goal pays ``1 - 0.9 * steps / max_steps`` and nothing else does; a uniform random
player reaches it in 8% (DoorKey, 250 steps) and 2% (MultiRoom, 40 steps) of episodes.

popgym's tasks need no wrapper: ``--env-import popgym --env-id popgym-CountRecallEasy-v0``.
The packages are the ``benchmarks`` extra's, never dependencies of the package (MiniGrid depends on
pygame-ce; install it with ``pip install --no-deps minigrid`` beside pygame).
"""

from __future__ import annotations

import gymnasium as gym


def _memory_codes(size: int = 7, **kwargs) -> gym.Env:
    return _codes(f"MiniGrid-MemoryS{size}-v0", **kwargs)


def _codes(minigrid_id: str, **kwargs) -> gym.Env:
    """A MiniGrid task's partial view as object codes, without the mission text."""
    from minigrid.wrappers import ImgObsWrapper

    return ImgObsWrapper(gym.make(minigrid_id, **kwargs))


def _memory_pixels(size: int = 7, tile_size: int = 4, **kwargs) -> gym.Env:
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    return ImgObsWrapper(RGBImgPartialObsWrapper(gym.make(f"MiniGrid-MemoryS{size}-v0", **kwargs), tile_size))


for _id, _entry, _kwargs in (
        ("thirdparty/MiniGridMemoryS7Codes-v0", _memory_codes, {}),
        ("thirdparty/MiniGridMemoryS7Pixels-v0", _memory_pixels, {}),
        ("thirdparty/MiniGridDoorKey5x5Codes-v0", _codes, {"minigrid_id": "MiniGrid-DoorKey-5x5-v0"}),
        ("thirdparty/MiniGridMultiRoomN2S4Codes-v0", _codes, {"minigrid_id": "MiniGrid-MultiRoom-N2-S4-v0"})):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry, kwargs=_kwargs)
