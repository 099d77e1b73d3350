"""Test setup: headless SDL and one torch thread (the machines running the suite have 2 cores)."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import torch

torch.set_num_threads(1)
