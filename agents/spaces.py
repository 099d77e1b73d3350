"""Observation and action spaces: which ones the policy supports, how an observation leaf is read
(frame, grid of codes or vector) and whether it needs normalising, and spaces as JSON for checkpoints
and exports. No torch here; the encoders that act on these decisions are in ``agents/model/encoders.py``.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

SUPPORTED_OBSERVATION_SPACES = (
    "Box (vectors, or uint8 images HxWxC / CxHxW with 1, 3 or 4 channels), Discrete, MultiDiscrete, "
    "MultiBinary, and Dict / Tuple of these"
)


class UnsupportedSpaceError(ValueError):
    """The env uses a space the policy cannot encode or act in."""


# --------------------------------------------------------------------------- space checks
# Below this many cells on a side a uint8 "image" is a grid of object codes (MiniGrid's 7x7 view, a board),
# not a frame: the CNN's three stride-2 layers would shrink 7x7 to 1x1 and treat codes as brightness.
MIN_FRAME_SIDE = 16


def is_image_space(space: spaces.Space) -> bool:
    """A uint8 Box with 3 dims whose first or last dim has 1, 3 or 4 channels (a frame or a grid of codes)."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and (space.shape[-1] in (1, 3, 4) or space.shape[0] in (1, 3, 4))
    )


def image_layout(space: spaces.Box) -> tuple[bool, int, int, int]:
    """(channels_last, C, H, W) of a 3-dim image or grid Box (channels last when the last dim has 1, 3 or 4)."""
    channels_last = space.shape[-1] in (1, 3, 4)
    if channels_last:
        return True, space.shape[2], space.shape[0], space.shape[1]
    return False, space.shape[0], space.shape[1], space.shape[2]


def choose_obs_encoder(space: spaces.Space, requested: str = "auto") -> str:
    """The encoder kind for one leaf Box: 'image' (CNN on pixels), 'grid' (embedded codes) or 'flat' (vector).

    ``auto``: uint8 HxWxC / CxHxW with both spatial sides of at least ``MIN_FRAME_SIDE`` and an upper bound
    of 255 are frames (CNN); smaller ones, or ones whose values stop below 255, are grids of codes;
    everything else is a vector. An explicit choice applies to every leaf
    that can take it (image and grid need the 3-dim uint8 layout; other leaves stay vectors).
    """
    if not is_image_space(space):
        return "flat"
    if requested != "auto":
        return requested
    _, _, height, width = image_layout(space)
    is_frame = min(height, width) >= MIN_FRAME_SIDE and int(np.max(space.high)) == 255
    return "image" if is_frame else "grid"


def leaf_spaces(space: spaces.Space) -> list[spaces.Space]:
    """The leaf spaces of a (possibly nested) Dict / Tuple space, in encoding order."""
    if isinstance(space, spaces.Dict):
        return [leaf for sub in space.spaces.values() for leaf in leaf_spaces(sub)]
    if isinstance(space, spaces.Tuple):
        return [leaf for sub in space.spaces for leaf in leaf_spaces(sub)]
    return [space]


# Vectors whose declared bounds stay within this are left as they are: running statistics would only blow up a
# rare input (a cue shown once, a one-hot) to the clip value.
WELL_SCALED_BOUND = 10.0


def needs_obs_normalization(space: spaces.Space, obs_encoder: str = "auto") -> bool:
    """Whether some vector leaf of ``space`` (as ``obs_encoder`` reads it) is unbounded or badly scaled (bounds
    beyond +-``WELL_SCALED_BOUND``), so that running mean/std normalisation should put it on a common scale (the
    rule behind ``normalize_obs=None``). Images, grids of codes, one-hots and binaries are never normalised."""
    for leaf in leaf_spaces(space):
        if isinstance(leaf, spaces.Box) and choose_obs_encoder(leaf, obs_encoder) == "flat":
            bounds = np.concatenate([np.ravel(leaf.low), np.ravel(leaf.high)]).astype(np.float64)
            if not np.all(np.isfinite(bounds)) or np.max(np.abs(bounds)) > WELL_SCALED_BOUND:
                return True
    return False


def has_image(space: spaces.Space, obs_encoder: str = "auto") -> bool:
    """Whether any leaf of an observation space is a frame that the image CNN reads (as ``obs_encoder`` chooses)."""
    return any(choose_obs_encoder(leaf, obs_encoder) == "image" for leaf in leaf_spaces(space))


def check_observation_space(space: spaces.Space, path: str = "observation") -> None:
    """Raise UnsupportedSpaceError naming the offending (sub)space and what is supported."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            check_observation_space(sub, f"{path}[{key!r}]")
        return
    if isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            check_observation_space(sub, f"{path}[{i}]")
        return
    if isinstance(space, spaces.Box) and not np.issubdtype(space.dtype, np.number):
        raise UnsupportedSpaceError(f"{path} space {space} has non-numeric dtype {space.dtype}.")
    if isinstance(space, spaces.MultiDiscrete) and np.any(space.start != 0):
        raise UnsupportedSpaceError(
            f"{path} space {space} has a non-zero start; wrap the env to shift its values to start at 0.")
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise UnsupportedSpaceError(
            f"{path} space {type(space).__name__} ({space}) is not supported. "
            f"Supported: {SUPPORTED_OBSERVATION_SPACES}. Wrap the env (e.g. gymnasium.wrappers.FlattenObservation "
            f"or a custom ObservationWrapper) to convert it.")


# --------------------------------------------------------------------------- JSON
def space_to_json(space: spaces.Space) -> dict:
    """A JSON description that ``space_from_json`` turns back into an equal space."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "shape": list(space.shape), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist(),
                "start": np.asarray(space.start).tolist(), "dtype": str(space.dtype)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_json(v) for v in space.spaces]}
    raise UnsupportedSpaceError(f"Cannot describe space {space} as JSON.")


def space_from_json(data: dict) -> spaces.Space:
    """Inverse of ``space_to_json``."""
    kind = data.get("type")
    if kind == "Box":
        low = np.array(data["low"], dtype=data["dtype"])
        high = np.array(data["high"], dtype=data["dtype"])
        return spaces.Box(low.reshape(data["shape"]), high.reshape(data["shape"]), dtype=data["dtype"])
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data.get("start", 0))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"], dtype=data.get("dtype", "int64"), start=data.get("start"))
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(v) for k, v in data["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_json(v) for v in data["spaces"]])
    raise UnsupportedSpaceError(f"Unknown space description {data!r}.")


# --------------------------------------------------------------------------- action masks
# The observation key that carries an action mask (PettingZoo's classic envs, sb3-contrib, RLlib).
ACTION_MASK_KEY = "action_mask"
# With PettingZoo's {"observation", "action_mask"} the policy reads the "observation" entry itself.
MASKED_OBSERVATION_KEY = "observation"


class ActionMaskError(UnsupportedSpaceError):
    """An env's action mask cannot be used: wrong length, an unmaskable action space, or no legal action."""


def action_mask_sizes(action_space: spaces.Space) -> tuple[int, ...]:
    """The number of choices in each action dimension: ``(n,)`` for Discrete(n), ``nvec`` for MultiDiscrete.

    Raises:
        ActionMaskError: the action space is neither Discrete nor MultiDiscrete.
    """
    if isinstance(action_space, spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, spaces.MultiDiscrete):
        return tuple(int(n) for n in np.asarray(action_space.nvec).ravel())
    raise ActionMaskError(f"the env gives an action mask but its action space {action_space} is not Discrete or "
                          f"MultiDiscrete; drop the '{ACTION_MASK_KEY}' entry or use a discrete action space.")


def action_mask_start(action_space: spaces.Space) -> int:
    """What the env's actions are offset by against the mask's columns: a Discrete space's ``start``, else 0."""
    return int(action_space.start) if isinstance(action_space, spaces.Discrete) else 0


def has_action_mask(observation_space: spaces.Space) -> bool:
    """Whether the observation space is a Dict with an ``action_mask`` entry (a masked env)."""
    return isinstance(observation_space, spaces.Dict) and ACTION_MASK_KEY in observation_space.spaces


def check_action_mask_space(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise ActionMaskError (one line naming the fix) unless the mask entry fits the action space: a flat
    MultiBinary or numeric Box of length n (Discrete(n)) or sum(nvec) (MultiDiscrete, the dimensions' masks side
    by side, as sb3-contrib lays them out). A no-op for an unmasked space."""
    if not has_action_mask(observation_space):
        return
    sizes = action_mask_sizes(action_space)
    mask_space = observation_space.spaces[ACTION_MASK_KEY]
    if not isinstance(mask_space, (spaces.MultiBinary, spaces.Box)) or mask_space.shape is None:
        raise ActionMaskError(f"observation['{ACTION_MASK_KEY}'] space {mask_space} is not a MultiBinary or Box; "
                              f"give the mask as a flat MultiBinary({sum(sizes)}) or Box of 0 / 1.")
    length = int(np.prod(mask_space.shape))
    if len(mask_space.shape) != 1 or length != sum(sizes):
        raise ActionMaskError(
            f"observation['{ACTION_MASK_KEY}'] has shape {tuple(mask_space.shape)} but the action space "
            f"{action_space} needs a flat mask of length {sum(sizes)} (one entry per action"
            f"{', the dimensions side by side' if len(sizes) > 1 else ''}); fix the env's mask.")
    if len(observation_space.spaces) == 1:
        raise ActionMaskError(f"the observation holds only '{ACTION_MASK_KEY}'; give the policy something to see "
                              f"beside it (e.g. an 'observation' entry).")


def policy_observation_space(observation_space: spaces.Space) -> spaces.Space:
    """What the policy's encoder reads of an env's observation: the space itself for an unmasked env; for a
    masked one the Dict without the mask, or the ``observation`` entry itself when that is all that is left
    (PettingZoo's ``{"observation", "action_mask"}``)."""
    if not has_action_mask(observation_space):
        return observation_space
    rest = {k: v for k, v in observation_space.spaces.items() if k != ACTION_MASK_KEY}
    if list(rest) == [MASKED_OBSERVATION_KEY]:
        return rest[MASKED_OBSERVATION_KEY]
    return spaces.Dict(rest)


def split_action_mask(obs: dict) -> tuple[object, object]:
    """A masked env's observation tree (numpy or torch leaves) -> (what the policy's encoder reads, the mask
    leaf), laid out as ``policy_observation_space`` says."""
    rest = {k: v for k, v in obs.items() if k != ACTION_MASK_KEY}
    if list(rest) == [MASKED_OBSERVATION_KEY]:
        return rest[MASKED_OBSERVATION_KEY], obs[ACTION_MASK_KEY]
    return rest, obs[ACTION_MASK_KEY]


def illegal_action_rows(mask: np.ndarray, actions: np.ndarray, sizes: tuple[int, ...], start: int = 0) -> np.ndarray:
    """Which of N actions the mask forbids: (N,) bool, vectorised.

    Args:
        mask: (N, sum(sizes)), nonzero where an action is legal (the dimensions' masks side by side).
        actions: (N,) for Discrete or (N, k) for MultiDiscrete, in the env's format.
        sizes: ``action_mask_sizes`` of the action space.
        start: a Discrete space's ``start`` (subtracted from the actions).
    """
    mask = np.asarray(mask).reshape(len(mask), sum(sizes))
    columns = np.asarray(actions, dtype=np.int64).reshape(len(mask), len(sizes)) - start
    columns = columns + np.cumsum((0, *sizes[:-1]), dtype=np.int64)
    return ~(mask[np.arange(len(mask))[:, None], columns] != 0).all(axis=1)


def rows_without_legal_action(mask: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """(N,) bool: rows of a mask (N, sum(sizes)) where some action dimension has no legal action."""
    if len(mask) == 0:
        return np.zeros(0, dtype=bool)
    legal = np.asarray(mask).reshape(len(mask), sum(sizes)) != 0
    per_dim = np.logical_or.reduceat(legal, np.cumsum((0, *sizes[:-1])), axis=1)
    return ~per_dim.all(axis=1)


def with_a_legal_action(mask: np.ndarray, sizes: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A copy of ``mask`` (N, sum(sizes)) where every dimension left without a legal action gets one at random
    (random masks drawn from the mask's space, for exports' example inputs and parity checks)."""
    mask = np.array(mask, copy=True)
    for start, n in zip(np.cumsum((0, *sizes[:-1])), sizes, strict=True):
        for row in np.flatnonzero(~(mask[:, start:start + n] != 0).any(axis=1)):
            mask[row, start + int(rng.integers(n))] = 1
    return mask


def check_action_mask_rows(mask: np.ndarray, sizes: tuple[int, ...], where: str = "env",
                           names: np.ndarray | None = None) -> None:
    """Raise ActionMaskError when some row of ``mask`` (N, sum(sizes)) leaves an action dimension without a
    legal action (the policy could only act illegally there); the message calls row i ``where names[i]``."""
    empty = rows_without_legal_action(mask, sizes)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        row = row if names is None else int(names[row])
        raise ActionMaskError(f"{where} {row} gave an action mask with no legal action"
                              f"{' in some dimension' if len(sizes) > 1 else ''}; fix the env so that every "
                              f"step leaves at least one legal action (or end the episode there).")
