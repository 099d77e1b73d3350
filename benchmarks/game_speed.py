"""Single-env steps per second of the pygame games, vector and pixel observations.

Random actions (drawn up front, so the figure is the game's cost, not the
sampler's), resets included, no rendering. Each game is timed as the bare
class in vector mode, through ``gym.make`` in vector mode (which adds the
passive checker, order enforcing and the time limit), and as the bare class
with RGB and grayscale pixel observations.

    python benchmarks/game_speed.py --seconds 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: F401  (registers the ids)
from benchmarks.env_speed import steps_per_second
from envs.games import DarkCatchEnv, FlickerPongEnv, FogMazeEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()

    games: list[tuple[str, type[gym.Env], str]] = [
        ("FlickerPong", FlickerPongEnv, "mnemo/FlickerPong-v0"),
        ("FogMaze", FogMazeEnv, "mnemo/FogMaze-v0"),
        ("DarkCatch", DarkCatchEnv, "mnemo/DarkCatch-v0"),
    ]
    print(
        f"{'game':<13}{'vector':>11}{'vec make':>11}{'pixels':>11}{'gray':>11}{'  pixel shape':<16}"
        f"  (steps/s, {args.seconds:g} s each)"
    )
    for name, cls, env_id in games:
        vector = steps_per_second(cls, args.seconds)
        made = steps_per_second(lambda env_id=env_id: gym.make(env_id), args.seconds)
        pixels = steps_per_second(lambda cls=cls: cls(obs_mode="pixels"), args.seconds)
        gray = steps_per_second(lambda cls=cls: cls(obs_mode="pixels", grayscale=True), args.seconds)
        shape = cls(obs_mode="pixels").observation_space.shape
        print(f"{name:<13}{vector:>11,.0f}{made:>11,.0f}{pixels:>11,.0f}{gray:>11,.0f}  {shape!s:<14}")


if __name__ == "__main__":
    main()
