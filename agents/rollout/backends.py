"""``make_collector``: the ``CollectorFactory`` that ``--backend`` names in ``agents.registry.BACKENDS``.

Each backend's module is imported only when it is asked for, so that Ray stays an optional extra.
"""

from __future__ import annotations

from agents.config import ConfigError, TrainConfig
from agents.registry import BACKENDS
from agents.rollout.collector import Collector
from agents.rollout.multiagent_collector import multiagent_collector, refuse_unsupported
from agents.rollout.multiagent_env import is_multiagent
from agents.rollout.self_play import self_play_collector


def make_collector(config: TrainConfig) -> Collector:
    """The collector of the backend ``config.run.backend`` names (``local_collector``, or Ray actors from
    ``agents.rollout.ray_collector``, imported only then); a multi-agent env id gets its agent slots as rows
    (``agents.rollout.multiagent_collector``), in this process or in the Ray actors; with --self-play
    ``agents.rollout.self_play``, in this process."""
    if is_multiagent(config.env.env_id):
        refuse_unsupported(config)
        if config.opponents.self_play:
            return self_play_collector(config)
        if config.run.backend == "local":
            return multiagent_collector(config)
        return BACKENDS.load(config.run.backend)(config)
    policy = config.policy
    for on, flag in ((policy.central_critic, "--central-critic"), (policy.agent_index_input, "--agent-index-input"),
                     (config.opponents.self_play, "--self-play")):
        if on:
            raise ConfigError(f"{flag} needs a multi-agent env (a MODULE:CALLABLE that returns a pettingzoo "
                              f"ParallelEnv, or a built-in such as mnemo/FogTeam-v0); {config.env.env_id} is a "
                              f"single-agent env, so drop {flag}.")
    return BACKENDS.load(config.run.backend)(config)
