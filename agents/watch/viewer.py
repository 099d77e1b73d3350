"""Watch a trained agent play, look inside its memory, and record it as a GIF or MP4.

    mnemo watch runs/my_run                                                   # a window, at the env's render_fps
    mnemo watch runs/my_run --inspect                                         # plus the memory panel
    mnemo watch runs/my_run --inspect --record play.gif --episodes 2          # headless file
    mnemo watch runs/my_run/checkpoints/best.pt --stochastic --fps 30 --seed 3

The env is the one the agent was trained on (id, kwargs and ``--env-import``
modules come from the checkpoint's config), made with ``render_mode="rgb_array"``:
any Gymnasium env that can draw itself into an array can be watched. Frames are
drawn by this module (upscaled when small, with the inspector panel beside them),
shown in a pygame window or written to a file. A recording opens no window and
needs no display. Each episode gives one frame after ``reset`` and one after
every step: ``steps + 1`` frames.

A multi-agent run (a PettingZoo ``ParallelEnv``, docs/multiagent.md) is played with every agent acting from
the shared policy; ``--inspect --agent NAME`` shows one agent's memory (``agents.watch.multiagent_viewer``).
With ``--opponent PLAYER`` a two-sided multi-agent run plays a match, one side against PLAYER (another run,
``RUN@snapshot:STEP``, ``scripted`` or ``random``), as ``mnemo match`` plays it (``agents.watch.match_viewer``).

In the window: Esc or Q quits, Space pauses.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.arguments import OneLineParser
from agents.config import ConfigError
from agents.deploy.match import split_snapshot
from agents.rollout.collector import import_env_modules
from agents.rollout.multiagent_env import SHARED_POLICY, is_multiagent
from agents.rollout.previous_inputs import run_input_wrapper
from agents.run.checkpoint import LATEST, CheckpointError, load_policies, load_snapshot
from agents.trees import obs_to_tensor, tree_map
from agents.watch.frames import (
    FrameSink,
    WatchError,
    WatchResult,
    cannot_render_message,
    check_spaces,
    emit,
    end_episode,
    log_summary,
)
from agents.watch.inspector import MemoryProbe, action_labels_for
from agents.watch.memory_panel import MemoryPanel
from envs.games.window import (
    PygameMissingError,
    array_to_surface,
    import_pygame,
    invisible_video_driver,
)

RECORD_FORMATS = (".gif", ".mp4")


# --------------------------------------------------------------------------- env
def make_render_env(
    env_id: str, env_kwargs: dict | None = None, env_import: tuple[str, ...] | list[str] = ()
) -> gym.Env:
    """``gym.make(env_id, render_mode="rgb_array", **env_kwargs)``, or a WatchError saying why it cannot render."""
    import envs  # noqa: F401  (registers the built-in ids)

    try:
        import_env_modules(env_import)
    except (ModuleNotFoundError, ConfigError) as exc:
        raise WatchError(f"{exc} (the run was trained with it: its env {env_id!r} is registered there)") from exc
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise WatchError(f"Env {env_id!r} is not registered ({exc}); pass the module that registers it "
                         "with --env-import when training.") from exc
    modes = _declared_render_modes(spec)
    if modes is not None and "rgb_array" not in modes:
        raise WatchError(cannot_render_message(env_id, modes))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's warning would repeat the error below
            env = gym.make(env_id, render_mode="rgb_array", **dict(env_kwargs or {}))
    except (TypeError, ValueError, gym.error.Error) as exc:
        if "render_mode" in str(exc):
            raise WatchError(cannot_render_message(env_id, modes) + f" ({exc})") from exc
        raise
    modes = list(env.metadata.get("render_modes", []))
    if env.render_mode != "rgb_array" or "rgb_array" not in modes:
        env.close()
        raise WatchError(cannot_render_message(env_id, modes))
    return env


def _declared_render_modes(spec: Any) -> list[str] | None:
    """The render modes an env class declares, without making the env (None when the entry point is a function)."""
    try:
        creator = spec.entry_point if callable(spec.entry_point) else gym.envs.registration.load_env_creator(
            spec.entry_point)
    except (ImportError, AttributeError, ValueError):
        return None
    metadata = getattr(creator, "metadata", None)
    return list(metadata.get("render_modes", [])) if isinstance(metadata, dict) else None


# --------------------------------------------------------------------------- sinks
_NO_DISPLAY = "Cannot open a window ({}); on a machine without a display use --record FILE.gif or FILE.mp4."


_INVISIBLE = ("No display: SDL's video driver is {!r}, so the window would be invisible. Run where a display is "
              "available (DISPLAY / WAYLAND_DISPLAY set), or record to a file: --record FILE.gif (or .mp4).")


_NO_DISPLAY_SET = ("No display: neither DISPLAY nor WAYLAND_DISPLAY is set, so a window cannot open; record to a file "
                   "instead: --record FILE.gif (or .mp4).")


def no_display_set() -> bool:
    """Whether a window clearly has no display to open on, known before SDL starts looking.

    On Linux and the BSDs a window needs X11 (``DISPLAY``) or Wayland (``WAYLAND_DISPLAY``). With neither, SDL
    tries each driver, prints its own errors ("XDG_RUNTIME_DIR is invalid or not set") and falls back to one
    that draws nowhere, so mnemo's message would come second. Where ``SDL_VIDEODRIVER`` names a driver, the
    user chose one: SDL is asked.
    """
    if sys.platform in ("win32", "darwin") or os.environ.get("SDL_VIDEODRIVER"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink(FrameSink):
    """A pygame window ticked at ``fps``; Esc / Q / closing the window stops, Space pauses.

    Args:
        fps: frames per second.
        caption: the window title.
        require_display: raise WatchError when SDL's video driver draws nowhere (no display; the command
            line sets it). Off, the window opens on any driver (tests run SDL's dummy driver).
    """

    def __init__(self, fps: float, caption: str, require_display: bool = False):
        if require_display and no_display_set():
            raise WatchError(_NO_DISPLAY_SET)
        self.pygame = import_pygame()
        try:
            self.pygame.display.init()
            driver = invisible_video_driver() if require_display else None
        except self.pygame.error as exc:
            raise WatchError(_NO_DISPLAY.format(exc)) from exc
        if driver is not None:
            self.pygame.display.quit()
            raise WatchError(_INVISIBLE.format(driver))
        self.fps, self.caption = fps, caption
        self.screen: Any = None
        self.clock = self.pygame.time.Clock()
        self.paused = False

    def _events(self) -> bool:
        pg = self.pygame
        for event in pg.event.get():
            if event.type == pg.QUIT:
                return False
            if event.type == pg.KEYDOWN:
                if event.key in (pg.K_ESCAPE, pg.K_q):
                    return False
                if event.key == pg.K_SPACE:
                    self.paused = not self.paused
        return True

    def add(self, frame: np.ndarray, title: str = "") -> bool:
        pg = self.pygame
        size = (frame.shape[1], frame.shape[0])
        if self.screen is None or self.screen.get_size() != size:
            try:
                self.screen = pg.display.set_mode(size)
            except pg.error as exc:
                raise WatchError(_NO_DISPLAY.format(exc)) from exc
        pg.display.set_caption(f"{self.caption} {title}".strip())
        self.screen.blit(array_to_surface(frame), (0, 0))
        pg.display.flip()
        if not self._events():
            return False
        while self.paused:
            self.clock.tick(20)
            if not self._events():
                return False
        self.clock.tick(self.fps)
        return True

    def close(self) -> None:
        self.pygame.display.quit()


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width (H.264 in yuv420p needs them)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else frame


class FileSink(FrameSink):
    """A GIF (imageio with Pillow; frames kept until close) or an MP4 (imageio-ffmpeg; streamed)."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps
        suffix = self.path.suffix.lower()
        if suffix not in RECORD_FORMATS:
            raise WatchError(f"--record {self.path}: unknown format {suffix or '(none)'}; use one of {RECORD_FORMATS}.")
        try:
            import imageio.v2 as imageio
        except ImportError as exc:
            raise WatchError("Recording needs imageio: pip install imageio (or mnemo[record]).") from exc
        self.imageio = imageio
        self.is_gif = suffix == ".gif"
        if not self.is_gif:
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError as exc:
                raise WatchError("MP4 recording needs imageio-ffmpeg: pip install imageio-ffmpeg "
                                 "(or mnemo[record]); or record a .gif.") from exc
        self.frames: list[np.ndarray] = []
        self.writer: Any = None
        self.count = 0

    def add(self, frame: np.ndarray, title: str = "") -> bool:
        self.count += 1
        if self.is_gif:
            self.frames.append(frame)
            return True
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # macro_block_size=1: frames are padded to even sizes here instead of being resized by imageio.
            self.writer = self.imageio.get_writer(self.path, format="FFMPEG", mode="I", fps=self.fps,
                                                  codec="libx264", macro_block_size=1, quality=8)
        self.writer.append_data(_even(frame))
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.is_gif and self.frames:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            import imageio.v3 as iio

            # Pillow's duration is in milliseconds (GIFs store hundredths of a second); loop=0 repeats forever.
            iio.imwrite(self.path, np.stack(self.frames), plugin="pillow", extension=".gif",
                        duration=1000.0 / self.fps, loop=0)
            self.frames = []


# --------------------------------------------------------------------------- play
def _batch(obs: Any) -> Any:
    return tree_map(lambda x: x.unsqueeze(0), obs_to_tensor(obs, torch.device("cpu")))


@torch.inference_mode()
def watch(
    path: str | Path,
    episodes: int = 3,
    deterministic: bool = True,
    fps: float | None = None,
    seed: int = 0,
    record: str | Path | None = None,
    inspect: bool = False,
    history: int = 48,
    which: str = LATEST,
    max_steps: int | None = None,
    scale: int | None = None,
    log: Callable[[str], None] = print,
    sink: FrameSink | None = None,
    require_display: bool = False,
    agent: str | None = None,
    opponent: str | None = None,
    side: str | None = None,
    sides: str | None = None,
    policy: str | None = None,
    policy_b: str | None = None,
) -> WatchResult:
    """Play ``episodes`` episodes of the agent at ``path`` (run directory or checkpoint file).

    A multi-agent run (docs/multiagent.md) plays every agent from its policy (the shared one, or with
    ``--policy-map`` the one its name maps to; ``agents.watch.multiagent_viewer``); its episodes are the env's,
    its returns the team's.

    Args:
        path: a run directory (its ``checkpoints/<which>`` is used) or a checkpoint file, or a self-play run's
            pool snapshot, ``RUN@snapshot:STEP`` (``agents.deploy.match``: every agent plays it).
        episodes: episodes to play.
        deterministic: take the most likely action (else sample).
        fps: frames per second of the window and the recording (default: the env's ``render_fps``, else 30).
        seed: seeds the first reset and the action sampler.
        record: write a .gif or .mp4 here instead of opening a window.
        inspect: draw the memory panel beside the game.
        history: steps the panel shows.
        which: checkpoint file name inside a run directory (``latest.pt`` or ``best.pt``).
        max_steps: end an episode after this many steps (None: the env's own time limit).
        scale: integer upscale of the game frame (default: automatic for small frames).
        log: receives one line per episode.
        sink: where frames go (overrides ``record``; for tests and embedding).
        require_display: without ``record`` or ``sink``, raise WatchError instead of playing into a window
            nobody can see (SDL's dummy or offscreen driver); the command line sets it.
        agent: a multi-agent run's agent whose memory ``inspect`` shows (default: the first of
            ``possible_agents``; with ``opponent``, the first of ``path``'s side); a single-agent run takes None.
        opponent: watch a match (``agents.watch.match_viewer``): ``path`` (a two-sided multi-agent run, or
            ``RUN@snapshot:STEP``) plays one side, ``opponent`` (a run, ``RUN@snapshot:STEP``, ``scripted`` or
            ``random``) the other; game g is seeded ``seed`` + g.
        side: with ``opponent``, the side ``path`` plays (default: the first).
        sides: with ``opponent``, the two sides as ``mnemo match --sides`` reads them (default: the run's
            self-play ``--sides``, else each of the env's two agents).
        policy: with ``opponent``, the one policy of a ``--policy-map`` run ``path`` that plays every agent of its
            side (None: each agent plays with the policy the run's map gives it), as ``mnemo match --policy``.
        policy_b: the opponent's, as ``mnemo match --policy-b`` (None: ``policy``).

    Returns:
        Returns and lengths of the episodes played and the number of frames drawn.
    """
    if episodes < 1:
        raise WatchError(f"--episodes must be at least 1, got {episodes}.")

    def sink_opener(env_id: str) -> Callable[[float | None], FrameSink]:
        """Where the frames of ``env_id`` go, given its ``render_fps`` (or None)."""
        def open_sink(render_fps: float | None) -> FrameSink:
            rate = float(fps or render_fps or 30)
            return sink or (FileSink(record, rate) if record is not None
                            else WindowSink(rate, f"mnemo: {env_id}", require_display))
        return open_sink

    if opponent is not None:
        return _watch_match(str(path), opponent, sink_opener, episodes=episodes, deterministic=deterministic, seed=seed,
                            record=record, inspect=inspect, history=history, which=which, max_steps=max_steps,
                            scale=scale, log=log, agent=agent, side=side, sides=sides, policy=policy,
                            policy_b=policy_b)
    if side is not None or sides is not None or policy is not None or policy_b is not None:
        raise WatchError("--side, --sides, --policy and --policy-b pick the sides of a match and their policies; add "
                         "--opponent PLAYER (or drop them: alone, a --policy-map run plays every agent by its map).")
    run, snapshot = split_snapshot(str(path))
    if snapshot is None:
        policies, config = load_policies(path, which=which, need_env=True)
    else:  # every agent plays the self-play snapshot (self-play runs have one policy)
        network, config, _ = load_snapshot(run, snapshot, which=which)
        policies = {SHARED_POLICY: network}
    env_id = config.env.env_id
    if is_multiagent(env_id):
        from agents.watch.multiagent_viewer import watch_multiagent

        return watch_multiagent(policies, config, sink_opener(env_id), episodes=episodes, deterministic=deterministic,
                                seed=seed, record=record, inspect=inspect, history=history, max_steps=max_steps,
                                scale=scale, log=log, agent=agent)
    if agent is not None:
        raise WatchError(f"--agent names an agent of a multi-agent env; {env_id} is a single-agent env (drop "
                         f"--agent).")
    (policy,) = policies.values()
    env = make_render_env(env_id, config.env.env_kwargs, config.env.env_import)
    wrapper = run_input_wrapper(config.policy)
    env = env if wrapper is None else wrapper(env)
    result = WatchResult()
    try:
        check_spaces(policy, env.observation_space, env.action_space, env_id)
        fps = float(fps or env.metadata.get("render_fps") or 30)
        if sink is None:
            sink = (FileSink(record, fps) if record is not None
                    else WindowSink(fps, f"mnemo: {env_id}", require_display))
        panel = None
        if inspect:
            panel = MemoryPanel(MemoryProbe(policy, action_labels_for(env)), history=history)
        generator = torch.Generator().manual_seed(seed)
        state = policy.initial_state(1)
        mode = "deterministic" if deterministic else "stochastic"
        try:
            for episode in range(1, episodes + 1):
                obs, _ = env.reset(seed=seed if episode == 1 else None)
                episode_start = torch.ones(1)
                ret, steps, last_action = 0.0, 0, None
                while True:
                    obs_t = _batch(obs)
                    out = policy.step(obs_t, state, episode_start, deterministic, generator)
                    if panel is not None:
                        panel.push(panel.probe.read(obs_t, state, episode_start, out.action, out.state))
                    caption = [env_id, f"episode {episode}  step {steps}", f"return {ret:+.2f}  ({mode})"]
                    if last_action is not None:
                        caption.append(f"last action {last_action}")
                    if not emit(sink, env, panel, caption, scale, result):
                        return result
                    action = policy.action_head.to_env(out.action)[0]
                    obs, reward, terminated, truncated, _ = env.step(action)
                    ret += float(reward)
                    steps += 1
                    last_action = (policy.action_head if panel is None else panel.probe).describe_action(action)
                    if panel is not None:
                        panel.set_reward(float(reward))
                    state, episode_start = out.state, torch.zeros(1)
                    if terminated or truncated or (max_steps is not None and steps >= max_steps):
                        break
                end = "terminated" if terminated else "truncated" if truncated else "stopped"
                caption = [env_id, f"episode {episode}  step {steps}  ({end})", f"return {ret:+.2f}  ({mode})",
                           f"last action {last_action}"]
                if not end_episode(sink, env, panel, caption, scale, result, episode, "return", ret, steps, end, log):
                    return result
        finally:
            sink.close()
        log_summary(result, "return", episodes, record, log)
        return result
    finally:
        env.close()


def _watch_match(path: str, opponent: str, sink_opener: Callable[[str], Callable[[float | None], FrameSink]],
                 deterministic: bool, seed: int, which: str, policy: str | None, policy_b: str | None,
                 **kwargs: Any) -> WatchResult:
    """``watch`` with an opponent: load both players as ``mnemo match`` does (``load_players``: A's runners seeded
    ``seed``, B's ``seed + 1``) and play them (``agents.watch.match_viewer.watch_match``)."""
    from agents.deploy.match import load_players
    from agents.watch.match_viewer import NEEDED_BY, watch_match

    try:
        a, b = load_players(path, opponent, which, None, policy, policy_b, deterministic, seed, needed_by=NEEDED_BY)
        if a.bot is not None:
            raise ConfigError(f"mnemo watch watches a run, not the {a.bot} bot; give the bot as --opponent.")
    except ConfigError as exc:
        raise WatchError(str(exc)) from exc
    open_sink = sink_opener(a.config.env.env_id)
    return watch_match(a, b, open_sink, seed=seed, **kwargs)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mnemo watch",
        description="Watch a trained agent play its env in a window, see its memory (--inspect), "
                    "or record a GIF / MP4 (--record).")
    parser.add_argument("path", help="Run directory (uses checkpoints/latest.pt) or checkpoint file, or "
                                     "RUN@snapshot:STEP (a self-play run's pool snapshot; STEP, 'first' or 'last').")
    parser.add_argument("--episodes", type=int, default=3, help="Episodes to play (default: 3).")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                       help="Take the most likely action (default).")
    group.add_argument("--stochastic", dest="deterministic", action="store_false",
                       help="Sample actions from the policy.")
    parser.add_argument("--fps", type=float, default=None, help="Frames per second (default: the env's render_fps).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first reset and of action sampling.")
    parser.add_argument("--record", metavar="FILE", default=None,
                        help="Write a .gif or .mp4 instead of opening a window (headless).")
    parser.add_argument("--inspect", action="store_true",
                        help="Show the memory panel: gates, cell and hidden state, value and action probabilities.")
    parser.add_argument("--history", type=int, default=48, help="Steps the memory panel shows (default: 48).")
    parser.add_argument("--which", default=LATEST, help="Checkpoint in a run directory: latest.pt or best.pt.")
    parser.add_argument("--max-steps", type=int, default=None, help="End each episode after this many steps.")
    parser.add_argument("--scale", type=int, default=None, help="Integer upscale of game frames (default: auto).")
    parser.add_argument("--agent", default=None,
                        help="Multi-agent runs: the agent whose memory --inspect shows (default: the first one; "
                             "with --opponent, the first of the run's side).")
    parser.add_argument("--opponent", default=None, metavar="PLAYER",
                        help="Watch a match on a two-sided multi-agent run: the run plays one side, PLAYER the "
                             "other: a run directory or checkpoint, RUN@snapshot:STEP (a self-play run's pool "
                             "snapshot; STEP, 'first' or 'last'), 'scripted' or 'random'.")
    parser.add_argument("--side", default=None, metavar="NAME",
                        help="With --opponent: the side the run plays (default: the first; a side is an agent's "
                             "name, or a name of --sides).")
    parser.add_argument("--sides", default=None, metavar="PATTERN=SIDE,...",
                        help="With --opponent: the two sides, as mnemo match reads them (default: the run's "
                             "self-play --sides, else each of the env's two agents).")
    parser.add_argument("--policy", default=None, metavar="NAME",
                        help="With --opponent, for a run with --policy-map: the one policy that plays every agent "
                             "of its side (default: each agent plays with the policy the run's map gives it), as "
                             "mnemo match --policy.")
    parser.add_argument("--policy-b", default=None, metavar="NAME",
                        help="With --opponent: the opponent's policy, as mnemo match --policy-b (default: --policy).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        watch(args.path, episodes=args.episodes, deterministic=args.deterministic, fps=args.fps, seed=args.seed,
              record=args.record, inspect=args.inspect, history=args.history, which=args.which,
              max_steps=args.max_steps, scale=args.scale, require_display=True, agent=args.agent,
              opponent=args.opponent, side=args.side, sides=args.sides, policy=args.policy, policy_b=args.policy_b)
    except (CheckpointError, WatchError, PygameMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            import_pygame().quit()
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
