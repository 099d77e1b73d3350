"""Partially observable games and memory tasks, registered with Gymnasium.

Importing this package registers every env under the ``mnemo/`` namespace::

    import gymnasium as gym
    import envs  # noqa: F401  (registers the ids)

    env = gym.make("mnemo/TMaze-v0")

Entry points are strings, so registering costs nothing until an env is made
and pygame is imported only by the games that draw.
"""

from gymnasium.envs.registration import register, registry

NAMESPACE = "mnemo"


def namespaced_id(env_id: str) -> str | None:
    """The ``mnemo/`` id that a bare name means (``TMazeLong-v0`` or ``TMazeLong`` -> ``mnemo/TMazeLong-v0``),
    single-agent or multi-agent (``FogTeam-v0`` -> ``mnemo/FogTeam-v0``).

    None when ``env_id`` has a namespace or no ``mnemo/`` id has that name. Error messages suggest it
    before Gymnasium's close-name guess, which only knows ids without a namespace (and would offer the
    fully observed ``Pendulum`` for ``PendulumNoVel-v1``).
    """
    from envs.multiagent import MULTIAGENT_ENVS  # the multi-agent ids (not Gymnasium-registered)

    if "/" in env_id:
        return None
    exact = f"{NAMESPACE}/{env_id}"
    known = [*registry, *MULTIAGENT_ENVS]
    if exact in known:
        return exact
    versions = sorted(i for i in known if i.startswith(f"{exact}-v"))
    return versions[-1] if versions else None


def _register(name: str, entry_point: str, **kwargs) -> None:
    env_id = f"{NAMESPACE}/{name}"
    # Re-importing (e.g. under importlib.reload) must not warn about re-registration.
    if env_id not in registry:
        register(id=env_id, entry_point=entry_point, **kwargs)


# Classic control with velocities hidden (envs/wrappers.py).
_register("CartPoleNoVel-v1", "envs.wrappers:make_cartpole_no_velocity", max_episode_steps=500)
_register("PendulumNoVel-v1", "envs.wrappers:make_pendulum_no_velocity", max_episode_steps=200)
_register("AcrobotNoVel-v1", "envs.wrappers:make_acrobot_no_velocity", max_episode_steps=500)
_register("MountainCarNoVel-v0", "envs.wrappers:make_mountaincar_no_velocity", max_episode_steps=200)
_register("CartPoleFlicker-v1", "envs.wrappers:make_cartpole_flicker", max_episode_steps=500, kwargs={"p": 0.5})

# Memory tasks (envs/memory/, one module each).
_register("TMaze-v0", "envs.memory.tmaze:TMazeEnv", max_episode_steps=50, kwargs={"corridor_length": 10})
_register("TMazeLong-v0", "envs.memory.tmaze:TMazeEnv", max_episode_steps=500, kwargs={"corridor_length": 100})
_register("GatedMemory-v0", "envs.memory.gated_memory:GatedMemoryEnv")
_register("CountRecall-v0", "envs.memory.count_recall:CountRecallEnv")

# Partially observable pygame games (envs/games/); the Pixels ids observe a small uint8 image.
_register("FlickerPong-v0", "envs.games.flicker_pong:FlickerPongEnv", max_episode_steps=1500)
_register(
    "FlickerPongPixels-v0",
    "envs.games.flicker_pong:FlickerPongEnv",
    max_episode_steps=1500,
    kwargs={"obs_mode": "pixels"},
)
_register("FogMaze-v0", "envs.games.fog_maze:FogMazeEnv", max_episode_steps=100)
# The maze's cue stays one frame, unlike DarkCatchPixels' ball: with two, the two cue-guided moves can bring the
# treasure's corner into the 5x5 view and a memoryless agent learns to walk there (docs/results.md).
_register("FogMazePixels-v0", "envs.games.fog_maze:FogMazeEnv", max_episode_steps=100, kwargs={"obs_mode": "pixels"})
_register("DarkCatch-v0", "envs.games.dark_catch:DarkCatchEnv", max_episode_steps=200)
# The pixel id shows each ball in two frames, not one: with one, the CNN learnt to see the ball late or not at
# all (seed 1 at 438k of 500k, seeds 2 and 3 not in 500k; never before its orthogonal initialisation;
# docs/results.md).
_register(
    "DarkCatchPixels-v0",
    "envs.games.dark_catch:DarkCatchEnv",
    max_episode_steps=200,
    kwargs={"obs_mode": "pixels", "visible_steps": 2},
)
