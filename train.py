"""Train a recurrent (LSTM) PPO agent from the command line.

    python train.py                                  # built-in memory task, tuned preset
    python train.py --env-id mnemo/CartPoleNoVel-v1 --total-steps 100000
    python train.py --env-id MyGame-v0 --env-import my_package.envs --core gru
    python train.py --resume runs/my_run             # continue a stopped run

Settings resolve in order: dataclass defaults < the env's preset (built-in
envs) < flags given on the command line. ``--help`` lists every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from agents.checkpoint import CheckpointError
from agents.config import ConfigError, TrainConfig
from agents.spaces import UnsupportedSpaceError

_UNSET = object()


def _str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def _int_tuple(text: str) -> tuple[int, ...]:
    """'64,64' -> (64, 64); '' or 'none' -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(int(part) for part in text.split(","))


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"key\": 1}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    """One flag per config field (``bptt_len`` -> ``--bptt-len``), grouped by section, help from the field."""
    parser = argparse.ArgumentParser(
        description="Train a recurrent PPO agent (LSTM, GRU or memoryless) on a Gymnasium env.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    for section in dataclasses.fields(TrainConfig):
        section_cls = section.default_factory  # type: ignore[misc]
        group = parser.add_argument_group(section.name, section_cls.__doc__)
        hints = typing.get_type_hints(section_cls)
        for f in dataclasses.fields(section_cls):
            flag = "--" + f.name.replace("_", "-")
            default = getattr(getattr(defaults, section.name), f.name)
            kwargs: dict[str, Any] = {"default": _UNSET, "dest": f.name,
                                      "help": f"{f.metadata['help']} (default: {default!r})"}
            hint = hints[f.name]
            if f.metadata.get("repeatable"):
                kwargs.update(action="append", metavar="MODULE", default=None)
            elif hint is bool:
                kwargs.update(nargs="?", const=True, type=_str2bool, metavar="BOOL")
            elif typing.get_origin(hint) is typing.Literal:
                kwargs.update(choices=typing.get_args(hint))
            elif hint == tuple[int, ...]:
                kwargs.update(type=_int_tuple, metavar="N,N")
            elif hint is dict:
                kwargs.update(type=_json_dict, metavar="JSON")
            elif hint == (float | None):
                kwargs.update(type=_optional_float)
            elif hint == (str | None):
                kwargs.update(type=str)
            else:
                kwargs.update(type=hint)
            group.add_argument(flag, **kwargs)
            if hint is bool:
                group.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_const",
                                   const=False, default=_UNSET, help=argparse.SUPPRESS)
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="Continue the run in RUN_DIR from its latest checkpoint; other flags may change "
                             "the step budget or run settings but not the network.")
    parser.formatter_class = argparse.HelpFormatter  # defaults are already in the help texts
    return parser


def resolve_config(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse flags into a validated config: defaults < preset < explicit flags (or the resumed run's config)."""
    args = build_parser().parse_args(argv)
    explicit = {k: v for k, v in vars(args).items() if v is not _UNSET and k != "resume"}
    if explicit.get("env_import") is None:
        explicit.pop("env_import")
    else:
        explicit["env_import"] = tuple(explicit["env_import"])
    if args.resume:
        saved = Path(args.resume) / "config.json"
        if not saved.is_file():
            raise ConfigError(f"--resume {args.resume}: no config.json there; is it a run directory?")
        config = TrainConfig.from_dict(json.loads(saved.read_text()))
        config = config.with_overrides({**explicit, "run_dir": args.resume})
        return config.validate(), True

    from envs.presets import preset_for

    env_id = explicit.get("env_id", TrainConfig().env.env_id)
    config = TrainConfig().with_overrides({**preset_for(env_id), **explicit})
    return config.validate(), False


def main(argv: list[str] | None = None) -> int:
    try:
        config, resume = resolve_config(argv)
        import torch

        torch.set_num_threads(config.run.torch_threads)
        from agents.trainer import Trainer

        trainer = Trainer(config, resume=resume)
        print(f"Training {config.env.env_id} ({config.policy.core}, {config.ppo.total_steps} steps) "
              f"-> {trainer.run_dir}", flush=True)
        summary = trainer.train()
    except (ConfigError, CheckpointError, UnsupportedSpaceError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
