"""PolicyRunner speed: act() latency for one agent, throughput for many, next to policy.step and ONNX.

For each network it times, in one run and on the same observations:

- ``PolicyRunner.act(obs)``: one agent, numpy observation in, env action out (median and p90 of
  single calls, after a warm-up);
- ``policy.step`` baseline: the same step done the plain way (``obs_to_tensor``, ``policy.step``
  with an explicit state, ``to_env``) under ``torch.inference_mode``;
- the ONNX export driven by ``agents.deploy.onnx_runner.OnnxRunner`` (numpy + onnxruntime, one thread),
  when onnx and onnxruntime are installed;
- throughput with ``--agents`` agents (default 256) acting together: agent-steps per second for
  ``runner.act(batch, agent_ids=ids)`` and for the batched ``policy.step``.

Observations are TMaze-shaped (Box(4), Discrete(3) actions); networks are random (speed does not
depend on the weights).

    python benchmarks/runner_latency.py            # ~30 s
    python benchmarks/runner_latency.py --calls 2000 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.config import PolicyConfig  # noqa: E402
from agents.deploy.runner import PolicyRunner  # noqa: E402
from agents.model.policy import RecurrentActorCritic  # noqa: E402
from agents.trees import obs_to_tensor  # noqa: E402

OBS = spaces.Box(0.0, 1.0, (4,), np.float32)
ACT = spaces.Discrete(3)
NETWORKS = {
    "lstm h32": PolicyConfig(hidden_size=32),
    "lstm h64 (default)": PolicyConfig(),
    "gru h64": PolicyConfig(core="gru"),
    "lstm h64 x2 layers": PolicyConfig(num_layers=2),
    "lstm h64 sep. critic": PolicyConfig(separate_critic=True),
}


def latencies(fn: Callable[[np.ndarray], object], observations: list[np.ndarray], calls: int) -> np.ndarray:
    """Seconds per call of ``fn(obs)``, one timing per call, after a warm-up of 200 calls."""
    n = len(observations)
    for i in range(200):
        fn(observations[i % n])
    times = np.empty(calls)
    clock = time.perf_counter
    for i in range(calls):
        obs = observations[i % n]
        t0 = clock()
        fn(obs)
        times[i] = clock() - t0
    return times


def agent_steps_per_second(fn: Callable[[np.ndarray], object], batches: list[np.ndarray], seconds: float) -> float:
    for b in batches[:5]:
        fn(b)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for b in batches:
            fn(b)
        steps += len(batches)
    return steps * len(batches[0]) / (time.perf_counter() - start)


def step_baseline(policy: RecurrentActorCritic, batch: int) -> Callable[[np.ndarray], object]:
    """The plain way: obs_to_tensor -> policy.step (explicit state) -> to_env."""
    state = policy.initial_state(batch)
    start = torch.zeros(batch)
    device = torch.device("cpu")

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal state
        with torch.inference_mode():
            x = obs_to_tensor(obs if batch > 1 else obs[None], device)
            out = policy.step(x, state, start, deterministic=True)
            state = out.state
            return policy.action_head.to_env(out.action)

    return act


def onnx_act(policy: RecurrentActorCritic, tmp: Path) -> Callable[[np.ndarray], object] | None:
    try:
        from agents.deploy.export import export_onnx

        path = tmp / f"p{id(policy)}.onnx"
        export_onnx(policy, path)
        from agents.deploy.onnx_runner import OnnxRunner

        runner = OnnxRunner(path)
    except ImportError:
        return None
    return lambda obs: runner.act(obs)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores (load avg {load:.2f}), torch {torch.__version__} "
            f"with {torch.get_num_threads()} thread(s), Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="timed single-agent calls per network")
    parser.add_argument("--agents", type=int, default=256, help="agents acting together for the throughput")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per throughput figure")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--networks", nargs="*", choices=list(NETWORKS), default=list(NETWORKS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    OBS.seed(0)
    observations = [OBS.sample() for _ in range(256)]
    batches = [np.stack([OBS.sample() for _ in range(args.agents)]) for _ in range(8)]
    ids = list(range(args.agents))
    print(f"machine: {machine()}")
    print(f"single agent: {args.calls} timed act() calls; throughput: {args.agents} agents, agent-steps/s\n")
    header = (f"{'network':22} {'runner med':>10} {'p90':>7} {'step med':>9} {'speedup':>8} {'onnx med':>9} "
              f"| {'runner /s':>10} {'step /s':>10}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            torch.manual_seed(0)
            policy = RecurrentActorCritic(OBS, ACT, NETWORKS[name]).eval()
            runner = PolicyRunner(policy)
            fast = latencies(lambda obs, r=runner: r.act(obs), observations, args.calls) * 1e6
            base = latencies(step_baseline(policy, 1), observations, args.calls) * 1e6
            onnx_fn = onnx_act(policy, Path(tmp))
            onnx_med = np.median(latencies(onnx_fn, observations, args.calls)) * 1e6 if onnx_fn else float("nan")
            many = PolicyRunner(policy)
            runner_tp = agent_steps_per_second(lambda b, r=many: r.act(b, agent_ids=ids), batches, args.seconds)
            step_tp = agent_steps_per_second(step_baseline(policy, args.agents), batches, args.seconds)
            print(f"{name:22} {np.median(fast):8.1f}us {np.percentile(fast, 90):5.1f}us {np.median(base):7.1f}us "
                  f"{np.median(base) / np.median(fast):7.2f}x {onnx_med:7.1f}us "
                  f"| {runner_tp:10,.0f} {step_tp:10,.0f}")
    print("\nrunner: PolicyRunner.act; step: obs_to_tensor + policy.step + to_env (the training path); "
          "onnx: agents.deploy.onnx_runner.OnnxRunner.act (onnxruntime, 1 thread).")


if __name__ == "__main__":
    main()
