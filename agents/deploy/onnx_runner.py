"""OnnxRunner: ``PolicyRunner``'s game-loop API over an ONNX export, with numpy and onnxruntime only (no torch).

```python
from agents.deploy.onnx_runner import OnnxRunner

runner = OnnxRunner("tmaze.onnx")                      # written by mnemo export --format onnx
obs, _ = env.reset(seed=0)
runner.reset()                                         # new episode
action = runner.act(obs)                               # keeps its own recurrent state

actions = runner.act(batch_obs, agent_ids=[3, 7, 9])   # many agents, one state per id
runner.reset(agent_ids=[7])                            # agent 7 starts a new episode
runner.remove([9])                                     # agent 9 left the game
runner.act(obs, agent_ids=("red", 2))                  # a tuple is ONE id, e.g. (team, slot)
```

The same ids, join / leave, reset and ``act`` arguments as ``agents.deploy.runner.PolicyRunner`` (see
``agents/deploy/agent_ids.py`` for what an id is), and the same memory rule: an agent's first ``act()`` after it
joined or was ``reset()`` runs from the zero state. The runner zeroes the state on the host and also feeds
``episode_start = 1`` for that step, so the graph's own reset (reset mode) agrees; in carry mode the graph
ignores ``episode_start`` and the host zeroing alone starts a new series. Sampled actions come from a
numpy generator (Gumbel-max for categoricals), so they are not the torch runner's draws; greedy actions,
values, log-probabilities and states equal ``PolicyRunner``'s to float rounding.

A masked env's export (docs/action_masks.md) reads ``obs["action_mask"]`` from the observation as the env gives
it, so greedy and sampled actions are legal with no extra argument.

As ``PolicyRunner``: an export with an ``agent_index`` input (``--agent-index-input``) takes each agent's slot
from its name among the agents its metadata lists; an export of a central-critic policy has no ``value`` output,
so ``ActInfo.value`` is NaN.

Importing this module loads numpy only; onnxruntime is imported when a runner is made.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.deploy.agent_ids import (
    SINGLE_AGENT_ID,
    ActInfo,
    UnknownAgentError,
    as_id_list,
    check_distinct,
    check_hashable,
    is_id_batch,
)
from agents.deploy.numpy_actions import mask_logits, numpy_actions


class OnnxRuntimeMissingError(ImportError):
    """onnxruntime is needed to run an ONNX export and cannot be imported."""


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxRuntimeMissingError(
            "OnnxRunner needs onnxruntime: pip install onnxruntime (or the export extra: "
            "pip install -e \".[export]\"); PolicyRunner runs the checkpoint with torch instead.") from exc
    return onnxruntime


class OnnxRunner:
    """Stateful inference for an ONNX export: observation in, action out, memory kept per agent.

    Args:
        path: the ``.onnx`` file written by ``mnemo export`` (its ``mnemo`` metadata is read).
        deterministic: default for ``act``: the most likely action (True) or a sampled one (False).
        seed: seeds the numpy generator that sampled actions are drawn from (None: a random seed).
        threads: onnxruntime intra-op threads (1 is fastest for small recurrent nets).

    Raises:
        OnnxRuntimeMissingError: onnxruntime is not installed.
        ValueError: the file has no ``mnemo`` metadata.
    """

    def __init__(self, path: str | Path, deterministic: bool = True, seed: int | None = None, threads: int = 1):
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        custom = self.session.get_modelmeta().custom_metadata_map
        if "mnemo" not in custom:
            raise ValueError(f"{path} has no 'mnemo' metadata; export it with mnemo export.")
        self.metadata: dict[str, Any] = json.loads(custom["mnemo"])
        self.deterministic = deterministic
        self.rng = np.random.default_rng(seed)
        meta = self.metadata
        # The observation's leaves, a masked env's action_mask among them (fed from the observation as given).
        self._obs_inputs = [i for i in meta["inputs"] if i["role"] in ("obs", "action_mask")]
        self._mask_input = meta["action_mask"]["input"] if "action_mask" in meta else None
        self._state_inputs = [i for i in meta["inputs"] if i["role"] == "state"]
        index_inputs = [i for i in meta["inputs"] if i["role"] == "agent_index"]
        # --agent-index-input: each agent's slot, looked up by its name.
        self._agent_slots = ({name: k for k, name in enumerate(index_inputs[0]["agents"])} if index_inputs
                             else None)
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._actions = numpy_actions(meta["action_kind"])  # the kind's numpy math (agents/deploy/numpy_actions.py)
        # One agent's state (S, L, H): the state inputs (h, c, h_critic, c_critic; each (L, B, H); or stack,
        # (K, B, F)) stacked, as named in the metadata.
        self._state_shape = tuple(int(d) for d in meta["state_shape"])
        self._states: dict[Hashable, np.ndarray] = {}
        self._fresh: set[Hashable] = set()  # agents whose next act() is an episode start

    @classmethod
    def load(cls, path: str | Path, deterministic: bool = True, seed: int | None = None,
             threads: int = 1) -> OnnxRunner:
        """A runner for an ``.onnx`` file (``PolicyRunner.load``'s counterpart)."""
        return cls(path, deterministic=deterministic, seed=seed, threads=threads)

    # ------------------------------------------------------------------ agents
    @property
    def agent_ids(self) -> tuple[Hashable, ...]:
        """The ids of the agents the runner keeps a state for, in the order they joined."""
        return tuple(self._states)

    @property
    def carry_across_episodes(self) -> bool:
        """True when the policy was trained to keep its memory across episode ends."""
        return not self.metadata["reset_on_episode_start"]

    def reset(self, agent_ids: Hashable | Iterable[Hashable] | None = None) -> None:
        """Start a new episode: the next ``act()`` runs from the zero state. Unknown ids are skipped.

        Args:
            agent_ids: one id (a tuple is one id), a list / range / array of ids, or None for every agent.
        """
        ids = list(self._states) if agent_ids is None else [i for i in as_id_list(agent_ids) if i in self._states]
        for agent_id in ids:
            self._states[agent_id][...] = 0.0
            self._fresh.add(agent_id)

    def remove(self, agent_ids: Hashable | Iterable[Hashable] | None = None) -> None:
        """Forget agents (they left the game); an id that comes back later starts fresh. None removes all."""
        ids = list(self._states) if agent_ids is None else as_id_list(agent_ids)
        self._check_known(ids, "remove")
        for agent_id in ids:
            del self._states[agent_id]
            self._fresh.discard(agent_id)

    def get_state(self, agent_id: Hashable = SINGLE_AGENT_ID) -> np.ndarray:
        """A copy of one agent's recurrent state ``(S, L, H)``, laid out as ``PolicyRunner.get_state``'s."""
        self._check_known([agent_id], "get_state")
        return self._states[agent_id].copy()

    def set_state(self, agent_id: Hashable, state: np.ndarray) -> None:
        """Overwrite one agent's recurrent state ``(S, L, H)``; an unknown id joins with this state."""
        state = np.asarray(state, dtype=np.float32)
        if state.shape != self._state_shape:
            raise ValueError(f"set_state: expected a state of shape (S, L, H) = {self._state_shape}, "
                             f"got {state.shape}.")
        if agent_id not in self._states:
            self._join(agent_id)
        self._states[agent_id][...] = state
        self._fresh.discard(agent_id)

    # ------------------------------------------------------------------ acting
    def act(
        self,
        obs: Any,
        agent_ids: Hashable | Sequence[Hashable] | np.ndarray | None = None,
        deterministic: bool | None = None,
        return_info: bool = False,
    ) -> Any:
        """Actions for one or many agents; advances each agent's recurrent state by one step.

        Args:
            obs: without ``agent_ids`` (or with a single id): ONE observation in the env's format. With a
                list / range / array of ids: a batch (every leaf has a leading dim of ``len(agent_ids)``), or
                a list of single observations.
            agent_ids: None (agent ``SINGLE_AGENT_ID``), one hashable id, or distinct ids, one per observation.
                A new id joins with a fresh state.
            deterministic: the most likely action (True) or a sampled one; None uses the runner's default.
            return_info: also return an ``ActInfo`` (value estimate, log-probability, episode start).

        Returns:
            The action in the env's format, or a batch of them with a leading dim ``B``; with ``return_info``
            a tuple ``(action, ActInfo)``.

        Raises:
            ValueError: an observation of the wrong shape, a batch whose size differs from the number of
                ids, or duplicate ids.
        """
        single = not is_id_batch(agent_ids)
        if single:
            ids = [SINGLE_AGENT_ID if agent_ids is None else agent_ids]
            check_hashable(ids[0])
        else:
            ids = as_id_list(agent_ids)
            check_distinct(ids)
        feed = {spec["name"]: self._leaf(obs, spec, None if single else len(ids)) for spec in self._obs_inputs}
        if self._agent_slots is not None:
            feed["agent_index"] = self._agent_index(ids)
        for agent_id in ids:
            if agent_id not in self._states:
                self._join(agent_id)
        # Each state input is (L, B, H): one agent's (S, L, H) array gives views, several are stacked.
        states = self._states[ids[0]][:, :, None] if single else np.stack([self._states[i] for i in ids], axis=2)
        for s, spec in enumerate(self._state_inputs):
            feed[spec["name"]] = states[s]
        starts = np.array([i in self._fresh for i in ids]) if self._fresh else np.zeros(len(ids), dtype=bool)
        feed["episode_start"] = starts.astype(np.float32)
        out = dict(zip(self._output_names, self.session.run(None, feed), strict=True))
        for s, spec in enumerate(self._state_inputs):
            new = out[spec["name"] + "_out"]
            for b, agent_id in enumerate(ids):
                self._states[agent_id][s] = new[:, b]
        if self._fresh:
            self._fresh.difference_update(ids)

        det = self.deterministic if deterministic is None else deterministic
        raw = out[self.metadata["action_output"]]
        if self._mask_input is not None:
            # The graph masked the logits already; masking on the host too keeps a draw legal whatever the
            # graph (numpy_actions.mask_logits, idempotent).
            raw = mask_logits(raw, feed[self._mask_input])
        if det:
            action, sample = out["action"], None
        else:
            sample = self._actions.sample(raw, self.metadata, self.rng)
            action = self._actions.to_env(sample, self.metadata)
        if not return_info:
            return action[0] if single else action
        taken = self._actions.greedy(raw, self.metadata) if sample is None else sample
        logprob = self._actions.log_prob(raw, taken, self.metadata)
        value = out.get("value")  # absent from a central-critic policy's export
        if value is None:
            value = np.full(len(ids), np.nan, dtype=np.float32)
        if single:
            return action[0], ActInfo(float(value[0]), float(logprob[0]), bool(starts[0]))
        return action, ActInfo(value, logprob, starts)

    __call__ = act

    # ------------------------------------------------------------------ internals
    def _agent_index(self, ids: list[Hashable]) -> np.ndarray:
        """The agents' slots (B,) int64 among the export's agents, from their names."""
        slots = [self._agent_slots.get(str(i)) for i in ids]
        if None in slots:
            bad = ids[slots.index(None)]
            raise UnknownAgentError(f"agent id {bad!r} is not an agent of this run ({', '.join(self._agent_slots)}); "
                                    f"a policy with an agent-index input takes the names in the env's "
                                    f"possible_agents (with --policy-map, those of its own agents).")
        return np.asarray(slots, dtype=np.int64)

    def _join(self, agent_id: Hashable) -> None:
        check_hashable(agent_id)
        self._states[agent_id] = np.zeros(self._state_shape, dtype=np.float32)
        self._fresh.add(agent_id)

    def _check_known(self, ids: list[Hashable], what: str) -> None:
        unknown = [i for i in ids if i not in self._states]
        if unknown:
            known = ", ".join(repr(i) for i in self._states) or "none"
            raise UnknownAgentError(
                f"{what}: unknown agent id(s) {', '.join(repr(i) for i in unknown)}; known ids: {known}. "
                f"An agent becomes known at its first act().")

    def _leaf(self, obs: Any, spec: dict, batch: int | None) -> np.ndarray:
        """One observation input ``(B, *leaf shape)`` from an observation tree (or a list of them)."""

        def pick(tree: Any) -> Any:
            for key in spec["path"]:
                tree = tree[key]
            return tree

        if batch is not None and isinstance(obs, list):
            if len(obs) != batch:
                raise ValueError(f"observation: got {batch} agent_ids but a list of {len(obs)} observations; "
                                 f"expected one observation per id.")
            x = np.stack([np.asarray(pick(o), dtype=spec["dtype"]) for o in obs])
        else:
            x = np.asarray(pick(obs), dtype=spec["dtype"])
        expected = tuple(1 if batch is None and d is None else batch if d is None else d for d in spec["shape"])
        if batch is None and x.shape == expected[1:]:
            x = x[None]
        if x.shape != expected:
            want = expected[1:] if batch is None else expected
            hint = " It looks like a batch: pass agent_ids=[...] with one id per row." if (
                batch is None and x.shape[1:] == expected[1:]) else ""
            raise ValueError(f"{spec['name']}: expected shape {want}, got {x.shape}.{hint}")
        return x
