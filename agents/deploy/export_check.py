"""Check an export against the torch policy: run both side by side over a rollout with episode starts inside.

``mnemo export`` runs :func:`compare_with_torch` after writing a file; use it for your own
checks with :func:`onnx_step_fn` (onnxruntime) or :func:`torchscript_step_fn`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.deploy.export import PolicyStep, leaf_dtype, legal_example_masks, load_torchscript
from agents.model.policy import RecurrentActorCritic
from agents.spaces import ACTION_MASK_KEY
from agents.trees import Tree, tree_get, tree_stack

StepFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def onnx_step_fn(path: str | Path) -> StepFn:
    """feed dict -> output dict, through onnxruntime (one thread, CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(None, feed), strict=True))


def torchscript_step_fn(path: str | Path) -> StepFn:
    """feed dict -> output dict, through the TorchScript module."""
    module, meta = load_torchscript(path)
    in_names = [i["name"] for i in meta["inputs"]]
    out_names = [o["name"] for o in meta["outputs"]]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outs = module(*[torch.from_numpy(np.ascontiguousarray(feed[n])) for n in in_names])
        return {n: o.numpy() for n, o in zip(out_names, outs, strict=True)}

    return run


def compare_with_torch(policy: RecurrentActorCritic, step_fn: StepFn, steps: int = 100, batch: int = 4,
                       seed: int = 0, reset_prob: float = 0.1) -> dict[str, float | bool]:
    """Run an export and the torch policy side by side over a rollout with episode starts inside.

    The export steps ``steps`` times, feeding its own state back; torch runs the same observations
    through the training path (``policy.forward_sequence``, one call over the whole rollout).

    Returns:
        ``max_abs_diff`` over distributions (log-probabilities for categoricals), values and the final
        state; ``actions_equal`` (greedy actions identical, within 1e-5 for Box); ``steps``, ``batch``.
    """
    step = PolicyStep(policy.eval())
    head = policy.action_head
    rng = np.random.default_rng(seed)
    space = copy.deepcopy(policy.observation_space)
    space.seed(seed)
    obs_seq = [legal_example_masks(policy, tree_stack([space.sample() for _ in range(batch)]), seed + t)
               for t in range(steps)]
    starts = (rng.random((steps, batch)) < reset_prob).astype(np.float32)
    starts[0] = 1.0
    _, layers, hidden = policy.state_shape
    state = {n: rng.standard_normal((layers, batch, hidden)).astype(np.float32) for n in step.state_names}
    # A policy with an agent-index input: every slot in turn (its one-hot is built in the export).
    agent_index = np.arange(batch, dtype=np.int64) % max(1, len(policy.agents))
    start_state = torch.as_tensor(np.stack([state[n] for n in step.state_names])) if step.state_names else \
        torch.zeros(0, layers, batch, hidden)

    got_dist, got_value, got_action = [], [], []
    for t in range(steps):
        feed = {name: np.asarray(tree_get(obs_seq[t], path), dtype=leaf_dtype(s)) for name, path, s in step.leaves}
        feed.update(state)
        feed["episode_start"] = starts[t]
        if step.index_input:
            feed["agent_index"] = agent_index
        out = step_fn(feed)
        got_dist.append(out[step.output_names[0]])
        if not step.actor_only:
            got_value.append(out["value"])
        got_action.append(out["action"])
        state = {n: out[f"{n}_out"] for n in step.state_names}

    device = next(policy.parameters()).device
    with torch.inference_mode():
        obs_t = _stack_time(obs_seq, space, device)
        # No global state: with a central critic this is the actor alone, as the export is.
        inputs = ({"agent_index": torch.as_tensor(np.tile(agent_index, (steps, 1)), device=device)}
                  if step.index_input else None)
        dist, value, final_state = policy.forward_sequence(
            obs_t, start_state.to(device), torch.as_tensor(starts, device=device), inputs)
        ref_action = head.to_env(head.shape_actions(dist.mode()))
    got, ref = head.normalise_export(np.concatenate(got_dist)), head.export_reference(dist)
    if policy.masked:
        # Illegal actions' log-probs are about -1e8 on both sides, where float32 steps by 8: compare the legal ones
        # (the illegal ones' probabilities are exactly 0 on both).
        legal = np.concatenate([obs[ACTION_MASK_KEY] for obs in obs_seq]).reshape(got.shape) != 0
        if not (np.exp(got[~legal]) == 0).all():
            return {"max_abs_diff": float("inf"), "actions_equal": False, "steps": steps, "batch": batch}
        got, ref = np.where(legal, got, 0.0), np.where(legal, ref, 0.0)
    diffs = [np.abs(got - ref).max()]
    if not step.actor_only:
        diffs.append(np.abs(np.stack(got_value) - value.cpu().numpy()).max())
    if step.state_names:
        diffs.append(np.abs(np.stack([state[n] for n in step.state_names]) - final_state.cpu().numpy()).max())
    actions_equal = head.same_actions(np.concatenate(got_action), ref_action)
    return {"max_abs_diff": float(max(diffs)), "actions_equal": actions_equal, "steps": steps, "batch": batch}


def _stack_time(obs_seq: list[Tree], space: spaces.Space, device: torch.device) -> Tree:
    """A list of T numpy batches (B, ...) -> tensors (T, B, ...) in the dtypes the policy takes."""
    stacked = tree_stack(obs_seq)

    def convert(x: Any, s: spaces.Space) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=leaf_dtype(s)), device=device)

    def walk(x: Any, s: spaces.Space) -> Any:
        if isinstance(s, spaces.Dict):
            return {k: walk(x[k], sub) for k, sub in s.spaces.items()}
        if isinstance(s, spaces.Tuple):
            return tuple(walk(x[i], sub) for i, sub in enumerate(s.spaces))
        return convert(x, s)

    return walk(stacked, space)
