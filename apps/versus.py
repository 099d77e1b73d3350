"""Play FlickerPong against a trained agent: you on the left paddle, the LSTM agent on the right.

    python -m apps.versus runs/pong                        # a window; W/S or Up/Down; Esc quits
    python -m apps.versus runs/pong --matches 3 --flicker agent   # you get the agent's blank frames too
    python -m apps.versus runs/pong --record match.gif     # headless demo: a scripted left paddle plays

The run must have been trained on FlickerPong (``mnemo/FlickerPong-v0`` or
``mnemo/FlickerPongPixels-v0``, or another id registered with ``FlickerPongEnv``), or on two-player
FlickerPong (``mnemo/FlickerPongDuel-v0``, e.g. by self-play): there the agent plays the ``right`` agent
of the duel and you its ``left`` (``DuelSeat``).
The env is made from the run's own config (id, ``env_kwargs``, ``--env-import``
modules) with only ``opponent="external"`` added, so the agent gets exactly the
observations it was trained on: the same flicker probability, the same vector or
pixel view. Its paddle is driven by ``PolicyRunner``; yours by the keyboard
through ``set_opponent_action``. What *you* see is a separate choice
(``--flicker``): the whole court (default), the agent's own blank frames, or your
own random flicker.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from agents.arguments import OneLineParser
from agents.config import ConfigError
from agents.deploy.runner import PolicyRunner
from agents.rollout.collector import import_env_modules
from agents.rollout.multiagent_env import is_multiagent, make_parallel_env
from agents.run.checkpoint import LATEST, CheckpointError
from agents.watch.viewer import FileSink, FrameSink, WatchError, WindowSink
from apps.versus_screen import VersusScreen
from envs.games import flicker_pong
from envs.games.flicker_pong import NOOP, FlickerPongEnv, PongParams, PongState

if TYPE_CHECKING:  # the duel needs pettingzoo (the multiagent extra); single-agent versus does not
    from envs.multiagent.pong_duel import PongDuelEnv
from envs.games.window import PygameMissingError, import_pygame, invisible_video_driver
from envs.play import action_from_keys

SUPPORTED_ENV_IDS = ("mnemo/FlickerPong-v0", "mnemo/FlickerPongPixels-v0", "mnemo/FlickerPongDuel-v0")
HUMANS = ("keyboard", "scripted", "idle")
AGENT_FLICKER = "agent"
"""``--flicker agent``: the person sees a blank screen exactly when the agent does."""

Human = Callable[[PongState, PongParams], int]
"""The left paddle's player: ``(state, params) -> action`` (0 stay, 1 up, 2 down), called once per step."""


class VersusError(RuntimeError):
    """The match cannot be played as asked (wrong env, no display, bad option)."""


@dataclass
class MatchResult:
    """The final score of one match."""

    human_points: int
    agent_points: int
    steps: int
    truncated: bool
    """the env's time limit ended the match before either side reached ``points_to_win``"""

    @property
    def winner(self) -> str:
        """``"human"``, ``"agent"`` or ``"draw"`` (a truncated match with equal points)."""
        if self.human_points == self.agent_points:
            return "draw"
        return "human" if self.human_points > self.agent_points else "agent"


@dataclass
class VersusResult:
    """What a session played."""

    matches: list[MatchResult] = field(default_factory=list)
    """finished matches (a match left with Esc is not counted)"""
    frames: int = 0
    quit: bool = False
    """the person closed the window or pressed Esc / Q before the last match ended"""


# --------------------------------------------------------------------------- the left paddle
def idle_human(state: PongState, params: PongParams) -> int:
    """A left paddle that never moves."""
    return NOOP


def scripted_human(state: PongState, params: PongParams) -> int:
    """The env's own scripted opponent (it chases the ball with an aiming error), at the person's paddle speed."""
    return flicker_pong.scripted_opponent_action(state, params)


class KeyboardHuman:
    """The person at the keyboard: held keys -> action through the game's ``KEYS_TO_ACTION`` (W/S, Up/Down).

    Args:
        keys_to_action: pygame key names -> action.
        get_pressed: returns the key state indexed by pygame key code (default ``pygame.key.get_pressed``;
            tests pass a fake). Read after the window has processed its events for the frame.
    """

    def __init__(
        self,
        keys_to_action: Mapping[tuple[str, ...], int] = FlickerPongEnv.KEYS_TO_ACTION,
        get_pressed: Callable[[], Any] | None = None,
    ):
        from envs.games.window import key_code

        self.keys_to_action = dict(keys_to_action)
        self.code_names = {key_code(name): name for combo in self.keys_to_action for name in combo}
        self.get_pressed = get_pressed or import_pygame().key.get_pressed

    def __call__(self, state: PongState, params: PongParams) -> int:
        pressed = self.get_pressed()
        held = {name for code, name in self.code_names.items() if pressed[code]}
        return action_from_keys(held, self.keys_to_action, NOOP)


def make_human(name: str) -> Human:
    """``"keyboard"``, ``"scripted"`` or ``"idle"`` -> the left paddle's player."""
    if name == "keyboard":
        return KeyboardHuman()
    if name == "scripted":
        return scripted_human
    if name == "idle":
        return idle_human
    raise VersusError(f"--human must be one of {HUMANS}, got {name!r}.")


def parse_flicker(value: str | float) -> str | float:
    """``"agent"`` or a probability in [0, 1] (``"none"`` is 0)."""
    if value == AGENT_FLICKER:
        return AGENT_FLICKER
    if value == "none":
        return 0.0
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = float("nan")
    if not 0.0 <= p <= 1.0:
        raise VersusError(f"--flicker must be 'agent', 'none' or a probability in [0, 1], got {value!r}.")
    return p


# --------------------------------------------------------------------------- env
class DuelSeat:
    """Two-player FlickerPong (``PongDuelEnv``) as the single-agent env ``versus`` plays: the agent is the duel's
    ``right`` agent, whose observation, reward and episode end ``reset``/``step`` return, and the person is
    its ``left`` agent, whose action ``set_opponent_action`` sets. ``state`` is the court with the agent's
    flicker (what ``--flicker agent`` shows the person).
    """

    obs_mode = "vector"
    AGENT, PERSON = "right", "left"

    def __init__(self, duel: PongDuelEnv):
        self.duel = duel
        self.params = duel.params
        self.metadata = duel.metadata
        self.observation_space = duel.observation_space(self.AGENT)
        self.action_space = duel.action_space(self.AGENT)
        self._person_action = NOOP

    @property
    def unwrapped(self) -> DuelSeat:
        return self

    @property
    def state(self) -> PongState | None:
        game = self.duel.game
        return None if game is None else dataclasses.replace(game.court, visible=game.visible[1])

    def set_opponent_action(self, action: int) -> None:
        self._person_action = int(action)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, infos = self.duel.reset(seed=seed)
        return obs[self.AGENT], infos[self.AGENT]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, rewards, terms, truncs, infos = self.duel.step({self.AGENT: int(action), self.PERSON: self._person_action})
        a = self.AGENT
        return obs[a], rewards[a], terms[a], truncs[a], infos[a]

    def close(self) -> None:
        self.duel.close()


def _is_duel(env_id: str, env_import: tuple[str, ...] | list[str] = ()) -> bool:
    """Whether ``env_id`` is a multi-agent id whose env is two-player FlickerPong (``PongDuelEnv``)."""
    if not is_multiagent(env_id):
        return False
    try:
        env = make_parallel_env(env_id, {}, env_import)
    except ConfigError:
        return False
    env.close()
    from envs.multiagent.pong_duel import PongDuelEnv  # pettingzoo is there: make_parallel_env needed it

    return isinstance(env, PongDuelEnv)


def check_versus_env(env_id: str, env_import: tuple[str, ...] | list[str] = ()) -> None:
    """Raise VersusError unless ``env_id`` is a FlickerPong env (single-agent or the duel)."""
    import envs  # noqa: F401  (registers the built-in ids)

    try:
        import_env_modules(env_import)
    except (ModuleNotFoundError, ConfigError) as exc:
        raise VersusError(f"{exc} (the run was trained with it: its env {env_id!r} is registered there)") from exc
    supported = ", ".join(SUPPORTED_ENV_IDS)
    if is_multiagent(env_id):
        if _is_duel(env_id, env_import):
            return
        raise VersusError(f"The run was trained on the multi-agent env {env_id!r}; versus play needs a two-paddle "
                          f"game the person can join, and supports {supported}.")
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise VersusError(f"The run was trained on {env_id!r}, which is not registered ({exc}); "
                          f"versus play supports {supported}.") from exc
    entry = spec.entry_point
    try:
        creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    except (ImportError, AttributeError, ValueError):
        creator = None
    if not (isinstance(creator, type) and issubclass(creator, FlickerPongEnv)):
        raise VersusError(f"The run was trained on {env_id!r}; versus play needs a two-paddle game the person "
                          f"can join, and supports {supported} (FlickerPongEnv). Train one with "
                          "`python train.py --env-id mnemo/FlickerPong-v0`.")


def make_versus_env(env_id: str, env_kwargs: dict | None = None,
                    env_import: tuple[str, ...] | list[str] = ()) -> gym.Env | DuelSeat:
    """The env the agent was trained on, with the left paddle taken over from outside.

    ``gym.make(env_id, **env_kwargs, opponent="external")``: the same wrappers (time
    limit) and the same observation arguments as in training; only who moves the
    left paddle changes. For the duel, the run's env with both sides agents (``scripted`` dropped), the
    agent on the right (``DuelSeat``).
    """
    kwargs = dict(env_kwargs or {})
    kwargs.pop("render_mode", None)  # frames are drawn here, from the state
    if is_multiagent(env_id):
        kwargs.pop("scripted", None)  # the person takes the side a scripted paddle would have played
        return DuelSeat(make_parallel_env(env_id, kwargs, env_import))
    return gym.make(env_id, **{**kwargs, "opponent": "external"})


def _result_banner(result: MatchResult) -> tuple[str, str]:
    score = f"you {result.human_points} - {result.agent_points} agent"
    head = {"human": "You win!", "agent": "The agent wins", "draw": "Draw"}[result.winner]
    return head, score + (" (time up)" if result.truncated else "")


# --------------------------------------------------------------------------- play
def versus(
    path: str | Path,
    matches: int = 1,
    deterministic: bool = True,
    seed: int = 0,
    fps: float | None = None,
    flicker: str | float = 0.0,
    human: str | Human | None = None,
    record: str | Path | None = None,
    which: str = LATEST,
    pause: float = 1.0,
    log: Callable[[str], None] = print,
    sink: FrameSink | None = None,
    on_step: Callable[[Any, int, int], None] | None = None,
) -> VersusResult:
    """Play ``matches`` matches of FlickerPong: a person (left paddle) against the agent at ``path`` (right).

    Args:
        path: a run directory (its ``checkpoints/<which>``) or a checkpoint file, trained on FlickerPong.
        matches: matches to play (each to the env's ``points_to_win``, or its time limit).
        deterministic: the agent takes its most likely action (else it samples, seeded by ``seed``).
        seed: seeds the first reset, the agent's sampling and the person's flicker.
        fps: steps per second of the window and the recording (default: the env's ``render_fps``, 30).
        flicker: what the person sees: 0 the whole court (the agent's blank frames are marked "agent
            blind"), a probability p of the person's own blank frames, or ``"agent"`` for the agent's
            blank frames. Never changes what the agent sees.
        human: ``"keyboard"``, ``"scripted"``, ``"idle"`` or a callable ``(state, params) -> action``
            (default: the keyboard in a window, the scripted paddle when recording).
        record: write a .gif or .mp4 here instead of opening a window (needs a non-keyboard ``human``).
        which: checkpoint file name inside a run directory.
        pause: seconds of "get ready" before and of the result after each match.
        log: receives the result lines.
        sink: where frames go (overrides ``record``; for tests and embedding).
        on_step: called before every step with (the agent's observation, its action, the person's action).

    Returns:
        The finished matches' scores, the number of frames drawn, whether the person quit.
    """
    if matches < 1:
        raise VersusError(f"--matches must be at least 1, got {matches}.")
    if fps is not None and not fps > 0:
        raise VersusError(f"--fps must be positive, got {fps}.")
    if pause < 0:
        raise VersusError(f"pause must be >= 0 seconds, got {pause}.")
    flicker = parse_flicker(flicker)
    if human is None:
        human = "scripted" if record is not None or sink is not None else "keyboard"
    player = make_human(human) if isinstance(human, str) else human
    keyboard = isinstance(player, KeyboardHuman)
    if keyboard and record is not None:
        raise VersusError("--record writes a file without opening a window, so nobody can play with the keyboard; "
                          "use --human scripted or --human idle for a recorded demo.")
    name = human if isinstance(human, str) else getattr(human, "__name__", type(human).__name__)
    hint = "W/S or Up/Down, Esc quits" if keyboard else f"left paddle: {name}"

    runner = PolicyRunner.load(path, which=which, deterministic=deterministic, seed=seed)
    config = runner.config
    assert config is not None
    env_id = config.env.env_id
    check_versus_env(env_id, config.env.env_import)
    env = make_versus_env(env_id, config.env.env_kwargs, config.env.env_import)
    result = VersusResult()
    try:
        if env.observation_space != runner.observation_space or env.action_space != runner.action_space:
            raise VersusError(f"{env_id} with env_kwargs {config.env.env_kwargs} has observation space "
                              f"{env.observation_space} and action space {env.action_space}, but the policy was "
                              f"trained on {runner.observation_space} and {runner.action_space}; was the env "
                              "changed since training?")
        game: FlickerPongEnv | DuelSeat = env.unwrapped  # type: ignore[assignment]
        params = game.params
        fps = float(fps or env.metadata.get("render_fps") or 30)
        if sink is None:
            sink = _open_sink(record, fps, env_id, keyboard)
        screen = VersusScreen(params)
        # The duel's agent acts under its name, which a policy with an agent-index input reads its slot from.
        agent_id = DuelSeat.AGENT if isinstance(game, DuelSeat) else None
        view_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        hold = round(pause * fps)
        mode = "deterministic" if deterministic else "stochastic"
        you = "you, W/S or Up/Down; Esc quits" if keyboard else name
        log(f"Left paddle (orange): {you}. Right paddle (green): the agent, {env_id} "
            f"(flicker_p {params.flicker_p}, {game.obs_mode} observations, {mode}).")

        def frame(state: PongState, title: str, banner: tuple[str, str] | None = None) -> bool:
            """Draw what the person sees and show it; False when the person quit."""
            if banner is not None:  # the court in full under "get ready" and the result
                image = screen.draw(state, True, title, hint, banner)
            elif flicker == AGENT_FLICKER:
                image = screen.draw(state, False, title, hint)
            elif view_rng.random() < flicker:  # the person's own blank frame
                image = screen.draw(dataclasses.replace(state, visible=False), False, title, hint)
            else:
                image = screen.draw(state, True, title, hint)
            result.frames += 1
            return sink.add(image, title)

        def hold_frame(state: PongState, title: str, banner: tuple[str, str]) -> bool:
            return all(frame(state, title, banner) for _ in range(hold))

        try:
            for match in range(1, matches + 1):
                title = f"match {match} of {matches}"
                obs, _ = env.reset(seed=seed if match == 1 else None)
                if not runner.carry_across_episodes:  # carry mode: the memory runs on across matches, as trained
                    runner.reset()
                state = game.state
                assert state is not None
                if not hold_frame(state, title, (f"Match {match} of {matches}", "get ready")):
                    result.quit = True
                    break
                steps, terminated, truncated = 0, False, False
                while not (terminated or truncated):
                    if not frame(state, title):
                        result.quit = True
                        break
                    human_action = int(player(state, params))  # after the window read this frame's events
                    agent_action = int(runner.act(obs, agent_ids=agent_id))
                    if on_step is not None:
                        on_step(obs, agent_action, human_action)
                    game.set_opponent_action(human_action)
                    obs, _, terminated, truncated, _ = env.step(agent_action)
                    state = game.state
                    steps += 1
                if not result.quit and not frame(state, title):  # the final score, also without a pause
                    result.quit = True
                if result.quit:
                    log(f"match {match}: left at you {state.opponent_score} - {state.agent_score} agent "
                        f"after {steps} steps")
                    break
                done = MatchResult(state.opponent_score, state.agent_score, steps, truncated and not terminated)
                result.matches.append(done)
                winner = {"human": "you win", "agent": "the agent wins", "draw": "draw"}[done.winner]
                end = ", time up" if done.truncated else ""
                log(f"match {match}: you {done.human_points} - {done.agent_points} agent, {winner} "
                    f"({steps} steps{end})")
                if not hold_frame(state, title, _result_banner(done)) and match < matches:
                    result.quit = True
                    break
        finally:
            sink.close()
        if result.matches:
            won = sum(m.winner == "human" for m in result.matches)
            lost = sum(m.winner == "agent" for m in result.matches)
            points = (sum(m.human_points for m in result.matches), sum(m.agent_points for m in result.matches))
            log(f"you won {won}, the agent won {lost} of {len(result.matches)} matches "
                f"(points: you {points[0]}, agent {points[1]})")
        if record is not None:
            log(f"wrote {result.frames} frames to {record}")
        return result
    finally:
        env.close()


_DEMO_HINT = "for a headless demo, record a scripted left paddle: --record match.gif --human scripted."


def _open_sink(record: str | Path | None, fps: float, env_id: str, keyboard: bool) -> FrameSink:
    """A file, or a window; a window nobody can see is an error when a person is meant to play in it."""
    if record is not None:
        try:
            return FileSink(record, fps)
        except WatchError as exc:
            raise VersusError(str(exc)) from exc
    try:
        sink = WindowSink(fps, f"mnemo versus: {env_id}")
    except WatchError as exc:
        raise VersusError(f"{exc} Playing needs a display; {_DEMO_HINT}") from exc
    driver = invisible_video_driver() if keyboard else None
    if driver is not None:
        sink.close()
        raise VersusError(f"No display: SDL's video driver is {driver!r}, so the window would be invisible and "
                          f"nobody could play. Run where a display is available (DISPLAY / WAYLAND_DISPLAY set), "
                          f"or, {_DEMO_HINT}")
    return sink


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mnemo versus",
        description="Play FlickerPong against a trained agent: you on the left paddle (W/S or Up/Down), "
                    "the LSTM agent on the right. Esc or Q quits, Space pauses.")
    parser.add_argument("path", help="Run directory trained on mnemo/FlickerPong-v0, mnemo/FlickerPongPixels-v0 or "
                                     "mnemo/FlickerPongDuel-v0 (uses checkpoints/latest.pt), or a checkpoint file.")
    parser.add_argument("--matches", type=int, default=1, help="Matches to play (default: 1).")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--deterministic", dest="deterministic", action="store_true", default=True,
                       help="The agent takes its most likely action (default).")
    group.add_argument("--stochastic", dest="deterministic", action="store_false",
                       help="The agent samples its actions from the policy (seeded by --seed).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the first serve, of the agent's sampling and "
                                                            "of your flicker (default: 0).")
    parser.add_argument("--fps", type=float, default=None, help="Steps per second (default: the env's render_fps).")
    parser.add_argument("--flicker", default="0", metavar="P|agent",
                        help="What you see: 0 the whole court (default; frames the agent gets blank are marked "
                             "'agent blind'), a probability P of your own blank frames, or 'agent' for exactly "
                             "the agent's blank frames. The agent's view never changes.")
    parser.add_argument("--human", choices=HUMANS, default=None,
                        help="Who plays the left paddle: keyboard (default), or scripted / idle for a demo "
                             "(default with --record: scripted).")
    parser.add_argument("--record", metavar="FILE", default=None,
                        help="Write a .gif or .mp4 of a scripted match instead of opening a window (headless).")
    parser.add_argument("--which", default=LATEST, help="Checkpoint in a run directory: latest.pt or best.pt.")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="Seconds of 'get ready' before and of the result after each match (default: 1).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        versus(args.path, matches=args.matches, deterministic=args.deterministic, seed=args.seed, fps=args.fps,
               flicker=args.flicker, human=args.human, record=args.record, which=args.which, pause=args.pause)
    except (CheckpointError, VersusError, WatchError, PygameMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            import_pygame().quit()
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
