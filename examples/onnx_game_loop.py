"""Play a game with an exported mnemo policy using only numpy and onnxruntime (no torch).

```
python train.py --env-id mnemo/TMaze-v0 --total-steps 100000 --run-dir runs/tmaze
python -m agents.export runs/tmaze --format onnx --out tmaze.onnx
python examples/onnx_game_loop.py tmaze.onnx --env-id mnemo/TMaze-v0 --episodes 5
```

``OnnxPolicy`` is the part to copy into your own game: it reads the metadata that
``agents.export`` stores in the file, keeps the recurrent state of ``num_agents`` agents, and
follows the training rule for episode starts: after ``reset()`` it feeds ``episode_start = 1``
so the graph zeroes the state before it reads the first observation (reset mode). For a policy
trained in carry mode the graph ignores ``episode_start``; ``reset()`` then zeroes the state on
the host (a new series of episodes), as ``agents.PolicyRunner.reset`` does.

This file imports neither torch nor anything from ``agents``.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


class OnnxPolicy:
    """Stateful inference for an ONNX export: ``act(obs) -> action``, ``reset()`` for a new episode.

    Args:
        path: the ``.onnx`` file written by ``python -m agents.export``.
        num_agents: agents acted for together; with 1, ``act`` takes and returns single items.
        seed: seeds the numpy generator for sampled actions.
        threads: onnxruntime intra-op threads (1 is fastest for small recurrent nets).
    """

    def __init__(self, path: str | Path, num_agents: int = 1, seed: int | None = None, threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        custom = self.session.get_modelmeta().custom_metadata_map
        if "mnemo" not in custom:
            raise ValueError(f"{path} has no 'mnemo' metadata; export it with python -m agents.export.")
        self.meta: dict[str, Any] = json.loads(custom["mnemo"])
        self.num_agents = num_agents
        self.rng = np.random.default_rng(seed)
        self.obs_inputs = [i for i in self.meta["inputs"] if i["role"] == "obs"]
        self.state_inputs = [i for i in self.meta["inputs"] if i["role"] == "state"]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.kind = self.meta["action_kind"]
        self.last_value: np.ndarray | None = None
        self.state = {i["name"]: np.zeros(self._state_dims(i), dtype=np.float32) for i in self.state_inputs}
        self.episode_start = np.ones(num_agents, dtype=np.float32)

    def _state_dims(self, spec: dict) -> tuple[int, ...]:
        return tuple(self.num_agents if d is None else d for d in spec["shape"])

    def reset(self, index: int | None = None) -> None:
        """Begin a new episode for every agent, or for agent ``index``."""
        rows = slice(None) if index is None else index
        self.episode_start[rows] = 1.0
        if not self.meta["reset_on_episode_start"]:  # carry mode: the graph keeps memory; clear it here
            for state in self.state.values():
                state[:, rows] = 0.0

    def act(self, obs: Any, deterministic: bool = True) -> Any:
        """Action(s) in the env's format for one observation (``num_agents == 1``) or a batch; advances the state."""
        single = self.num_agents == 1
        feed = {spec["name"]: self._leaf(obs, spec, single) for spec in self.obs_inputs}
        feed.update(self.state)
        feed["episode_start"] = self.episode_start
        out = dict(zip(self.output_names, self.session.run(None, feed), strict=True))
        for spec in self.state_inputs:
            self.state[spec["name"]] = out[spec["name"] + "_out"]
        self.episode_start = np.zeros(self.num_agents, dtype=np.float32)
        self.last_value = out["value"]
        action = out["action"] if deterministic else self._sample(out[self.meta["action_output"]])
        return action[0] if single else action

    def _leaf(self, obs: Any, spec: dict, single: bool) -> np.ndarray:
        for key in spec["path"]:
            obs = obs[key]
        x = np.asarray(obs, dtype=spec["dtype"])
        expected = tuple(self.num_agents if d is None else d for d in spec["shape"])
        if single and x.shape == expected[1:]:
            x = x[None]
        if x.shape != expected:
            raise ValueError(f"{spec['name']}: expected shape {expected[1:] if single else expected}, got {x.shape}.")
        return x

    def _sample(self, raw: np.ndarray) -> np.ndarray:
        """Draw actions from the exported distribution (the torch policy's sampling, with numpy's generator)."""
        meta = self.meta
        if self.kind == "categorical":
            return _sample_categorical(raw, self.rng) + meta["action_start"]
        if self.kind == "multi_categorical":
            bounds = np.cumsum([0, *meta["nvec"]])
            return np.stack([_sample_categorical(raw[:, a:b], self.rng)
                             for a, b in itertools.pairwise(bounds)], axis=1)
        shape = tuple(meta["outputs"][1]["shape"][1:])
        if self.kind == "gaussian":
            std = np.exp(np.asarray(meta["log_std"], dtype=np.float32))
            action = raw + std * self.rng.standard_normal(raw.shape).astype(np.float32)
            action = np.clip(action, meta["action_low"], meta["action_high"]).astype(np.float32)
            return action.reshape(-1, *shape)
        probs = 1.0 / (1.0 + np.exp(-raw))  # bernoulli
        return (self.rng.random(raw.shape) < probs).astype(np.int8).reshape(-1, *shape)


def _sample_categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits)."""
    u = np.clip(rng.random(logits.shape), 1e-20, 1.0)
    return np.argmax(logits - np.log(-np.log(u)), axis=-1)


def play(policy: OnnxPolicy, env: Any, episodes: int, seed: int = 0, deterministic: bool = True) -> list[float]:
    """The game loop: returns of ``episodes`` episodes of a single-agent Gymnasium env."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        policy.reset()
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs, deterministic))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an .onnx file written by python -m agents.export")
    parser.add_argument("--env-id", default="mnemo/TMaze-v0")
    parser.add_argument("--env-import", default="envs", help="module that registers the env id ('' for none)")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", action="store_true", help="sample actions instead of the greedy ones")
    args = parser.parse_args(argv)

    import gymnasium as gym

    if args.env_import:
        root = str(Path(__file__).resolve().parents[1])  # the repository, for the built-in envs package
        if root not in sys.path:
            sys.path.append(root)
        importlib.import_module(args.env_import)
    policy = OnnxPolicy(args.model, seed=args.seed)
    env = gym.make(args.env_id)
    try:
        returns = play(policy, env, args.episodes, seed=args.seed, deterministic=not args.sample)
    finally:
        env.close()
    print(f"{args.env_id}: {len(returns)} episodes, mean return {np.mean(returns):.3f} "
          f"({policy.meta['core']}, {policy.meta['mode']} mode)")
    for i, r in enumerate(returns):
        print(f"  episode {i}: return {r:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
