"""The ``mnemo`` command: one entry point for training, watching, exporting and playing.

    mnemo train [flags]                  train an agent (the same as python train.py; --help lists every flag)
    mnemo watch RUN [--inspect]          watch it play in a window, or --record FILE.gif / .mp4
    mnemo export RUN [--format onnx]     export it for a game loop (ONNX or TorchScript), checked against torch
    mnemo play [ENV_ID]                  play a built-in game yourself
    mnemo versus RUN                     play FlickerPong against a trained agent
    mnemo match A B [--games N]          pit two runs (or a run and a bot) against each other in a multi-agent env

Each subcommand's module is imported only when it is asked for, so ``mnemo export`` never loads pygame and
``mnemo play`` never loads torch.
"""

from __future__ import annotations

import difflib
import sys
from importlib import import_module

# name -> (module with main(argv), one line for the usage)
COMMANDS = {
    "train": ("agents.train.cli", "train an agent (the same as python train.py)"),
    "watch": ("agents.watch.viewer", "watch a trained agent play, with --inspect its memory, --record to a file"),
    "export": ("agents.deploy.export_cli", "export a trained policy to ONNX or TorchScript"),
    "play": ("envs.play", "play a built-in game yourself (keyboard)"),
    "versus": ("apps.versus", "play FlickerPong against a trained agent"),
    "match": ("agents.deploy.match", "pit two runs, or a run and a bot, against each other: wins, score, Elo"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
    return ("usage: mnemo COMMAND [ARGS]   (mnemo COMMAND --help for its flags)\n\ncommands:\n"
            + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean 'mnemo {close[0]}'?" if close else f" Commands: {', '.join(COMMANDS)}."
        print(f"error: unknown command {name!r}.{hint}", file=sys.stderr)
        return 2
    sys.argv[0] = f"mnemo {name}"  # the subcommand's usage lines name what was typed
    code = import_module(COMMANDS[name][0]).main(rest)
    return 0 if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
