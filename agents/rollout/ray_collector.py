"""The Ray backend (``--backend ray``): rollout actors on this machine or a cluster, behind ``Collector``.

Each actor (``RolloutWorker``) owns E envs and a CPU copy of the policy, and wraps the local
``VectorCollector`` over its envs, so that it keeps their observations, episode starts and recurrent
states across rollouts exactly as the local backend does (reset and carry mode alike). The learner
(``RayCollector``) talks to W actors:

- weights: once per iteration, ``ray.put`` of the policy's state dict (obs-normaliser statistics
  included); every actor's ``collect`` gets the same object reference, so the weights are serialised
  once, not once per actor.
- fragments: each actor returns its rollout (T, E) as CPU tensors; the learner concatenates them along
  the env dim, so that worker w's env j is the run's env ``w * E + j``. The recurrent state's env dim is
  found from ``policy.initial_state`` (never hard-coded), so a core with another state layout still fits.
- seeding: worker w resets its envs with ``env_seed + w * E``, so env ``i`` gets ``env_seed + i`` as in
  the local vector env. Worker 0 samples actions from ``sample_seed`` (with W = 1 the run is bitwise the
  local run); worker w > 0 from a seed derived from (``sample_seed``, w).
- faults: an actor that dies, or sends nothing within ``--worker-timeout`` seconds, is killed and
  replaced: its envs are made afresh (new seeds, zero recurrent state, every episode starting), and it
  collects this iteration's fragment again; a warning names the worker. An env error inside an actor
  surfaces as the local backend's ``EnvError`` / ``NonFiniteError``; an actor that fails three times in
  one iteration stops the run with an ``EnvError`` naming it (the trainer saves a checkpoint first).
- resume: ``state_dict`` merges the actors' states into the local collector's layout (plus every
  worker's sampler state), so a checkpoint from either backend resumes on the other; with a different
  worker count (same --num-envs) the recurrent states carry over, every env restarts its episode and the
  samplers are seeded afresh, and the resume says so.
- multi-agent envs: an actor owns E env *copies* and wraps the local multi-agent collector over them
  (``MultiAgentCollector``, or ``MultiPolicyCollector`` with ``--policy-map``; a central critic's global state
  included), so every hidden-state rule is that collector's. The learner has R = N x S rows. A policy's
  rollout covers its block of rows, copy by copy, so the actors' rollouts of one policy concatenate into the
  local one; what is laid out over all R rows (recurrent state, episode starts, ``alive``, episode
  accumulators) is reordered by ``RowLayout``, which places each worker's rows of each policy block where the
  local ``MultiAgentVectorEnv`` has them.
- turn-based envs: each actor's collector credits and carries its rows' pending steps, so a fragment has T + 1
  steps and ``acting``, joined as the other tensors; the checkpoint's ``tensors["turns"]`` (each row's pending
  index, the carried steps with their row indices) is merged and split by ``RowLayout`` (``_merge_turns``), and
  the env snapshots' per-row ``waiting`` / ``started`` flags as ``alive``, so a resume is exact on either backend.

Ray is imported only here, and this module only when ``--backend ray`` asks for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch

from agents.config import ConfigError, TrainConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.buffer import _ROLLOUT_TENSORS, Rollout
from agents.rollout.collector import EnvError, NonFiniteError, VectorCollector
from agents.rollout.env_state import decode, encode
from agents.rollout.multiagent_collector import multiagent_collector
from agents.rollout.multiagent_env import SHARED_POLICY, PolicyRows, is_multiagent, make_multiagent_vector_env
from agents.rollout.previous_inputs import run_input_wrapper
from agents.rollout.vector_env import import_env_modules, make_vector_env

RAY_MISSING = '--backend ray needs Ray, which is not installed: pip install -e ".[ray]" (or pip install "ray>=2.30").'
MAX_RESTARTS_PER_ITERATION = 3
START_TIMEOUT = 120.0  # seconds an actor gets at least to start, resume or close
# The per-row flags of a ``MultiAgentVectorEnv.snapshot`` (lists over its R rows), placed by ``RowLayout``.
_ROW_FLAGS = ("alive", "waiting", "started")


class WorkerRestarted(UserWarning):
    """A Ray actor died or hung and was replaced; its envs restarted their episodes."""


def import_ray():
    """The ``ray`` module, or a ConfigError that says what to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc
    return ray


def ray_collector(config: TrainConfig) -> RayCollector:
    """The ``CollectorFactory`` of ``--backend ray``: joins ``--ray-address`` (or the Ray instance this process
    has initialised already), else starts a local Ray instance with one CPU per worker, owned by the collector."""
    ray = import_ray()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        address = config.run.ray_address
        workers, _ = config.worker_layout
        ray.init(address=address, num_cpus=workers if address is None else None, include_dashboard=False,
                 logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": worker_python_path()}})
    try:
        return RayCollector(config, ray, owns_ray)
    except BaseException:
        if owns_ray:
            ray.shutdown()
        raise


def worker_python_path() -> str:
    """PYTHONPATH for the actors: this package's folder, the working directory (``--env-import`` modules that
    sit next to the user), then the caller's PYTHONPATH. On a cluster, the other nodes need the same paths
    (or the package installed)."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [package_root, os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


class RolloutWorker:
    """A Ray actor's body: E envs (run-wide envs ``first_env .. first_env + E - 1``), a CPU policy copy, and the
    local ``VectorCollector`` over them; for a multi-agent env, E env copies and the local multi-agent collector
    over them (``multiagent_collector``), with a CPU copy of every policy. Runs with one torch thread.

    ``weights`` are a policy's state dict, or with ``--policy-map`` ``{policy name: state dict}``.
    """

    def __init__(self, config: dict, worker: int, envs_per_worker: int):
        torch.set_num_threads(1)
        cfg = TrainConfig.from_dict(config)
        env = cfg.env
        import_env_modules(env.env_import)
        first_env = worker * envs_per_worker
        self.named_policies = False
        if is_multiagent(env.env_id):
            self.collector = multiagent_collector(cfg, envs_per_worker)
            blocks = getattr(self.collector, "policy_rows", None)
            if blocks is None:
                self.policies = {SHARED_POLICY: RecurrentActorCritic(
                    self.collector.observation_space, self.collector.action_space, cfg.policy,
                    agents=self.collector.agent_names, state_space=self.collector.state_space)}
            else:
                self.named_policies = True
                self.policies = {block.name: RecurrentActorCritic(
                    block.observation_space, block.action_space, cfg.policy, agents=block.agents,
                    state_space=self.collector.state_space) for block in blocks}
            return
        envs = make_vector_env(env.env_id, envs_per_worker, env.env_kwargs, env.async_envs, env.env_import,
                               wrapper=run_input_wrapper(cfg.policy), first_index=first_env)
        self.collector = VectorCollector(envs, cfg.ppo.num_steps, cfg.run.on_nonfinite, cfg.ppo.noise_correlation,
                                         first_env=first_env)
        self.policies = {SHARED_POLICY: RecurrentActorCritic(self.collector.observation_space,
                                                             self.collector.action_space, cfg.policy)}

    def _load(self, weights: Mapping) -> None:
        if self.named_policies:
            for name, policy in self.policies.items():
                policy.load_state_dict(weights[name])
        else:
            self.policies[SHARED_POLICY].load_state_dict(weights)

    def start(self, weights: Mapping, sample_seed: int, env_seed: int) -> None:
        self._load(weights)
        policy = self.policies if self.named_policies else self.policies[SHARED_POLICY]
        self.collector.start(policy, torch.device("cpu"), sample_seed, env_seed)

    def collect(self, weights: Mapping) -> Rollout | dict[str, Rollout]:
        self._load(weights)
        return self.collector.collect()  # Ray serialises it on return: the buffer may be refilled afterwards

    def use_noise(self, correlation: float) -> None:
        self.collector.use_noise(correlation)

    def state_dict(self, snapshot_envs: bool) -> dict:
        return self.collector.state_dict(snapshot_envs)

    def load_state_dict(self, state: dict) -> str | None:
        return self.collector.load_state_dict(state)

    def close(self) -> None:
        self.collector.close()


class RayCollector:
    """The learner's side of the Ray backend (module docstring): W actors of E envs each, as one ``Collector``.

    Args:
        config: the run's config (``config.worker_layout`` gives W and E).
        ray: the ``ray`` module, initialised.
        owns_ray: shut Ray down on ``close`` (it was started for this run).
    """

    def __init__(self, config: TrainConfig, ray, owns_ray: bool):
        self.ray, self.owns_ray, self.config = ray, owns_ray, config
        self.num_workers, self.envs_per_worker = config.worker_layout
        self.num_envs = config.env.num_envs  # rows: envs, or with a multi-agent env agent slots (below)
        self.timeout = config.run.worker_timeout
        # Starting an actor imports torch and makes its envs: on a busy machine that alone can take a while.
        self.start_timeout = max(self.timeout, START_TIMEOUT)
        self.restarts = [0] * self.num_workers  # per worker, over the run
        self._closed = False
        self._config_dict = config.to_dict()
        # The spaces, and any bad env setting as the local backend reports it, before an actor starts.
        env = config.env
        import_env_modules(env.env_import)
        self.multiagent = is_multiagent(env.env_id)
        self.turn_based = False  # a turn-based multi-agent env: rollouts of T + 1 steps, carried pending steps
        self.per_policy = env.policy_map is not None
        if self.multiagent:
            self._probe_multiagent(config)
        else:
            probe = make_vector_env(env.env_id, 1, env.env_kwargs, False, env.env_import,
                                    wrapper=run_input_wrapper(config.policy))
            self.observation_space: gym.Space = probe.single_observation_space
            self.action_space: gym.Space = probe.single_action_space
            probe.close()
            self.layout = RowLayout((1,), self.num_workers, self.envs_per_worker)
        self._actor_class = ray.remote(RolloutWorker).options(num_cpus=1, max_restarts=0,
                                                              scheduling_strategy="SPREAD")
        self.workers = [self._spawn(w) for w in range(self.num_workers)]

    def _probe_multiagent(self, config: TrainConfig) -> None:
        """What the trainer reads off a multi-agent collector, for all N copies, from one copy made here: the rows
        R = N x S (``num_envs``), ``agent_names``, ``state_space``, the spaces, and with ``--policy-map`` each
        policy's block of rows (``policy_rows``, as the local collector's)."""
        env = config.env
        probe = make_multiagent_vector_env(env.env_id, 1, env.env_kwargs, env.env_import, env.policy_map,
                                           with_state=config.policy.central_critic)
        try:
            self.turn_based = probe.turn_based
            self.observation_space, self.action_space = probe.single_observation_space, probe.single_action_space
            self.agent_names, self.state_space = tuple(probe.agent_names), probe.state_space
            self.num_envs = env.num_envs * probe.slots
            self.layout = RowLayout(tuple(len(block.agents) for block in probe.policies), self.num_workers,
                                    self.envs_per_worker)
            if self.per_policy:
                self.policy_rows: list[PolicyRows] = self.layout.run_blocks(probe.policies)
        finally:
            probe.close()

    # ---------------------------------------------------------------- actors
    def _spawn(self, worker: int):
        return self._actor_class.remote(self._config_dict, worker, self.envs_per_worker)

    def _envs_of(self, worker: int) -> str:
        first = worker * self.envs_per_worker
        return f"envs {first}-{first + self.envs_per_worker - 1}"

    def _seeds(self, worker: int) -> tuple[int, int]:
        """(sample seed, env seed) of ``worker``'s current incarnation (see the module docstring)."""
        restarts = self.restarts[worker]
        if restarts == 0:
            sample = self.sample_seed if worker == 0 else _derive(self.sample_seed, worker)
            return sample, self.env_seed + worker * self.envs_per_worker
        return _derive(self.sample_seed, worker, restarts), _derive(self.env_seed, worker, restarts)

    def _get(self, refs: list, what: str) -> list:
        """``ray.get`` with the start timeout; an actor's env failure is re-raised as itself, anything else names
        the worker."""
        _, pending = self.ray.wait(refs, num_returns=len(refs), timeout=self.start_timeout)
        if pending:
            worker = refs.index(pending[0])
            raise EnvError(f"Ray worker {worker} ({self._envs_of(worker)}) did not answer {what} within "
                           f"{self.start_timeout:g} s.", worker * self.envs_per_worker)
        results = []
        for worker, ref in enumerate(refs):
            try:
                results.append(self.ray.get(ref))
            except self.ray.exceptions.RayTaskError as exc:
                raise self._cause(exc, worker, what) from exc
            except self.ray.exceptions.RayActorError as exc:  # e.g. its constructor failed on that node
                raise EnvError(f"Ray worker {worker} ({self._envs_of(worker)}) died in {what}: "
                               f"{_first_line(exc)}", worker * self.envs_per_worker) from exc
        return results

    def start(self, policy: RecurrentActorCritic | Mapping[str, RecurrentActorCritic], device: torch.device,
              sample_seed: int, env_seed: int) -> None:
        """As the local collector's: one policy, or with ``--policy-map`` the policies by name."""
        self.device, self.sample_seed, self.env_seed = device, sample_seed, env_seed
        if self.per_policy:
            self._env_dim = state_env_dim(next(iter(policy.values())))  # the policies share one state layout
            self.set_weights({name: p.state_dict() for name, p in policy.items()})
        else:
            self._env_dim = state_env_dim(policy)
            self.set_weights(policy.state_dict())
        self._get([self._start(w, actor) for w, actor in enumerate(self.workers)], "start")

    def _start(self, worker: int, actor):
        sample, env = self._seeds(worker)
        return actor.start.remote(self._weights, sample, env)

    def set_weights(self, weights: Mapping) -> None:
        """One ``ray.put`` per iteration: every actor reads the same object. ``weights``: a state dict, or with
        ``--policy-map`` one per policy name."""
        if self.per_policy:
            self._weights = self.ray.put({name: _on_cpu(w) for name, w in weights.items()})
        else:
            self._weights = self.ray.put(_on_cpu(weights))

    def collect(self) -> Rollout | dict[str, Rollout]:
        """Every actor's fragment, concatenated along the env dim (worker order), on CPU; with ``--policy-map``
        one rollout per policy, over its block of rows."""
        fragments = self._call(lambda actor: actor.collect.remote(self._weights), "its rollout")
        if self.per_policy:
            return {name: self._assemble([f[name] for f in fragments]) for name in fragments[0]}
        return self._assemble(fragments)

    def use_noise(self, correlation: float) -> None:
        """Correlated sampling noise in every actor from the next rollout on (``--sparse-noise``); an actor
        that is replaced later starts with it too."""
        self._config_dict["ppo"] = {**self._config_dict["ppo"], "noise_correlation": correlation}
        self._call(lambda actor: actor.use_noise.remote(correlation), "switching on the sampling noise")

    def _call(self, call, what: str) -> list:
        """``call(actor)`` on every actor, the results in worker order. An actor that died, or sent nothing
        within the timeout, is replaced (``_restart``) and called again, up to ``MAX_RESTARTS_PER_ITERATION``
        times; an exception raised inside an actor is re-raised here (``_cause``)."""
        refs = {w: call(actor) for w, actor in enumerate(self.workers)}
        results: dict[int, object] = {}
        failures = [0] * self.num_workers
        while refs:
            ready, _ = self.ray.wait(list(refs.values()), num_returns=len(refs), timeout=self.timeout)
            retry = {}
            for worker, ref in refs.items():
                why = None
                if ref not in ready:
                    why = f"sent no answer ({what}) within --worker-timeout {self.timeout:g} s"
                else:
                    try:
                        results[worker] = self.ray.get(ref)
                    except self.ray.exceptions.RayTaskError as exc:
                        raise self._cause(exc, worker, what) from exc
                    except self.ray.exceptions.RayActorError as exc:
                        why = f"died ({_first_line(exc)})"
                if why is not None:
                    failures[worker] += 1
                    if failures[worker] > MAX_RESTARTS_PER_ITERATION:
                        raise EnvError(f"Ray worker {worker} ({self._envs_of(worker)}) {why}, after "
                                       f"{MAX_RESTARTS_PER_ITERATION} restarts in a row; giving up.",
                                       worker * self.envs_per_worker)
                    retry[worker] = call(self._restart(worker, why))
            refs = retry
        return [results[w] for w in range(self.num_workers)]

    def _restart(self, worker: int, why: str):
        """Replace ``worker`` by a fresh actor (new envs, zero state, new seeds, the current weights)."""
        warnings.warn(f"Ray worker {worker} ({self._envs_of(worker)}) {why}; restarting it: its envs are made "
                      f"afresh with zero recurrent state and every episode starts anew.", WorkerRestarted,
                      stacklevel=4)
        with contextlib.suppress(Exception):  # already gone
            self.ray.kill(self.workers[worker], no_restart=True)
        self.restarts[worker] += 1
        actor = self.workers[worker] = self._spawn(worker)
        self._get_one(self._start(worker, actor), worker, "start")
        return actor

    def _cause(self, exc, worker: int, what: str) -> Exception:
        return _cause(exc, worker, worker * self.envs_per_worker, self._envs_of(worker), what)

    def _get_one(self, ref, worker: int, what: str):
        try:
            return self.ray.get(ref, timeout=self.start_timeout)
        except self.ray.exceptions.RayTaskError as exc:
            raise self._cause(exc, worker, what) from exc
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError) as exc:
            raise EnvError(f"Ray worker {worker} ({self._envs_of(worker)}) could not be restarted: "
                           f"{_first_line(exc)}", worker * self.envs_per_worker) from exc

    def _assemble(self, fragments: list[Rollout]) -> Rollout:
        """The W fragments (T, E) as one rollout (T, W * E): env ``w * E + j`` is worker w's env j. A multi-agent
        fragment covers a worker's rows of one policy block, copy by copy, so its rows go the same way: the
        block's rows of copy ``w * E + i`` are worker w's of copy i (``RowLayout``)."""
        env_dims = {name: 1 for name in _ROLLOUT_TENSORS}
        env_dims["states"], env_dims["bootstrap_value"] = self._env_dim + 1, 0
        tensors = {name: torch.cat([getattr(f, name) for f in fragments], dim) for name, dim in env_dims.items()}
        obs = _tree_cat([f.obs for f in fragments], 1)
        first = fragments[0]
        alive = None if first.alive is None else torch.cat([f.alive for f in fragments], 1)
        acting = None if first.acting is None else torch.cat([f.acting for f in fragments], 1)
        inputs = None if first.agent_inputs is None else _tree_cat([f.agent_inputs for f in fragments], 1)
        return Rollout(obs=obs, **tensors,
                       episode_returns=[r for f in fragments for r in f.episode_returns],
                       episode_lengths=[n for f in fragments for n in f.episode_lengths],
                       nonfinite_skips=sum(f.nonfinite_skips for f in fragments),
                       illegal_actions=sum(f.illegal_actions for f in fragments),
                       checked_actions=sum(f.checked_actions for f in fragments), alive=alive, agent_inputs=inputs,
                       acting=acting)

    # ---------------------------------------------------------------- checkpointing
    def state_dict(self, snapshot_envs: bool = True) -> dict:
        """The local collector's layout over all rows (``RowLayout``); ``generator`` is worker 0's sampler (so
        that a local resume reads it), ``tensors["worker_generators"]`` (W, *) every worker's."""
        parts = self._call(lambda actor: actor.state_dict.remote(snapshot_envs), "its state")
        layout, saved = self.layout, [p["tensors"] for p in parts]
        tensors = {"state": layout.merge([t["state"] for t in saved], self._env_dim),
                   "next_episode_start": layout.merge([t["next_episode_start"] for t in saved]),
                   "worker_generators": torch.stack([p["generator"] for p in parts])}
        if "turns" in saved[0]:
            tensors["turns"] = self._merge_turns([t["turns"] for t in saved])
        # The rest: ``sampling_noise`` and ``alive`` over all rows, ``sampling_noise/<policy>`` over a block's.
        for key in saved[0]:
            if key not in tensors and all(key in t for t in saved):
                pieces = [t[key] for t in saved]
                tensors[key] = torch.cat(pieces) if "/" in key else layout.merge(pieces)
        resume = self._merge_resume([p["resume"] for p in parts]) if snapshot_envs else None
        return {"tensors": tensors, "generator": parts[0]["generator"], "resume": resume}

    def load_state_dict(self, state: dict) -> str | None:
        """Split ``state_dict()``'s output (of either backend) among the actors. Returns None when exact; with
        another worker count than the checkpoint's, why not (every env restarts its episode)."""
        tensors, generator, resume = state.get("tensors"), state.get("generator"), state.get("resume")
        if tensors is None:
            parts = [{"tensors": None, "generator": None, "resume": None}] * self.num_workers
            self._get([a.load_state_dict.remote(p) for a, p in zip(self.workers, parts, strict=True)], "a resume")
            return "the checkpoint holds no collector state"
        saved = tensors.get("worker_generators")
        saved_workers = 1 if saved is None else saved.shape[0]
        note = None
        if saved_workers != self.num_workers:
            generators = [None] * self.num_workers
            note = (f"the checkpoint sampled actions in {saved_workers} stream(s) (workers), this run has "
                    f"{self.num_workers} workers: every worker's action sampler is seeded afresh")
            resume = None
        else:
            # Own, contiguous storage each: torch reads a generator state from the start of its storage.
            generators = [generator] if saved is None else [row.clone() for row in saved]
        layout = self.layout
        if tensors["state"].shape[self._env_dim] != self.num_envs:
            raise ValueError(f"Saved recurrent state holds {tensors['state'].shape[self._env_dim]} envs, this run "
                             f"needs {self.num_envs}; were --num-envs or the core changed?")
        pieces = {"state": layout.split(tensors["state"], self._env_dim)}
        if "turns" in tensors:
            pieces["turns"] = self._split_turns(tensors["turns"])
        for key, value in tensors.items():
            if key == "worker_generators" or key in pieces:
                continue
            if "/" in key:  # ``sampling_noise/<policy>``: that policy's block of rows
                pieces[key] = layout.split_block(value, self._block_index(key.partition("/")[2]))
            else:
                pieces[key] = layout.split(value)
        resumes = self._split_resume(resume) if resume is not None else [None] * self.num_workers
        parts = [{"tensors": {key: split[w] for key, split in pieces.items()}, "generator": generators[w],
                  "resume": resumes[w]} for w in range(self.num_workers)]
        reasons = self._get([a.load_state_dict.remote(p) for a, p in zip(self.workers, parts, strict=True)],
                            "a resume")
        if note is not None:
            return note
        return next((r for r in reasons if r is not None), None)

    def _block_index(self, name: str) -> int:
        names = [block.name for block in getattr(self, "policy_rows", [])]
        if name not in names:
            raise ValueError(f"The checkpoint holds sampling noise of policy {name!r}, this run has the policies "
                             f"{names}; was --policy-map changed?")
        return names.index(name)

    def _merge_turns(self, parts: list[dict]) -> dict:
        """The actors' turn-based state (``tensors["turns"]``: each row's pending step (R_w,) and the pending steps
        carried into the next rollout) as the local collector's over all rows: ``pending`` by ``RowLayout``, the
        carried steps' row indices shifted into the run's rows of their block (``_merge_carry``)."""
        pending = self.layout.merge([t["pending"] for t in parts])
        carries = [t["carry"] for t in parts]
        if self.per_policy:  # {policy: carry or None} per worker (None before its first rollout)
            carry = None if all(c is None for c in carries) else {
                block.name: self._merge_carry([None if c is None else c.get(block.name) for c in carries], k)
                for k, block in enumerate(self.policy_rows)}
        else:
            carry = self._merge_carry(carries, 0)
        return {"pending": pending, "carry": carry}

    def _merge_carry(self, parts: list[dict | None], block: int) -> dict | None:
        """One policy block's carried steps (``MultiAgentCollector._hang_pending``: ``rows`` (K_w,) among the
        worker's rows of the block, every other entry (K_w, ...)) of every worker as the run's: worker w's row i
        of the block is the run's row ``w * E * width + i`` of it, so the rows stay ascending as locally."""
        rows_per_worker = self.envs_per_worker * self.layout.widths[block]
        shifted = [{**carry, "rows": carry["rows"] + w * rows_per_worker}
                   for w, carry in enumerate(parts) if carry is not None]
        if not shifted:
            return None
        return {key: None if value is None else _tree_cat([c[key] for c in shifted], 0)
                for key, value in shifted[0].items()}

    def _split_turns(self, turns: dict) -> list[dict]:
        """``_merge_turns``'s inverse: each worker's pending steps and carried steps, its rows renumbered."""
        pending = self.layout.split(turns["pending"])
        carry = turns["carry"]
        if carry is None:
            carries = [None] * self.num_workers
        elif self.per_policy:
            names = [block.name for block in self.policy_rows]
            split = {name: self._split_carry(carry.get(name), k) for k, name in enumerate(names)}
            carries = [{name: split[name][w] for name in names} for w in range(self.num_workers)]
        else:
            carries = self._split_carry(carry, 0)
        return [{"pending": pending[w], "carry": carries[w]} for w in range(self.num_workers)]

    def _split_carry(self, carry: dict | None, block: int) -> list[dict | None]:
        """``_merge_carry``'s inverse: each worker's carried steps of the block (None: it carries none)."""
        if carry is None:
            return [None] * self.num_workers
        rows_per_worker = self.envs_per_worker * self.layout.widths[block]
        worker_of = (carry["rows"] // rows_per_worker).cpu().numpy()  # a local checkpoint may hold them on a GPU
        carries = []
        for w in range(self.num_workers):
            index = np.flatnonzero(worker_of == w)
            if index.size == 0:
                carries.append(None)
                continue
            mine = {key: None if value is None else _tree_take(value, index, 0) for key, value in carry.items()}
            mine["rows"] = mine["rows"] - w * rows_per_worker
            carries.append(mine)
        return carries

    def _merge_resume(self, parts: list[dict]) -> dict:
        """The actors' ``resume`` parts as the local collector's one over all rows (``RowLayout``)."""
        layout = self.layout
        reasons = [p["reason"] for p in parts if p["envs"] is None]
        obs = [decode(p["next_obs"], None, "next_obs") for p in parts]
        if self.per_policy:  # one observation tree per policy, over its block of rows
            next_obs = [_tree_cat([o[k] for o in obs], 0) for k in range(len(obs[0]))]
        else:
            next_obs = layout.merge(obs)
        envs = None
        if not reasons and self.multiagent:
            envs = {"snapshots": [snap for p in parts for snap in p["envs"]["snapshots"]]}
            for key in _ROW_FLAGS:  # (R_w,) bool each; ``waiting`` and ``started`` only for a turn-based env
                if key in parts[0]["envs"]:
                    envs[key] = layout.merge([np.asarray(p["envs"][key], dtype=bool) for p in parts]).tolist()
        elif not reasons:
            envs = [snapshot for p in parts for snapshot in p["envs"]]
        return {
            "next_obs": encode(next_obs, "next_obs"),
            "episode_return": encode(layout.merge([decode(p["episode_return"]) for p in parts])),
            "episode_length": encode(layout.merge([decode(p["episode_length"]) for p in parts])),
            "envs": envs,
            "reason": reasons[0] if reasons else None,
        }

    def _split_resume(self, resume: dict) -> list[dict]:
        """``_merge_resume``'s inverse: worker w gets env copies ``w * E .. (w + 1) * E - 1`` and their rows."""
        layout, count, size = self.layout, self.num_workers, self.envs_per_worker
        obs = decode(resume["next_obs"], None, "next_obs")
        if self.per_policy:
            blocks = [layout.split_block(tree, k) for k, tree in enumerate(obs)]
            next_obs = [[block[w] for block in blocks] for w in range(count)]
        else:
            next_obs = layout.split(obs)
        returns = layout.split(decode(resume["episode_return"]))
        lengths = layout.split(decode(resume["episode_length"]))
        envs = resume.get("envs")
        if envs is None:
            worker_envs = [None] * count
        elif self.multiagent:
            flags = {key: layout.split(np.asarray(envs[key], dtype=bool)) for key in _ROW_FLAGS if key in envs}
            worker_envs = [{"snapshots": envs["snapshots"][w * size:(w + 1) * size],
                            **{key: split[w].tolist() for key, split in flags.items()}} for w in range(count)]
        else:
            worker_envs = [envs[w * size:(w + 1) * size] for w in range(count)]
        return [{"next_obs": encode(next_obs[w], "next_obs"), "episode_return": encode(returns[w]),
                 "episode_length": encode(lengths[w]), "reason": resume.get("reason"), "envs": worker_envs[w]}
                for w in range(count)]

    def close(self) -> None:
        """Stop the actors (their envs close with them) and, if this collector started Ray, Ray itself."""
        if self._closed:
            return
        self._closed = True
        refs = [actor.close.remote() for actor in self.workers]
        try:
            self.ray.wait(refs, num_returns=len(refs), timeout=10)
        finally:
            for actor in self.workers:
                with contextlib.suppress(Exception):  # already gone
                    self.ray.kill(actor, no_restart=True)
            if self.owns_ray:
                self.ray.shutdown()


def state_env_dim(policy: RecurrentActorCritic) -> int:
    """The env (batch) dim of the policy's recurrent state, read off ``initial_state`` for 1 and 2 envs."""
    one, two = policy.initial_state(1, "cpu").shape, policy.initial_state(2, "cpu").shape
    return next(i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b)


def _derive(*entropy: int) -> int:
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cause(exc, worker: int, first_env: int, envs: str, what: str) -> Exception:
    """An exception raised inside an actor: env failures and bad checkpoints as themselves, else named."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, (EnvError, NonFiniteError, ValueError)):
        return cause
    return EnvError(f"Ray worker {worker} ({envs}) failed in {what}: {_first_line(cause or exc)}", first_env)


def _tree_cat(trees: list, dim: int):
    """Concatenate tensor trees (dict / tuple / tensor leaves) along ``dim``."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: _tree_cat([t[k] for t in trees], dim) for k in first}
    if isinstance(first, tuple):
        return tuple(_tree_cat([t[i] for t in trees], dim) for i in range(len(first)))
    if isinstance(first, np.ndarray):
        return np.concatenate(trees, dim)
    return torch.cat(trees, dim)


def _tree_take(tree, index: np.ndarray, dim: int):
    """The entries ``index`` of every leaf (numpy or torch) of a tree (dict / tuple / leaf), along ``dim``."""
    if isinstance(tree, dict):
        return {k: _tree_take(v, index, dim) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_tree_take(v, index, dim) for v in tree)
    if isinstance(tree, np.ndarray):
        return np.take(tree, index, axis=dim)
    return tree.index_select(dim, torch.as_tensor(index, device=tree.device))


def _tree_split(tree, size: int, count: int, dim: int = 0) -> list:
    """Split a tree's leaves (numpy or torch) into ``count`` pieces of ``size`` along ``dim``."""
    if isinstance(tree, dict):
        pieces = {k: _tree_split(v, size, count, dim) for k, v in tree.items()}
        return [{k: pieces[k][i] for k in tree} for i in range(count)]
    if isinstance(tree, tuple):
        pieces = [_tree_split(v, size, count, dim) for v in tree]
        return [tuple(p[i] for p in pieces) for i in range(count)]
    lead = (slice(None),) * dim
    return [tree[(*lead, slice(i * size, (i + 1) * size))] for i in range(count)]


def _on_cpu(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu() for name, tensor in weights.items()}


@dataclass(frozen=True)
class RowLayout:
    """Where each worker's rows sit among the run's rows, written once for merging and splitting.

    A worker lays out its E env copies' rows as the local collector lays out its own (``MultiAgentVectorEnv``):
    policy block after policy block, each block copy by copy. The run's N = W x E copies are laid out the same
    way, so the run's block p is worker 0's block p, then worker 1's, and so on. With one policy (and in a
    single-agent run: one block of width 1, a row per env) that is the workers' rows one worker after another.

    Attributes:
        widths: each policy block's rows per env copy (its agents), in block order.
        workers: W; copies_per_worker: E.
    """

    widths: tuple[int, ...]
    workers: int
    copies_per_worker: int

    @property
    def rows_per_worker(self) -> int:
        return self.copies_per_worker * sum(self.widths)

    @property
    def order(self) -> np.ndarray:
        """(R,): run row r is row ``order[r]`` of the workers' rows concatenated, worker after worker."""
        order, first_in_worker = [], 0
        for width in self.widths:
            block = self.copies_per_worker * width
            for w in range(self.workers):
                start = w * self.rows_per_worker + first_in_worker
                order.extend(range(start, start + block))
            first_in_worker += block
        return np.asarray(order, dtype=np.int64)

    @property
    def one_block(self) -> bool:
        """One policy block: ``order`` is the identity."""
        return len(self.widths) == 1

    def merge(self, parts: list, dim: int = 0):
        """The workers' trees (leaves with their R_w rows along ``dim``) as the run's (R rows, run order)."""
        whole = _tree_cat(parts, dim)
        return whole if self.one_block else _tree_take(whole, self.order, dim)

    def split(self, whole, dim: int = 0) -> list:
        """``merge``'s inverse: the run's tree (R rows along ``dim``) as each worker's, in worker order."""
        if not self.one_block:
            whole = _tree_take(whole, np.argsort(self.order), dim)
        return _tree_split(whole, self.rows_per_worker, self.workers, dim)

    def split_block(self, whole, block: int) -> list:
        """A tree over one policy block's rows (dim 0) as each worker's share of that block."""
        return _tree_split(whole, self.copies_per_worker * self.widths[block], self.workers)

    def run_blocks(self, worker_blocks: list[PolicyRows]) -> list[PolicyRows]:
        """The run's ``PolicyRows`` (all N copies) from any one layout of the same policies."""
        blocks, first = [], 0
        for block, width in zip(worker_blocks, self.widths, strict=True):
            rows = self.workers * self.copies_per_worker * width
            blocks.append(replace(block, first_row=first, num_rows=rows))
            first += rows
        return blocks
