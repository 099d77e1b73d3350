"""Where a CartPoleNoVel training iteration's time goes: collection, update epochs, and the LSTM kernels inside.

Trains ``mnemo/CartPoleNoVel-v1`` with the speed benchmark's settings
(rl-baselines3-zoo's ppo_lstm, ``envs.presets.ZOO_CARTPOLE_NOVEL``) for
``--warmup`` iterations so that episodes are long, as they are for most of a
100k-step run, then times on one rollout (medians over repeats):

- collecting one rollout (8 envs x 32 steps);
- one update epoch (forward, backward, gradient clipping, Adam), with the
  critic on this thread and on a second one (``--parallel-critic``);
- the two LSTMs' forward + backward alone, on the same sequences (oneDNN's
  kernels), together and one at a time;
- raw env stepping with random actions (the same vector env).

The kernel figures bound what any Python-side work can gain: with 20 epochs
per rollout, ``20 x kernels`` is spent in the recurrent kernels whatever else
is made faster (with the critic on a second core, ``20 x`` the slower LSTM's),
and the envs take their own time on top.

    python benchmarks/update_breakdown.py
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.config import TrainConfig  # noqa: E402
from agents.rollout.buffer import compute_gae, gather_sequences, make_sequences  # noqa: E402
from agents.train.parallel_critic import ParallelCritic  # noqa: E402
from agents.train.ppo import loss_and_backward  # noqa: E402
from agents.train.ppo_loss import make_minibatch  # noqa: E402
from agents.train.trainer import Trainer  # noqa: E402
from benchmarks.cartpole_novel import raw_env_sps  # noqa: E402
from envs.presets import ZOO_CARTPOLE_NOVEL  # noqa: E402

ENV_ID = "mnemo/CartPoleNoVel-v1"


def median_ms(fn, repeats: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=60, help="training iterations before timing")
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig().with_overrides({
            **ZOO_CARTPOLE_NOVEL, "env_id": ENV_ID, "seed": a.seed, "run_dir": f"{tmp}/run", "progress": False,
            "device": "cpu", "eval_episodes": 0}).validate()
        trainer = Trainer(config)
        try:
            report(trainer, config, a)
        finally:
            trainer.close()


def report(trainer: Trainer, config: TrainConfig, a: argparse.Namespace) -> None:
    ppo, policy, optimizer = config.ppo, trainer.policy, trainer.optimizer
    for _ in range(a.warmup):
        trainer._update(trainer.collector.collect(), ppo.clip_coef)
    collect_ms = median_ms(lambda: trainer.collector.collect(), max(10, a.repeats // 10), warmup=2)
    buf = trainer.collector.collect()

    advantages, returns = compute_gae(buf.rewards, buf.values, buf.terminated, buf.truncated, buf.truncation_values,
                                      buf.bootstrap_value, ppo.gamma, ppo.gae_lambda)
    seqs = make_sequences(buf.episode_starts.numpy(), config.sequence_len, cut_at_episode_starts=True)
    batch = gather_sequences(buf, seqs, advantages, returns)
    lengths = batch.lengths.numpy()
    mb = make_minibatch(batch, np.arange(len(lengths)), lengths)

    parallel = ParallelCritic()

    def epoch(split: bool):
        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_and_backward(policy, mb, ppo, ppo.clip_coef, parallel if split else None)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), ppo.max_grad_norm, foreach=True)
            optimizer.step()
        return run

    def kernels(cores) -> Callable[[], None]:
        inputs = [[torch.randn(*group.mask.shape, core.rnn.input_size) for group in mb.groups] for core in cores]

        def run() -> None:
            total = 0.0
            for core, xs in zip(cores, inputs, strict=True):
                for group, x in zip(mb.groups, xs, strict=True):
                    out, _ = core.rnn(x, (group.start_states[0], group.start_states[1]))
                    total = total + out.sum()
            total.backward()
        return run

    serial_ms = median_ms(epoch(False), a.repeats)
    parallel_ms = median_ms(epoch(True), a.repeats)
    parallel.close()
    kernel_ms = median_ms(kernels((policy.actor_core, policy.critic_core)), a.repeats)
    # With the critic on the second core, the two LSTMs' kernels overlap: the slower one is the floor.
    one_core_ms = max(median_ms(kernels((core,)), a.repeats) for core in (policy.actor_core, policy.critic_core))
    epochs, steps = ppo.update_epochs, config.batch_size
    env_sps = raw_env_sps(config.env.num_envs, 20_000, a.seed)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 torch thread")
    print(f"rollout after {a.warmup} iterations: {len(lengths)} sequences, lengths {sorted(lengths.tolist())}")
    print(f"collect one rollout ({steps} steps):          {collect_ms:7.2f} ms")
    print(f"one update epoch, critic on this thread:   {serial_ms:7.3f} ms")
    print(f"one update epoch, critic on a 2nd thread:  {parallel_ms:7.3f} ms")
    print(f"LSTM kernels alone (both cores, fwd+bwd):  {kernel_ms:7.3f} ms  ({100 * kernel_ms / serial_ms:.0f}% "
          f"of the serial epoch)")
    best = min(serial_ms, parallel_ms)
    print(f"iteration = collect + {epochs} epochs: {collect_ms + epochs * best:.1f} ms -> "
          f"{1000 * steps / (collect_ms + epochs * best):.0f} steps/s at this point of training")
    print(f"one LSTM's kernels alone (fwd+bwd):        {one_core_ms:7.3f} ms  (the floor of an epoch with the "
          f"critic on a 2nd core)")
    print(f"the kernels alone, {epochs} epochs: {epochs * kernel_ms:.1f} ms per rollout -> at most "
          f"{1000 * steps / (epochs * kernel_ms):.0f} steps/s with everything else free; with the two cores "
          f"overlapped {epochs * one_core_ms:.1f} ms -> at most {1000 * steps / (epochs * one_core_ms):.0f} steps/s")
    print(f"add raw env stepping ({1000 * steps / env_sps:.1f} ms per rollout at {env_sps:.0f} steps/s, random "
          f"actions): at most {1000 * steps / (epochs * one_core_ms + 1000 * steps / env_sps):.0f} steps/s for "
          f"the whole iteration")


if __name__ == "__main__":
    main()
