"""Multi-agent games on PettingZoo's Parallel API (the optional extra ``[multiagent]``).

``MULTIAGENT_ENVS`` maps each built-in id to the ``"module:callable"`` that makes its ``ParallelEnv``; the
trainer resolves an ``--env-id`` through it, or takes a user's own ``"my_pkg.my_game:make_env"`` directly.
Registering costs nothing: a game's module (and pettingzoo) is imported only when its env is made.

The built-in games (docs/multiagent_games.md) are one module each, with the layers of ``envs/games``: a plain
state, ``reset_state``/``step_state`` and ``observe``/``global_state`` in numpy (``grid.py`` holds what they
share), ``draw`` with pygame imported lazily, and scripted and random baseline policies. A competitive game
whose env can play a side itself with a scripted bot names the env arguments for it in
``scripted_env_kwargs(agents)``, which ``mnemo match`` reads for its ``scripted`` player (pong_duel.py); one
whose scripted bot acts from an observation alone defines ``scripted_player(agent, obs, rng) -> action``
instead, which ``mnemo match`` calls in the plain env (pairs.py, a turn-based game).
"""

MULTIAGENT_ENVS: dict[str, str] = {
    "mnemo/FogTeam-v0": "envs.multiagent.fog_team:make_env",
    "mnemo/StormHarvest-v0": "envs.multiagent.storm_harvest:make_env",
    "mnemo/FlickerPongDuel-v0": "envs.multiagent.pong_duel:make_env",
    "mnemo/Pairs-v0": "envs.multiagent.pairs:make_env",
}
