"""Recurrent actor-critic agents (LSTM / GRU / memoryless) trained with PPO and truncated BPTT."""

from agents.config import ConfigError, TrainConfig
from agents.policy import RecurrentActorCritic

__all__ = ["ConfigError", "RecurrentActorCritic", "TrainConfig"]
