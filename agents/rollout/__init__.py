"""Collecting experience: envs made and guarded, the policy stepped through them, rollouts stored.

A ``Collector`` (``collector.py``: local, ``ray_collector.py``: on a Ray cluster, picked in ``backends.py``)
returns ``Rollout``s (``buffer.py``) with the recurrent state before every step; ``env_state.py`` snapshots
the envs for exact resume.
"""
