"""Export a trained policy to ONNX or TorchScript: one step, with the recurrent state in and out explicitly.

```
mnemo export runs/tmaze --format onnx --out tmaze.onnx
mnemo export runs/tmaze --format torchscript --out tmaze.torchscript.pt
```

The exported graph is ONE policy step for a batch of B agents (B is a dynamic axis).

Inputs, in this order:

- ``obs`` (B, *shape): one input per leaf of a Dict / Tuple space, named ``obs.<key>`` /
  ``obs.<index>``; the leaf space's dtype (Discrete: int64, MultiBinary: int8).
- the core's state tensors (``agents/model/cores.py``): ``h``, ``c`` (LSTM) or ``h`` (GRU), each
  (L, B, H) float32; ``stack`` (K, B, F) for the frame stack (``stack_len`` K and ``features`` F in the metadata);
  none for core ``none``.
- ``h_critic``, ``c_critic`` (L, B, H): only with a separate critic core (not a central one, below).
- ``episode_start`` (B,) float32: 1.0 where ``obs`` is the first observation of an episode.
- ``agent_index`` (B,) int64: only for a policy trained with ``--agent-index-input``: each agent's slot among the
  env's ``possible_agents``, or for a named policy (``--policy-map``) among its own agents (listed in the
  metadata's ``multiagent.agents``); the one-hot is built in the graph.

A masked env's ``observation["action_mask"]`` (docs/action_masks.md) is the observation input named
``action_mask`` (role ``action_mask``, path ``["action_mask"]``, in the observation's place among the leaves):
the graph sets illegal logits to -1e8 before the ``logits`` output and the greedy ``action``, so both, and any
draw from the logits, are legal. The metadata's ``action_mask`` gives ``{"input", "sizes"}`` (the per-dimension
sizes of the mask's parts).

Outputs, in this order:

- ``logits`` (B, num_outputs): categorical logits (MultiDiscrete: the parts' logits
  concatenated) or Bernoulli logits (MultiBinary); ``mean`` for a Box action space (Gaussian
  mean; ``log_std`` is in the metadata).
- ``action`` (B, *action shape): the greedy action in the env's format (Discrete start added,
  Box clipped to the bounds, MultiBinary int8).
- ``value`` (B,): the critic's V(obs); absent for a policy trained with ``--central-critic``, whose critic reads
  the env's global state: that export is the actor alone (its state inputs are the actor core's).
- ``h_out``, ``c_out`` (and ``h_critic_out``, ``c_critic_out``; ``stack_out``): feed them back next step.

Every leaf space the policy accepts (Box vectors and uint8 images, Discrete, MultiDiscrete,
MultiBinary, nested in Dict / Tuple) exports; the preprocessing (one-hot, scaling, observation
normalisation) is inside the graph, so a game feeds raw observations.

Reset rule: in reset mode the graph zeroes the incoming state where ``episode_start`` is 1, before it
processes ``obs`` -- the rule training used. In carry mode the graph ignores ``episode_start``
(the input stays, so the signature does not depend on the mode); zero the state yourself to start
a new series of episodes. Stacking ``(h, c, h_critic, c_critic)`` gives the ``(S, L, B, W)`` state
tensor of ``agents.model.policy``.

Metadata (ONNX ``metadata_props["mnemo"]``, TorchScript extra file ``mnemo.json``) is one JSON
object: the spaces (``agents.spaces.space_to_json``), inputs and outputs with roles, shapes and
dtypes, the core and its sizes (its ``export_metadata``: an LSTM / GRU's ``num_layers`` and
``hidden_size``, a stack's ``stack_len`` and ``features``), the action kind, and ``reset_on_episode_start``.
A multi-agent run's export (one policy shared by every agent, over one agent's spaces) adds ``multiagent``:
``{"env_id", "agents", "num_agents"}`` (the env's ``possible_agents``; see docs/runtime.md, "Many agents");
``central_critic: true`` says that the critic (and ``value``) was left out.

``agents.deploy.export_check`` runs an export beside the torch policy (the command line does after writing).

The ONNX file is written by torch's TorchScript-based exporter (``dynamo=False``, opset 17): it
needs no extra packages and turns ``nn.LSTM`` / ``nn.GRU`` into ONNX LSTM / GRU ops.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.model.cores import passes_through
from agents.model.policy import RecurrentActorCritic
from agents.spaces import ACTION_MASK_KEY, space_to_json, with_a_legal_action
from agents.trees import Tree, tree_get, tree_stack

METADATA_KEY = "mnemo"
TORCHSCRIPT_EXTRA_FILE = "mnemo.json"
FORMAT = "mnemo-policy"
VERSION = 1
DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """The policy cannot be exported, or the export does not reproduce the torch policy."""


# --------------------------------------------------------------------------- observation leaves
def observation_leaves(space: spaces.Space, name: str = "obs",
                       path: tuple = ()) -> list[tuple[str, tuple, spaces.Space]]:
    """The exported observation inputs: (input name, path into the observation tree, leaf space)."""
    if isinstance(space, spaces.Dict):
        return [leaf for key, sub in space.spaces.items()
                for leaf in observation_leaves(sub, f"{name}.{key}", (*path, key))]
    if isinstance(space, spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces)
                for leaf in observation_leaves(sub, f"{name}.{i}", (*path, i))]
    return [(name, path, space)]


def leaf_dtype(space: spaces.Space) -> np.dtype:
    """The numpy dtype an exported observation input takes."""
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int64)
    if isinstance(space, spaces.MultiBinary):
        return np.dtype(np.int8)
    return np.dtype(space.dtype)


def _build_tree(space: spaces.Space, leaves: list[torch.Tensor]) -> Tree:
    """Inverse of ``observation_leaves``: consume leaves (in order) into a tree shaped like ``space``."""
    if isinstance(space, spaces.Dict):
        return {key: _build_tree(sub, leaves) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_build_tree(sub, leaves) for sub in space.spaces)
    return leaves.pop(0)


# --------------------------------------------------------------------------- the exported step
class PolicyStep(nn.Module):
    """One policy step with explicit state: ``forward(*obs_leaves, *states, episode_start)``.

    Returns ``(logits_or_mean, action, value, *new_states)``; see the module docstring for shapes.
    It uses the policy's own modules, so the exported weights are the trained ones.
    """

    def __init__(self, policy: RecurrentActorCritic):
        super().__init__()
        self.policy = policy
        # A masked env's mask leaf is the input "action_mask".
        self.leaves = [(ACTION_MASK_KEY if policy.masked and path == (ACTION_MASK_KEY,) else name, path, space)
                       for name, path, space in observation_leaves(policy.observation_space)]
        self.reset_on_episode_start = not policy.config.carry_across_episodes
        # A central critic reads the env's global state, which a game does not give: the export is the actor's.
        self.actor_only = policy.central_critic
        self.index_input = policy.config.agent_index_input
        cores = [policy.actor_core] if self.actor_only else policy.cores
        self.cores = [core for core in cores if not passes_through(core)]
        # The action head's constants (Box bounds) as buffers of this module: the graph names them "low", "high".
        buffers = policy.action_head.export_buffers()
        self.head_buffers = list(buffers)
        for name, value in buffers.items():
            self.register_buffer(name, value)

    # names, in forward's order
    @property
    def state_names(self) -> list[str]:
        names = []
        for suffix, core in zip(("", "_critic"), self.cores, strict=False):
            names += [f"{name}{suffix}" for name in core.state_names]
        return names

    @property
    def input_names(self) -> list[str]:
        index = ["agent_index"] if self.index_input else []
        return [name for name, _, _ in self.leaves] + self.state_names + ["episode_start"] + index

    @property
    def head_output_names(self) -> list[str]:
        """The outputs with a batch dim first: the action distribution, the greedy action, the value."""
        return [self.policy.action_head.output_name, "action"] + ([] if self.actor_only else ["value"])

    @property
    def output_names(self) -> list[str]:
        return self.head_output_names + [f"{n}_out" for n in self.state_names]

    def example_inputs(self, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Valid inputs (random observations from the space, random states, mixed episode starts)."""
        device = next(self.policy.parameters()).device
        space = copy.deepcopy(self.policy.observation_space)  # seeding the policy's own space would be a side effect
        space.seed(seed)
        obs = legal_example_masks(self.policy, tree_stack([space.sample() for _ in range(batch)]), seed)
        leaves = [torch.as_tensor(np.asarray(tree_get(obs, path), dtype=leaf_dtype(s)), device=device)
                  for _, path, s in self.leaves]
        gen = torch.Generator().manual_seed(seed)
        _, layers, hidden = self.policy.state_shape
        states = [torch.randn(layers, batch, hidden, generator=gen).to(device) for _ in self.state_names]
        episode_start = (torch.arange(batch) % 2 == 0).float().to(device)
        index = [(torch.arange(batch) % len(self.policy.agents)).to(device)] if self.index_input else []
        return (*leaves, *states, episode_start, *index)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        policy = self.policy
        n_obs = len(self.leaves)
        obs = _build_tree(policy.observation_space, list(inputs[:n_obs]))
        if self.index_input:
            agent_inputs, inputs = {"agent_index": inputs[-1]}, inputs[:-1]
        else:
            agent_inputs = None
        states, episode_start = inputs[n_obs:-1], inputs[-1]
        features = policy.encode(obs, agent_inputs)  # (B, F)
        x = features.unsqueeze(0)  # (T=1, B, F)
        keep = (1.0 - episode_start.to(x.dtype)).view(1, -1, 1)
        outputs, new_states, i = [], [], 0
        for core in self.cores:
            n = core.num_state_tensors
            out, core_states = core.export_step(x, states[i:i + n], keep if self.reset_on_episode_start else None)
            i += n
            new_states += core_states
            outputs.append(out)
        actor_hidden = outputs[0] if outputs else features
        raw = policy.action_head.linear(policy.actor_mlp(actor_hidden))
        legal = policy.legal_actions(obs)
        if legal is not None:
            raw = policy.action_head.mask_output(raw, legal)
        buffers = {name: getattr(self, name) for name in self.head_buffers}
        if self.actor_only:
            return (raw, policy.action_head.export_action(raw, buffers), *new_states)
        critic_hidden = outputs[1] if len(outputs) > 1 else actor_hidden
        # The value before the action: the traced graph's node order, and so an export's bytes, stay as they were.
        value = policy.value_head(policy.critic_mlp(critic_hidden))[:, 0]
        action = policy.action_head.export_action(raw, buffers)
        return (raw, action, value, *new_states)


def legal_example_masks(policy: RecurrentActorCritic, obs: Tree, seed: int) -> Tree:
    """Sampled example observations (B, ...) whose action masks (a masked policy's) leave every dimension a legal
    action, as an env's must; other observations as they are."""
    if not policy.masked:
        return obs
    mask = with_a_legal_action(obs[ACTION_MASK_KEY], policy.action_mask_sizes, np.random.default_rng(seed))
    return {**obs, ACTION_MASK_KEY: mask}


def export_metadata(step: PolicyStep, multiagent: dict | None = None) -> dict:
    """The JSON metadata stored with an export (see the module docstring); ``multiagent`` is stored as given."""
    policy = step.policy
    head = policy.action_head
    state_shape = policy.actor_state_shape if step.actor_only else policy.state_shape
    _, layers, hidden = state_shape
    inputs = [{"name": name, "role": "action_mask" if name == ACTION_MASK_KEY and policy.masked else "obs",
               "path": list(path), "shape": [None, *leaf.shape], "dtype": str(leaf_dtype(leaf))}
              for name, path, leaf in step.leaves]
    inputs += [{"name": n, "role": "state", "shape": [layers, None, hidden], "dtype": "float32"}
               for n in step.state_names]
    inputs.append({"name": "episode_start", "role": "episode_start", "shape": [None], "dtype": "float32"})
    if step.index_input:
        inputs.append({"name": "agent_index", "role": "agent_index", "shape": [None], "dtype": "int64",
                       "agents": list(policy.agents)})
    first = step.output_names[0]
    outputs = [
        {"name": first, "role": "action_distribution", "shape": [None, head.num_outputs], "dtype": "float32"},
        {"name": "action", "role": "greedy_action", "shape": [None, *head.action_shape], "dtype": head.export_dtype},
    ]
    if not step.actor_only:
        outputs.append({"name": "value", "role": "value", "shape": [None], "dtype": "float32"})
    outputs += [{"name": f"{n}_out", "role": "state", "state_input": n, "shape": [layers, None, hidden],
                 "dtype": "float32"} for n in step.state_names]
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "observation_space": space_to_json(policy.observation_space),
        "action_space": space_to_json(policy.action_space),
        "inputs": inputs,
        "outputs": outputs,
        "core": policy.config.core,
        **policy.actor_core.export_metadata(),  # its sizes under their own names (an LSTM's layers and units)
        "separate_critic": policy.critic_core is not None and not step.actor_only,
        "state_inputs": step.state_names,
        "state_shape": list(state_shape),
        "reset_on_episode_start": step.reset_on_episode_start,
        "mode": "reset" if step.reset_on_episode_start else "carry",
        "action_kind": head.kind,
        "action_output": first,
        **head.export_metadata(),
    }
    if policy.masked:
        meta["action_mask"] = {"input": ACTION_MASK_KEY, "sizes": list(policy.action_mask_sizes)}
    if step.actor_only:
        meta["central_critic"] = True  # the critic read env.state(): left out, with its value output
    if multiagent is not None:
        meta["multiagent"] = multiagent
    return meta


def _prepare(policy: RecurrentActorCritic) -> PolicyStep:
    was_training = policy.training
    policy.eval()
    if was_training:
        warnings.warn("export: the policy was in training mode; exporting it in eval mode.", stacklevel=3)
    return PolicyStep(policy).eval()


def _import_onnx() -> Any:
    """The ``onnx`` package (the optional ``export`` extra), or an ExportError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx package, which is not installed: `pip install onnx "
                          "onnxruntime` (or `pip install -e \".[export]\"` in a checkout). --format torchscript "
                          "needs nothing extra.") from exc
    return onnx


def export_onnx(policy: RecurrentActorCritic, path: str | Path, opset: int = DEFAULT_OPSET,
                multiagent: dict | None = None) -> dict:
    """Write the policy step to ``path`` as ONNX (dynamic batch axis, metadata attached); returns the metadata.

    ``multiagent`` (a multi-agent run's ``{"env_id", "agents", "num_agents"}``) goes into the metadata.
    """
    onnx = _import_onnx()

    step = _prepare(policy)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {name: {0: "batch"} for name, _, _ in step.leaves}
    dynamic_axes.update({name: {1: "batch"} for name in step.state_names})
    dynamic_axes["episode_start"] = {0: "batch"}
    if step.index_input:
        dynamic_axes["agent_index"] = {0: "batch"}
    dynamic_axes.update({name: {0: "batch"} for name in step.head_output_names})
    dynamic_axes.update({f"{name}_out": {1: "batch"} for name in step.state_names})
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter warns that LSTMs exported with batch > 1 need a fixed sequence length;
        # our sequence length is always 1, and the batch axis is declared dynamic.
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(step, step.example_inputs(), str(path), input_names=step.input_names,
                          output_names=step.output_names, dynamic_axes=dynamic_axes, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    meta = export_metadata(step, multiagent)
    model = onnx.load(str(path))
    graph_inputs = [i.name for i in model.graph.input]
    if graph_inputs != step.input_names:
        # The exporter drops inputs the graph does not read (episode_start in carry mode or without a
        # core); put them back so that the signature never depends on the mode.
        _restore_inputs(model, meta["inputs"])
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return meta


def _restore_inputs(model: Any, specs: list[dict]) -> None:
    from onnx import helper

    present = {i.name: i for i in model.graph.input}
    inputs = [present.get(spec["name"]) or helper.make_tensor_value_info(
        spec["name"], helper.np_dtype_to_tensor_dtype(np.dtype(spec["dtype"])),
        ["batch" if d is None else d for d in spec["shape"]]) for spec in specs]
    del model.graph.input[:]
    model.graph.input.extend(inputs)


def export_torchscript(policy: RecurrentActorCritic, path: str | Path, multiagent: dict | None = None) -> dict:
    """Write the policy step to ``path`` as a traced TorchScript module (metadata as ``mnemo.json``)."""
    step = _prepare(policy)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(step, step.example_inputs(), check_trace=False)
    meta = export_metadata(step, multiagent)
    traced.save(str(path), _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(meta)})
    return meta


def load_torchscript(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    """A TorchScript export and its metadata."""
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit is deprecated, still supported
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return module.eval(), json.loads(extra[TORCHSCRIPT_EXTRA_FILE])


def load_onnx_metadata(path: str | Path) -> dict:
    """The metadata of an ONNX export (needs the ``onnx`` package)."""
    onnx = _import_onnx()

    model = onnx.load(str(path), load_external_data=False)
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise ExportError(f"{path} has no {METADATA_KEY!r} metadata; was it written by mnemo export?")
