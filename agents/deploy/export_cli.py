"""``mnemo export RUN``: export a trained policy to ONNX or TorchScript and check it against torch.

    mnemo export runs/my_run                          # policy.onnx, checked over 100 steps
    mnemo export runs/my_run --format torchscript --out policy.pt

A multi-agent run's shared policy exports as any other (one agent's spaces); the metadata names its agents. A run
with named policies (``--policy-map``) exports one policy at a time: ``mnemo export RUN --policy hunter``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agents.arguments import OneLineParser
from agents.config import ConfigError, EnvConfig
from agents.deploy.export import DEFAULT_OPSET, ExportError, export_onnx, export_torchscript
from agents.deploy.export_check import compare_with_torch, onnx_step_fn, torchscript_step_fn
from agents.rollout.multiagent_env import assign_policies, is_multiagent, make_parallel_env
from agents.run.checkpoint import LATEST, CheckpointError, load_policy


def multiagent_metadata(env: EnvConfig, policy: str | None = None) -> dict:
    """A multi-agent run's env as export metadata: ``{"env_id", "agents", "num_agents"}`` (the env's
    ``possible_agents``, or with named policies policy ``policy``'s agents, and then ``"policy"`` too; None where
    the env cannot be made here, e.g. its module is missing)."""
    named = {} if policy is None else {"policy": policy}
    try:
        parallel_env = make_parallel_env(env.env_id, env.env_kwargs, env.env_import, env.policy_map)
    except (ConfigError, ModuleNotFoundError):
        return {"env_id": env.env_id, "agents": None, "num_agents": None, **named}
    agents = [str(a) for a in parallel_env.possible_agents]
    if policy is not None:
        agents = [str(a) for a in dict(assign_policies(parallel_env, env.policy_map, env.env_id))[policy]]
    parallel_env.close()
    return {"env_id": env.env_id, "agents": agents, "num_agents": len(agents), **named}


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="mnemo export", description="Export a trained policy (one step, explicit state) "
        "to ONNX or TorchScript, then check it against the torch policy.")
    parser.add_argument("run", help="run directory (uses checkpoints/<which>) or checkpoint file")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    parser.add_argument("--out", help="output file (default: policy.onnx / policy.torchscript.pt)")
    parser.add_argument("--which", default=LATEST, help="checkpoint in a run directory (default: latest.pt)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (17 or later)")
    parser.add_argument("--no-verify", action="store_true", help="skip the 100-step comparison with torch")
    parser.add_argument("--policy", help="which policy of a run with named policies (--policy-map) to export")
    args = parser.parse_args(argv)
    out = Path(args.out or ("policy.onnx" if args.format == "onnx" else "policy.torchscript.pt"))
    try:
        policy, config = load_policy(args.run, device="cpu", which=args.which, policy=args.policy)
        multiagent = multiagent_metadata(config.env, args.policy) if is_multiagent(config.env.env_id) else None
        meta = (export_onnx(policy, out, opset=args.opset, multiagent=multiagent) if args.format == "onnx"
                else export_torchscript(policy, out, multiagent=multiagent))
    except (CheckpointError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(i["name"] for i in meta["inputs"])
    outs = ", ".join(o["name"] for o in meta["outputs"])
    state = " x ".join(str(d) for d in meta["state_shape"])
    print(f"wrote {out} ({args.format}; core {meta['core']}, state {state}, {meta['mode']} mode)\n"
          f"  inputs:  {names}\n  outputs: {outs}")
    if multiagent is not None:
        agents = ", ".join(multiagent["agents"]) if multiagent["agents"] else "its agents"
        which = f"policy {args.policy!r}" if args.policy is not None else "one policy"
        print(f"  multi-agent: {which} for {agents}; keep one state per agent id (docs/runtime.md, "
              f"\"Many agents\")")
    if args.no_verify:
        return 0
    try:
        step_fn = onnx_step_fn(out) if args.format == "onnx" else torchscript_step_fn(out)
    except ImportError as exc:
        print(f"  not verified: {exc.name} is not installed (pip install onnxruntime)")
        return 0
    report = compare_with_torch(policy, step_fn)
    ok = report["max_abs_diff"] <= 1e-4 and report["actions_equal"]
    print(f"  check against torch over {report['steps']} steps x {report['batch']} agents: max abs diff "
          f"{report['max_abs_diff']:.2e}, greedy actions {'identical' if report['actions_equal'] else 'DIFFER'}"
          f" -> {'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
