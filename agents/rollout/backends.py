"""The collector backends that ``--backend`` names, and ``make_collector``, which picks one.

Each backend's module is imported only when it is asked for, so that Ray stays an optional extra.
"""

from __future__ import annotations

from agents.config import TrainConfig
from agents.rollout.collector import Collector, local_collector


def make_collector(config: TrainConfig) -> Collector:
    """The ``CollectorFactory`` that ``--backend`` names: ``local_collector``, or Ray actors
    (``agents.rollout.ray_collector``, imported only then)."""
    if config.run.backend == "ray":
        from agents.rollout.ray_collector import ray_collector

        return ray_collector(config)
    return local_collector(config)
