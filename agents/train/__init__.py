"""Training: the loop (``trainer.py``), the PPO loss and update, schedules, evaluation and the command line.

``python train.py`` and ``mnemo train`` both run ``agents.train.cli.main``.
"""
