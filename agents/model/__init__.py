"""The network: observation encoders -> memory core -> action head and value head (``policy.py``).

Nothing here knows about envs, rollouts or training; ``RecurrentActorCritic`` is built from a
``PolicyConfig`` and the two spaces.
"""
