"""Multi-agent games on PettingZoo's Parallel API (the optional extra ``[multiagent]``).

``MULTIAGENT_ENVS`` maps each built-in id to the ``"module:callable"`` that makes its ``ParallelEnv``; the
trainer resolves an ``--env-id`` through it, or takes a user's own ``"my_pkg.my_game:make_env"`` directly.
Registering costs nothing: a game's module (and pettingzoo) is imported only when its env is made.
"""

MULTIAGENT_ENVS: dict[str, str] = {}
