"""Train a recurrent (LSTM) PPO agent from the command line.

    python train.py                                  # built-in memory task, tuned preset
    python train.py --env-id mnemo/CartPoleNoVel-v1 --total-steps 100000
    python train.py --env-id MyGame-v0 --env-import my_package.envs --core gru
    python train.py --resume runs/my_run             # continue a stopped run

Settings resolve in order: dataclass defaults < the env's preset (built-in
envs) < flags given on the command line. ``--help`` lists every flag.

Stopping: the first Ctrl-C (or SIGTERM) finishes the current iteration,
saves a checkpoint and exits with 130 (143); a second one aborts at once,
leaving the last checkpoint intact. Exit codes: 0 done, 1 the env or the
training failed (a checkpoint was saved where possible), 2 bad input (nothing
written), 130 / 143 stopped by a signal.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import typing
import warnings
from pathlib import Path
from typing import Any

from agents.arguments import OneLineParser, step_count
from agents.config import ConfigError, TrainConfig, env_label, flag_name
from agents.registry import BACKENDS
from agents.run.checkpoint import CheckpointError
from agents.spaces import UnsupportedSpaceError

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2

_UNSET = object()


def _str2bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_bool(text: str) -> bool | None:
    return None if text.lower() in ("none", "auto") else _str2bool(text)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "") else float(text)


def _optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


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
    parser = OneLineParser(
        description="Train a recurrent PPO agent (LSTM, GRU or memoryless) on a Gymnasium env.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = TrainConfig()
    for section in dataclasses.fields(TrainConfig):
        section_cls = section.default_factory  # type: ignore[misc]
        group = parser.add_argument_group(section.name, section_cls.__doc__)
        hints = typing.get_type_hints(section_cls)
        for f in dataclasses.fields(section_cls):
            flag = "--" + flag_name(f.name)
            default = getattr(getattr(defaults, section.name), f.name)
            kwargs: dict[str, Any] = {"default": _UNSET, "dest": f.name,
                                      "help": f"{f.metadata['help']} (default: {default!r})"}
            hint = hints[f.name]
            if f.metadata.get("repeatable"):
                kwargs.update(action="append", metavar="MODULE", default=None)
            elif hint is bool:
                kwargs.update(nargs="?", const=True, type=_str2bool, metavar="BOOL")
            elif hint == (bool | None):  # none: derived from the env (config.json's "derived" says how)
                kwargs.update(nargs="?", const=True, type=_optional_bool, metavar="BOOL|none")
            elif f.metadata.get("choices") is not None:  # a registry (agents/registry.py): the names registered now
                kwargs.update(choices=f.metadata["choices"].names())
            elif typing.get_origin(hint) is typing.Literal:
                kwargs.update(choices=typing.get_args(hint))
            elif hint == tuple[int, ...]:
                kwargs.update(type=_int_tuple, metavar="N,N")
            elif hint is dict:
                kwargs.update(type=_json_dict, metavar="JSON")
            elif hint == (float | None):
                kwargs.update(type=_optional_float)
            elif hint == (int | None):
                kwargs.update(type=_optional_int)
            elif hint is int and f.name.endswith(("_steps", "_every")):  # counts of env steps: 1e5, 100k, 2.5M
                kwargs.update(type=step_count, metavar="STEPS")
            elif hint == (str | None):
                kwargs.update(type=str)
            else:
                kwargs.update(type=hint)
            group.add_argument(flag, **kwargs)
            if hint in (bool, bool | None):
                group.add_argument("--no-" + flag_name(f.name), dest=f.name, action="store_const",
                                   const=False, default=_UNSET, help=argparse.SUPPRESS)
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="Continue the run in RUN_DIR from its latest checkpoint (previous.pt if latest.pt "
                             "is damaged); other flags may change the step budget or run settings but not the "
                             "network or --num-envs.")
    parser.add_argument("--allow-env-change", action="store_true",
                        help="With --resume: let --env-id / --env-kwargs name another env than the run trained on "
                             "(same spaces); config.json's preset then records the change.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Start afresh in --run-dir even if it holds a run: its checkpoints, events and "
                             "config are deleted (a directory with other files is refused).")
    parser.formatter_class = argparse.HelpFormatter  # defaults are already in the help texts
    return parser


def resolve_config(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse flags into a validated config: defaults < preset < explicit flags (or the resumed run's config)."""
    return resolve_args(build_parser().parse_args(argv))


def resolve_args(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """``resolve_config`` for parsed arguments; returns (config, resume)."""
    explicit = {k: v for k, v in vars(args).items()
                if v is not _UNSET and k not in ("resume", "overwrite", "allow_env_change")}
    if explicit.get("env_import") is None:
        explicit.pop("env_import")
    else:
        explicit["env_import"] = tuple(explicit["env_import"])
    if args.resume:
        if "run_dir" in explicit and Path(explicit["run_dir"]).resolve() != Path(args.resume).resolve():
            raise ConfigError(f"--resume {args.resume} and --run-dir {explicit['run_dir']} name different "
                              f"directories; --resume alone says where the run is.")
        config = _saved_config(Path(args.resume))
        explicit = _env_change(config, explicit, args)
        if explicit.get("backend") in BACKENDS:  # resumed on another backend: the others' own settings no longer apply
            explicit = {**dict.fromkeys(BACKENDS.options_of_others(explicit["backend"])), **explicit}
        config = config.with_overrides({**explicit, "run_dir": args.resume})
        return config.validate(), True

    from envs.presets import preset_for

    env_id = explicit.get("env_id", TrainConfig().env.env_id)
    preset_name = explicit.pop("preset", "auto")
    if preset_name not in ("auto", "none"):
        raise ConfigError(f"--preset must be auto or none, got {preset_name!r}.")
    preset = preset_for(env_id) if preset_name == "auto" else {}
    if explicit.get("num_workers") is not None and explicit.get("envs_per_worker") is not None:
        # --num-workers W --envs-per-worker E say how many envs run; a preset's --num-envs gives way to them.
        explicit.setdefault("num_envs", explicit["num_workers"] * explicit["envs_per_worker"])
    # The config records the preset that was applied, so config.json says where its settings came from.
    applied = env_id if preset else "none"
    config = TrainConfig().with_overrides({**preset, **explicit, "preset": applied})
    return config.validate(), False


def _env_change(saved: TrainConfig, explicit: dict, args: argparse.Namespace) -> dict:
    """Refuse a resume on another env than the run trained on, unless --allow-env-change says it is meant; then
    ``explicit`` gains a preset that records the change (config.json keeps it)."""
    env = saved.env
    changed = [f"--{flag_name(name)} {explicit[name] if name == 'env_id' else json.dumps(explicit[name])}"
               for name in ("env_id", "env_kwargs") if name in explicit and explicit[name] != getattr(env, name)]
    if not changed:
        return explicit
    trained = env_label(env.env_id, env.env_kwargs)
    if not getattr(args, "allow_env_change", False):
        raise ConfigError(f"--resume {args.resume}: the run was trained on {trained}, and {' '.join(changed)} asks "
                          f"for another env; drop {'them' if len(changed) > 1 else 'it'} to resume, or add "
                          f"--allow-env-change to train on the new env from here on.")
    kwargs = explicit.get("env_kwargs", env.env_kwargs)
    new = env_label(explicit.get("env_id", env.env_id), kwargs)
    return {**explicit, "preset": f"{env.preset}, then --allow-env-change from {trained} to {new}"}


def _saved_config(run_dir: Path) -> TrainConfig:
    """The run's config.json, or (if that is missing or damaged) the config inside its latest checkpoint."""
    saved = run_dir / "config.json"
    try:
        return TrainConfig.from_dict(json.loads(saved.read_text()))
    except FileNotFoundError:
        problem = "no config.json there"
    except (json.JSONDecodeError, ConfigError, TypeError, AttributeError) as exc:
        problem = f"its config.json is damaged ({exc})"
    from agents.run.checkpoint import load_latest

    try:
        _, meta, path, _ = load_latest(run_dir)
    except CheckpointError:
        raise ConfigError(f"--resume {run_dir}: {problem}, and no readable checkpoint; is it a run directory?") \
            from None
    warnings.warn(f"--resume {run_dir}: {problem}; using the config stored in {path}.", stacklevel=2)
    return TrainConfig.from_dict(meta["config"])


@contextlib.contextmanager
def stop_on_signals(trainer: Any):
    """First SIGINT / SIGTERM: ask the trainer to save and stop after this iteration; second: abort."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_reason is not None:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        trainer.request_stop(name)
        print(f"\n{name}: finishing this iteration, then saving a checkpoint and stopping "
              f"(press Ctrl-C again to abort at once; the last checkpoint stays intact).", file=sys.stderr,
              flush=True)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def note_sparse_noise(trainer) -> None:
    """Say once, at the iteration it happens, that the --sparse-noise rule switched correlated noise on."""
    rule = trainer.sparse_noise
    if rule.on and rule.decided_at_step == trainer.global_step:
        print(f"note: {rule.summary()['why']} (--sparse-noise 0 keeps it off).", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file, flush=True)


def main(argv: list[str] | None = None) -> int:
    trainer = None
    show_warning = warnings.showwarning
    warnings.showwarning = _show_warning  # CLI users need the message, not the source line
    try:
        args = build_parser().parse_args(argv)
        config, resume = resolve_args(args)
        import torch

        torch.set_num_threads(config.run.torch_threads)
        from agents.train.trainer import Trainer

        trainer = Trainer(config, resume=resume, overwrite=args.overwrite)
        print(header(trainer, resume), flush=True)
        for note in (trainer.device_note, trainer.schedule_note):
            if note is not None:
                print(note, file=sys.stderr, flush=True)
        with stop_on_signals(trainer):
            summary = trainer.train(note_sparse_noise)
    except (ConfigError, CheckpointError, UnsupportedSpaceError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        where = f" The last checkpoint in {trainer.run_dir / 'checkpoints'} is intact." if trainer else ""
        print(f"Aborted.{where}", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:
        from agents.rollout.collector import EnvError, NonFiniteError
        from agents.train.trainer import TrainingDiverged

        if not isinstance(exc, (EnvError, NonFiniteError, TrainingDiverged)):
            raise
        if isinstance(exc, EnvError) and exc.env_traceback and not exc.from_worker:
            print(exc.env_traceback, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        warnings.showwarning = show_warning
    if trainer.stop_reason is not None:
        print(f"Stopped by {trainer.stop_reason} at step {trainer.global_step}; checkpoint saved to "
              f"{summary['checkpoint']}. Continue with: {command()} --resume {trainer.run_dir}", file=sys.stderr)
        return 128 + getattr(signal, trainer.stop_reason, signal.SIGINT)
    print(json.dumps(summary, indent=2))
    print(f"Watch it play: mnemo watch {trainer.run_dir} --inspect    Curves: tensorboard --logdir {trainer.run_dir}",
          file=sys.stderr)
    print(eval_line(summary), file=sys.stderr)
    rising = still_rising_line(summary, trainer.run_dir, trainer.config.ppo.total_steps)
    if rising is not None:
        print(rising, file=sys.stderr)
    return 0


def command() -> str:
    """How the user started training, for the commands we suggest: ``mnemo train`` or ``python train.py``."""
    return "mnemo train" if sys.argv[0] == "mnemo train" else "python train.py"


def header(trainer: Any, resume: bool) -> str:
    """The first line: env, core, steps (and why the bar runs past --total-steps), run directory, and what the
    progress bar's ret= is."""
    config = trainer.config
    budget = config.step_budget
    rounded = ""
    if budget != config.ppo.total_steps:
        rounded = (f", --total-steps {config.ppo.total_steps:,} rounded up to whole rollouts of "
                   f"{config.env.num_envs} envs x {config.ppo.num_steps} steps")
    return (f"{'Resuming' if resume else 'Training'} {config.env.env_id} ({config.policy.core}, "
            f"{trainer.global_step:,}/{budget:,} steps{rounded}) -> {trainer.run_dir}; the bar's ret= is the mean "
            f"return of the last {trainer.recent_returns.maxlen} training episodes")


def still_rising_line(summary: dict, run_dir: Path, total_steps: int) -> str | None:
    """When the training return was still rising at the end (summary's train_return_trend), say so and how to go
    on: three times the budget, on the same run."""
    trend = summary.get("train_return_trend")
    if not trend or not trend["still_rising"]:
        return None
    return (f"The training return was still rising at the end ({trend['change']:+.3g} over the last fifth of the "
            f"steps, noise {trend['noise']:.2g}); to train on: {command()} --resume {run_dir} --total-steps "
            f"{3 * total_steps}")


def eval_line(summary: dict) -> str:
    """One line with the final evaluation's greedy and sampled returns (whichever were measured)."""
    parts = [f"{label} {summary[key]:.3g} +- {summary[key.replace('mean', 'std')]:.2g}"
             for label, key in (("greedy", "eval_return_mean"), ("sampled", "eval_sampled_return_mean"))
             if summary.get(key) is not None]
    if not parts:
        return "Eval: skipped (--eval-episodes 0)."
    return f"Eval return over {summary['eval_episodes']} episodes each: " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
