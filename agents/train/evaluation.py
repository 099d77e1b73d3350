"""Play whole episodes with a policy and report their returns (deterministic by default).

With a masked env (docs/action_masks.md) every env action is checked against the mask the env gave, and an
``IllegalActionCount`` passed as ``mask_count`` adds up the actions checked and the illegal ones (0)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents.config import EnvConfig, RunConfig
from agents.model.policy import RecurrentActorCritic
from agents.rollout.collector import IllegalActionCount, count_illegal_actions
from agents.rollout.multiagent_collector import act_by_policy
from agents.rollout.multiagent_env import MultiAgentVectorEnv, is_multiagent, make_multiagent_vector_env
from agents.rollout.previous_inputs import run_input_wrapper
from agents.rollout.vector_env import import_env_modules, make_vector_env
from agents.run.checkpoint import LATEST, load_policy
from agents.trees import obs_to_tensor


@torch.inference_mode()
def evaluate_policy(
    policy: RecurrentActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    env_kwargs: dict | None = None,
    deterministic: bool = True,
    num_envs: int = 8,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    should_stop: Callable[[], bool] | None = None,
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
    mask_count: IllegalActionCount | None = None,
) -> np.ndarray:
    """Returns of ``episodes`` episodes, in parallel envs.

    Each env plays a fixed share of the episodes (as in SB3's evaluate_policy),
    so short episodes cannot crowd out long ones and bias the mean. ``should_stop`` is polled
    every step; once it returns True, the returns finished so far come back (Ctrl-C during the
    final evaluation of a training run). ``wrapper`` wraps each env as in training (``make_vector_env``).
    """
    num_envs = max(1, min(num_envs, episodes))
    targets = np.array([(episodes + i) // num_envs for i in range(num_envs)])
    envs = make_vector_env(env_id, num_envs, env_kwargs, wrapper=wrapper)
    try:
        obs, _ = envs.reset(seed=seed)
        state = policy.initial_state(num_envs, device)
        episode_start = torch.ones(num_envs, device=device)
        counts = np.zeros(num_envs, dtype=np.int64)
        running = np.zeros(num_envs)
        returns: list[float] = []
        while (counts < targets).any() and not (should_stop is not None and should_stop()):
            out = policy.step(obs_to_tensor(obs, device), state, episode_start, deterministic, generator)
            env_action = policy.env_action(out.action)
            if policy.masked:
                checked = count_illegal_actions(policy, obs, env_action)
                if mask_count is not None:
                    mask_count += checked
            obs, reward, terminated, truncated, _ = envs.step(env_action)
            running += reward
            done = terminated | truncated
            for i in np.flatnonzero(done):
                if counts[i] < targets[i]:
                    returns.append(float(running[i]))
                    counts[i] += 1
            running[done] = 0.0
            state = out.state
            episode_start = torch.as_tensor(done, dtype=torch.float32, device=device)
        return np.asarray(returns)
    finally:
        envs.close()


def _eval_copies(episodes: int, num_envs: int) -> int:
    """Env copies for an evaluation of ``episodes`` env episodes (no more copies than episodes)."""
    return max(1, min(num_envs, episodes))


def _whole_episode_returns(envs: MultiAgentVectorEnv, policies: dict[str, RecurrentActorCritic], episodes: int,
                           seed: int, deterministic: bool, device: torch.device | str,
                           generator: torch.Generator | None,
                           should_stop: Callable[[], bool] | None,
                           mask_count: IllegalActionCount | None = None) -> dict[str, list[float]]:
    """Every agent episode's return in ``episodes`` whole env episodes of ``envs``, by the name of the policy
    (``policies``, by block name) that played it, each step by training's hidden-state rules
    (``act_by_policy``).

    Each env copy plays a fixed share of the env episodes, and every agent episode in them counts: taking the
    first agent episodes to end would favour short ones (an agent caught early, a team that finishes fast) and
    bias the mean. The returns come in the order their env episodes end (agent episodes in the order they end,
    rows in order within a step); an env episode cut off by ``should_stop`` is left out whole.
    """
    copies = envs.num_copies
    targets = np.array([(episodes + i) // copies for i in range(copies)])
    names = [block.name for block in envs.policies]
    obs, spawn = envs.reset(seed=seed)
    state = next(iter(policies.values())).initial_state(envs.num_envs, device)
    running = np.zeros(envs.num_envs)
    counts = np.zeros(copies, dtype=np.int64)
    open_episodes = [{name: [] for name in names} for _ in range(copies)]  # each copy's episode so far
    returns: dict[str, list[float]] = {name: [] for name in names}
    while (counts < targets).any() and not (should_stop is not None and should_stop()):
        actions, state, steps = act_by_policy(policies, envs, obs, state, spawn, deterministic, generator, device)
        if mask_count is not None:
            for step in steps:
                mask_count += step.mask_count
        obs, reward, terminated, truncated, spawn, info = envs.step(actions)
        running += reward
        done = terminated | truncated
        for row in np.flatnonzero(done):
            open_episodes[envs.copy_of_row[row]][names[envs.policy_of_row[row]]].append(float(running[row]))
        running[done] = 0.0
        for i in np.flatnonzero(info["env_done"]):
            if counts[i] < targets[i]:
                for name in names:
                    returns[name].extend(open_episodes[i][name])
                counts[i] += 1
            open_episodes[i] = {name: [] for name in names}
    return returns


@torch.inference_mode()
def evaluate_multiagent(
    policy: RecurrentActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    env_kwargs: dict | None = None,
    env_import: tuple[str, ...] = (),
    deterministic: bool = True,
    num_envs: int = 8,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    should_stop: Callable[[], bool] | None = None,
    mask_count: IllegalActionCount | None = None,
) -> np.ndarray:
    """Returns of every agent episode (spawn to end) in ``episodes`` whole episodes of a multi-agent env
    (``_whole_episode_returns``), over its agent slots as rows (``agents.rollout.multiagent_env``), with the
    hidden-state rules of training: a spawn starts from zero state, an absent row's state is held. The actor
    alone acts (a central critic's env.state() is not read)."""
    envs = make_multiagent_vector_env(env_id, _eval_copies(episodes, num_envs), env_kwargs, env_import)
    try:
        name = envs.policies[0].name
        returns = _whole_episode_returns(envs, {name: policy}, episodes, seed, deterministic, device, generator,
                                         should_stop, mask_count)
        return np.asarray(returns[name])
    finally:
        envs.close()


@torch.inference_mode()
def evaluate_policies(
    policies: dict[str, RecurrentActorCritic],
    env_id: str,
    episodes: int,
    seed: int,
    policy_map: str,
    env_kwargs: dict | None = None,
    env_import: tuple[str, ...] = (),
    deterministic: bool = True,
    num_envs: int = 8,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    should_stop: Callable[[], bool] | None = None,
    mask_count: IllegalActionCount | None = None,
) -> dict[str, np.ndarray]:
    """``evaluate_multiagent`` with named policies (``policy_map``): each policy drives its agents' rows
    (``PolicyRows``), by the same hidden-state rules, in the same ``episodes`` whole env episodes. Returns
    ``{name: returns}``: every agent episode of each policy in them."""
    envs = make_multiagent_vector_env(env_id, _eval_copies(episodes, num_envs), env_kwargs, env_import, policy_map)
    try:
        returns = _whole_episode_returns(envs, policies, episodes, seed, deterministic, device, generator,
                                         should_stop, mask_count)
        return {block.name: np.asarray(returns[block.name]) for block in envs.policies}
    finally:
        envs.close()


def evaluate_modes(policy: RecurrentActorCritic | dict[str, RecurrentActorCritic], env: EnvConfig, run: RunConfig,
                   device: torch.device, should_stop: Callable[[], bool] | None = None,
                   mask_count: IllegalActionCount | None = None,
                   ) -> tuple[np.ndarray, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A training run's final evaluation: greedy and sampled returns (each empty where ``run.eval_mode`` leaves
    it out), on envs seeded apart from training's. With named policies (``policy`` a dict, ``--policy-map``)
    each of the two is ``{name: returns}`` (``evaluate_policies``). ``mask_count`` adds up a masked env's checked
    and illegal actions over both modes."""
    if isinstance(policy, dict):
        empty = {name: np.array([]) for name in policy}
        named = {"greedy": empty, "sample": empty}
        for mode in ("greedy", "sample"):
            if run.eval_episodes == 0 or run.eval_mode not in (mode, "both"):
                continue
            generator = torch.Generator(device).manual_seed(run.seed + 20_000) if mode == "sample" else None
            named[mode] = evaluate_policies(
                policy, env.env_id, run.eval_episodes, seed=run.seed + 10_000, policy_map=env.policy_map,
                env_kwargs=env.env_kwargs, env_import=tuple(env.env_import), deterministic=mode == "greedy",
                device=device, generator=generator, should_stop=should_stop, mask_count=mask_count)
        return named["greedy"], named["sample"]
    results = {"greedy": np.array([]), "sample": np.array([])}
    if run.eval_episodes == 0:
        return results["greedy"], results["sample"]
    for mode in ("greedy", "sample"):
        if run.eval_mode not in (mode, "both"):
            continue
        # Sampling draws from its own seeded generator, so evaluating leaves training's random streams alone.
        generator = torch.Generator(device).manual_seed(run.seed + 20_000) if mode == "sample" else None
        if is_multiagent(env.env_id):
            results[mode] = evaluate_multiagent(
                policy, env.env_id, run.eval_episodes, seed=run.seed + 10_000, env_kwargs=env.env_kwargs,
                env_import=tuple(env.env_import), deterministic=mode == "greedy", device=device,
                generator=generator, should_stop=should_stop, mask_count=mask_count)
            continue
        results[mode] = evaluate_policy(
            policy, env.env_id, run.eval_episodes, seed=run.seed + 10_000, env_kwargs=env.env_kwargs,
            deterministic=mode == "greedy", device=device, generator=generator, should_stop=should_stop,
            wrapper=run_input_wrapper(policy.config), mask_count=mask_count)
    return results["greedy"], results["sample"]


def evaluate_run(path_or_run_dir: str | Path, episodes: int = 10, deterministic: bool = True, seed: int = 10_000,
                 device: torch.device | str = "cpu", which: str = LATEST) -> np.ndarray:
    """Returns of ``episodes`` episodes of a saved run's policy on the env its config names.

    Args:
        path_or_run_dir: a run directory (its ``checkpoints/<which>``) or a checkpoint file.
        deterministic: greedy actions (True) or sampled ones.
        seed: the envs' reset seed (a training run's own final evaluation uses ``run.seed + 10_000``).

    Raises:
        CheckpointError: unreadable, or trained with a collector whose env has no id (``load_policy``'s
            ``need_env``): the config's env would not be the one it trained on.
    """
    policy, config = load_policy(path_or_run_dir, device=device, which=which, need_env=True)
    import_env_modules(config.env.env_import)
    generator = None if deterministic else torch.Generator(device).manual_seed(seed)
    return evaluate_policy(policy, config.env.env_id, episodes, seed, env_kwargs=config.env.env_kwargs,
                           deterministic=deterministic, device=device, generator=generator,
                           wrapper=run_input_wrapper(policy.config))
