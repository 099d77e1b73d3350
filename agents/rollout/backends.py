"""``make_collector``: the ``CollectorFactory`` that ``--backend`` names in ``agents.registry.BACKENDS``.

Each backend's module is imported only when it is asked for, so that Ray stays an optional extra.
"""

from __future__ import annotations

from agents.config import TrainConfig
from agents.registry import BACKENDS
from agents.rollout.collector import Collector


def make_collector(config: TrainConfig) -> Collector:
    """The collector of the backend ``config.run.backend`` names (``local_collector``, or Ray actors from
    ``agents.rollout.ray_collector``, imported only then)."""
    return BACKENDS.load(config.run.backend)(config)
