"""Recurrent actor-critic agents (LSTM / GRU / memoryless) trained with PPO and truncated BPTT."""

from agents.config import ConfigError, TrainConfig
from agents.policy import RecurrentActorCritic
from agents.runner import PolicyRunner

__all__ = ["ConfigError", "PolicyRunner", "RecurrentActorCritic", "TrainConfig"]
