"""Play a mnemo game with the keyboard in a window.

    python -m envs.play mnemo/FlickerPong-v0
    python -m envs.play mnemo/FogMaze-v0 --agent-view   # see only what the agent sees

Arrow keys or WASD move; Esc (or closing the window) quits. Each finished
episode's return is printed. Real-time games step at the game's ``render_fps``
with the no-op while no key is held; turn-based games (``TURN_BASED = True``)
step once per key press. A game takes part by defining ``KEYS_TO_ACTION``
(pygame key names -> action), ``NOOP_ACTION`` and ``TURN_BASED``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Mapping, Sequence

import gymnasium as gym

import envs  # (registers the mnemo/ ids)
from envs.games.window import PygameMissingError


class PlayError(RuntimeError):
    """The env cannot be played with the keyboard here (unknown id, no keys, no display)."""


def action_from_keys(
    held: Collection[str], keys_to_action: Mapping[tuple[str, ...], int], noop: int | None
) -> int | None:
    """The action for the set of held key names: the longest combination fully held wins.

    Returns:
        The action, or ``noop`` when no combination is held. Two combinations
        of the same length mapping to different actions (e.g. up and down held
        together) cancel out to ``noop``.
    """
    best: set[int] = set()
    best_len = 0
    for combo, action in keys_to_action.items():
        if all(key in held for key in combo):
            if len(combo) > best_len:
                best, best_len = {action}, len(combo)
            elif len(combo) == best_len:
                best.add(action)
    return best.pop() if len(best) == 1 else noop


_GAMES = "mnemo/FlickerPong-v0, mnemo/FogMaze-v0, mnemo/DarkCatch-v0"


def play(
    env_id: str, agent_view: bool = False, seed: int | None = None, episodes: int = 0, require_display: bool = False
) -> list[float]:
    """Open ``env_id`` in a window and play it until Esc (or ``episodes`` episodes, if > 0).

    Args:
        require_display: raise PlayError when SDL's video driver draws nowhere (no display), instead of
            waiting for keys in a window nobody sees; the command line sets it (tests run SDL's dummy driver).

    Returns:
        The return of each finished episode.

    Raises:
        PlayError: unknown id, an env without ``KEYS_TO_ACTION``, or (``require_display``) no display.
    """
    from envs.games.window import import_pygame, invisible_video_driver, key_code

    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        built_in = envs.namespaced_id(env_id)
        fix = f"did you mean {built_in}?" if built_in else f"the keyboard games are {_GAMES}"
        raise PlayError(f"{env_id} is not registered ({exc}); {fix}") from exc
    # Only the games know render_reveal; other envs fail below for want of KEYS_TO_ACTION.
    env = gym.make(env_id, render_mode="human", **({"render_reveal": False} if agent_view else {}))
    game = env.unwrapped
    keys_to_action = getattr(game, "KEYS_TO_ACTION", None)
    if keys_to_action is None:
        env.close()
        raise PlayError(f"{env_id} has no KEYS_TO_ACTION, so it cannot be played with the keyboard; "
                        f"the keyboard games are {_GAMES}.")
    noop = game.NOOP_ACTION
    turn_based = game.TURN_BASED
    if not turn_based and noop is None:
        env.close()
        raise PlayError(f"{env_id} is real-time but has no NOOP_ACTION: give the game one (the action "
                        "taken while no key is held).")

    pygame = import_pygame()
    if require_display:
        try:
            driver = invisible_video_driver()
        except pygame.error as exc:
            env.close()
            raise PlayError(f"Cannot open a window ({exc}); playing needs a display.") from exc
        if driver is not None:
            env.close()
            raise PlayError(f"No display: SDL's video driver is {driver!r}, so the window would be invisible and "
                            "nobody could play. Run where a display is available (DISPLAY / WAYLAND_DISPLAY set).")
    code_names = {key_code(name): name for combo in keys_to_action for name in combo}
    print(f"{env_id}: keys {sorted(code_names.values())}, Esc quits")
    returns: list[float] = []
    env.reset(seed=seed)
    episode_return, steps = 0.0, 0
    clock = pygame.time.Clock()
    try:
        while episodes <= 0 or len(returns) < episodes:
            action = noop
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    return returns
                if turn_based and event.type == pygame.KEYDOWN and event.key in code_names:
                    action = action_from_keys({code_names[event.key]}, keys_to_action, None)
            if not turn_based:
                pressed = pygame.key.get_pressed()
                held = {name for code, name in code_names.items() if pressed[code]}
                action = action_from_keys(held, keys_to_action, noop)
            if action is None:  # turn-based and no move this frame: keep the window responsive
                clock.tick(30)
                continue
            _, reward, terminated, truncated, _ = env.step(action)  # human mode renders and ticks
            episode_return += float(reward)
            steps += 1
            if terminated or truncated:
                returns.append(episode_return)
                end = "truncated" if truncated and not terminated else "over"
                print(f"episode {len(returns)} {end}: return {episode_return:+.2f} in {steps} steps")
                pygame.time.wait(800)
                env.reset()
                episode_return, steps = 0.0, 0
        return returns
    finally:
        env.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mnemo play", description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", help="e.g. mnemo/FlickerPong-v0, mnemo/FogMaze-v0, mnemo/DarkCatch-v0")
    parser.add_argument(
        "--agent-view", action="store_true", help="draw only what the agent observes (blank frames, fog, dark)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the first episode")
    parser.add_argument("--episodes", type=int, default=0, help="stop after this many episodes (0: until Esc)")
    args = parser.parse_args(argv)
    try:
        play(args.env_id, agent_view=args.agent_view, seed=args.seed, episodes=args.episodes, require_display=True)
    except (PlayError, PygameMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
