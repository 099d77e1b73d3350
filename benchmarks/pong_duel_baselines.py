"""Baselines of two-player Flicker Pong (mnemo/FlickerPongDuel-v0), the table in docs/multiagent_games.md.

    python -m benchmarks.pong_duel_baselines --games 400             # the bots against each other
    python -m benchmarks.pong_duel_baselines --run runs/duel         # also a run: against itself, the bots

For each pairing: the points the first player won (fraction, 95% Wilson interval), the games it won, the mean
game length in steps, and each side's return rate (returns / (returns + points conceded): the fraction of
balls reaching a paddle that it sent back). Bot and run pairings are played by ``mnemo match``'s
``play_match``, sides alternating, game g seeded g. Scripted against scripted is not a match (the env plays
one scripted side): it is played here on flicker_pong's simulation, the left paddle scripted by
``step_state`` and the right by ``scripted_opponent_action`` on the mirrored court at ``opponent_speed``,
with its own aiming error, drawn from a second generator whenever the ball turns towards it (the
simulation's stream stays the env's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from agents.deploy.match import Player, load_player, play_match, wilson_interval
from envs.games import flicker_pong
from envs.multiagent import grid
from envs.multiagent.pong_duel import make_env

DUEL = "mnemo/FlickerPongDuel-v0"


def pairing(a: Player, b: Player, games: int) -> dict:
    """``play_match`` of ``a`` and ``b``: A's points fraction and games won, the mean game length."""
    stats, _ = play_match(a, b, games, seed=0, env_id=None if (a.runner or b.runner) else DUEL)
    s = stats.summary()
    return {"points_fraction": s["points_fraction"], "points_ci95": s["points_ci95"],
            "games_won": s["wins"] / s["games"], "mean_steps": s["mean_steps"], "games": s["games"]}


def return_rates(player: Player, opponent: str | None, games: int, seed: int = 0) -> dict:
    """Returns and points conceded of ``player`` as both sides (against itself when ``opponent`` is None,
    else against ``random``), from the env's ``hit`` infos: the fraction of balls it sent back."""
    rng = np.random.default_rng(seed)
    env = make_env(**(player.runner.config.env.env_kwargs if player.runner else {}))
    hits = conceded = 0
    for g in range(games):
        if player.runner is not None:
            player.runner.remove()
        obs, _ = env.reset(seed=seed + g)
        mine = "left" if g % 2 == 0 else "right"
        infos: dict = {}
        while env.agents:
            actions = {}
            for agent in env.agents:
                if agent == mine or opponent is None:
                    if player.runner is not None:
                        actions[agent] = int(player.runner.act(obs[agent], agent_ids=agent))
                    else:
                        actions[agent] = int(rng.integers(3))
                else:
                    actions[agent] = int(rng.integers(3))
            obs, _, _, _, infos = env.step(actions)
            hits += infos[mine]["hit"]
        other = "right" if mine == "left" else "left"
        conceded += infos[mine]["score"][other]
    return {"return_rate": hits / max(hits + conceded, 1), "hits": hits, "conceded": conceded}


def scripted_vs_scripted(games: int) -> dict:
    """Both paddles the single-agent env's scripted one, on flicker_pong's simulation (module docstring)."""
    params = flicker_pong.PongParams()
    slow = dataclasses.replace(params, paddle_speed=params.opponent_speed)
    left_points = right_points = steps = hits = 0
    for g in range(games):
        rng, aim_rng = grid.make_rng(g), np.random.default_rng(g)
        court = flicker_pong.reset_state(rng, params)
        right_aim = (2.0 * aim_rng.random() - 1.0) * params.opponent_error
        for _ in range(1500):  # the env's max_steps
            steps += 1
            view = dataclasses.replace(flicker_pong.mirror(court), opponent_aim=right_aim)
            right = flicker_pong.scripted_opponent_action(view, params)
            after, _, over = flicker_pong.step_state(court, right, rng, slow)
            if after.ball_vx > 0 and not court.ball_vx > 0:  # a return by the left, or a serve to the right
                right_aim = (2.0 * aim_rng.random() - 1.0) * params.opponent_error
            hits += (court.ball_vx > 0 > after.ball_vx) and after.agent_score == court.agent_score and (
                after.opponent_score == court.opponent_score)
            court = after
            if over:
                break
        left_points, right_points = left_points + court.opponent_score, right_points + court.agent_score
    total = left_points + right_points
    return {"points_fraction": left_points / total, "points_ci95": list(wilson_interval(left_points, total)),
            "mean_steps": steps / games, "games": games, "right_return_rate": hits / max(hits + left_points, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=400)
    parser.add_argument("--run", default=None, help="A run trained on the duel, to measure beside the bots.")
    args = parser.parse_args()
    out = {
        "scripted vs random": pairing(load_player("scripted"), load_player("random"), args.games),
        "random vs random": pairing(load_player("random"), load_player("random"), args.games),
        "scripted vs scripted": scripted_vs_scripted(args.games),
        "random return rate vs random": return_rates(load_player("random"), "random", args.games // 4),
    }
    if args.run:
        out["run vs scripted"] = pairing(load_player(args.run), load_player("scripted"), args.games)
        out["run vs random"] = pairing(load_player(args.run), load_player("random"), args.games)
        out["run return rate, self-play"] = return_rates(load_player(args.run), None, args.games // 4)
        out["run return rate vs random"] = return_rates(load_player(args.run), "random", args.games // 4)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
