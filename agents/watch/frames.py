"""What single- and multi-agent watching share: the error, the result, frames from the env, where they go.

``agents.watch.viewer`` (single-agent runs, the sinks, the command line) and ``agents.watch.multiagent_viewer``
both draw through ``emit``; ``viewer`` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from agents.model.policy import RecurrentActorCritic
from agents.watch.memory_panel import MemoryPanel
from envs.games.window import ONE_PYGAME_ONLY


class WatchError(RuntimeError):
    """The agent cannot be watched as asked (env cannot render, unknown file format, missing package)."""


@dataclass
class WatchResult:
    """What a watch session played."""

    returns: list[float] = field(default_factory=list)
    """Each episode's return; for a multi-agent env the team's: the sum of every agent's rewards."""
    lengths: list[int] = field(default_factory=list)
    frames: int = 0
    agent_returns: list[float] = field(default_factory=list)
    """A multi-agent env: the return of each agent episode (spawn to end) that ended, in the order they ended."""


def cannot_render_message(env_id: str, modes: Any) -> str:
    """Why ``env_id`` cannot be watched: it has no rgb_array render mode (its modes named)."""
    return (f"Env {env_id!r} cannot be watched: it does not support render_mode 'rgb_array' "
            f"(its render_modes are {list(modes) if modes is not None else 'unknown'}). Watching and recording "
            "draw the env's rgb_array frames; add an rgb_array render mode to the env.")


def render_frame(env: gym.Env) -> np.ndarray:
    """env.render() checked to be an (H, W, 3) uint8 image."""
    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as exc:  # e.g. Gymnasium's classic-control envs draw with pygame
        spec = getattr(env, "spec", None)
        name = spec.id if spec is not None else type(getattr(env, "unwrapped", env)).__name__
        note = f" ({ONE_PYGAME_ONLY})" if "pygame" in str(exc) else ""
        raise WatchError(f"Env {name!r} cannot draw its frames: {exc}{note}.") from exc
    if isinstance(frame, list):  # rgb_array_list-style wrappers
        frame = frame[-1] if frame else None
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.ndim != 3 or array.shape[2] not in (3, 4):
        shape = None if array is None else array.shape
        raise WatchError(f"env.render() returned {type(frame).__name__} with shape {shape}; "
                         "expected an (H, W, 3) RGB array.")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


def auto_scale(frame_shape: tuple[int, ...], inspect: bool) -> int:
    """An integer upscale so that small frames (e.g. the 48 px TMaze) are legible, within a sensible width."""
    h, w = frame_shape[:2]
    max_w = 560 if inspect else 960
    return max(1, min(-(-360 // h), max_w // w))


def upscale(frame: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor (crisp pixels)."""
    return frame if k == 1 else frame.repeat(k, axis=0).repeat(k, axis=1)


class FrameSink:
    """Where frames go: a window or a file. ``add`` returns False when the viewer asked to stop."""

    def add(self, frame: np.ndarray, title: str = "") -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


def check_spaces(policy: RecurrentActorCritic, observation_space: gym.Space, action_space: gym.Space,
                 env_id: str) -> None:
    """Raise WatchError when the env's spaces (one agent's, for a multi-agent env) are not the policy's."""
    for what, theirs, ours in (("observation", observation_space, policy.observation_space),
                               ("action", action_space, policy.action_space)):
        if type(theirs) is not type(ours) or gym.spaces.flatdim(theirs) != gym.spaces.flatdim(ours):
            raise WatchError(f"The policy was trained on {env_id}, whose {what} space was then {ours}; {env_id} "
                             f"now has {theirs}: was the env changed since training?")


def emit(sink: FrameSink, env: Any, panel: MemoryPanel | None, caption: list[str], scale: int | None,
         result: WatchResult, frame: np.ndarray | None = None) -> bool:
    """Draw one frame (``frame``, else the env's current one) with the panel and caption into ``sink``."""
    frame = render_frame(env) if frame is None else frame
    frame = upscale(frame, scale or auto_scale(frame.shape, panel is not None))
    if panel is not None:
        frame = panel.compose(frame, caption)
    result.frames += 1
    return sink.add(frame, " | ".join(caption[1:3]))


def end_episode(sink: FrameSink, env: Any, panel: MemoryPanel | None, caption: list[str], scale: int | None,
                result: WatchResult, episode: int, what: str, ret: float, steps: int, end: str,
                log: Callable[[str], None], frame: np.ndarray | None = None) -> bool:
    """Draw an episode's last frame, then record its return (``what``: "return", "team return") and log it;
    False when the viewer asked to stop (the episode is then not recorded)."""
    if not emit(sink, env, panel, caption, scale, result, frame):
        return False
    result.returns.append(ret)
    result.lengths.append(steps)
    log(f"episode {episode}: {what} {ret:.2f} ({steps} steps, {end})")
    return True


def log_summary(result: WatchResult, what: str, episodes: int, record: Any, log: Callable[[str], None]) -> None:
    """The closing lines of a watch session: the mean ``what`` over several episodes, the frames written."""
    if episodes > 1:
        log(f"mean {what} {np.mean(result.returns):.2f} ± {np.std(result.returns):.2f} over {episodes} episodes")
    if record is not None:
        log(f"wrote {result.frames} frames to {record}")
