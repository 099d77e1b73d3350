"""Command-line parsing that the mnemo commands share: errors in one line, and step counts written as people write them.

``OneLineParser`` is an ``argparse.ArgumentParser`` whose errors are one line that names the problem and the fix,
with exit code 2, instead of the whole usage block before the error::

    error: --core: 'lsmt' is not a choice; did you mean 'lstm'? Choices: lstm, gru, none, stack.
    error: --hidden-size: 'abc' is not a whole number. (mnemo train --help lists every flag.)

``step_count`` reads ``100000``, ``1e5``, ``100000.0``, ``100k``, ``1M`` and ``2.5M`` as the same kind of number
and refuses one that is not whole.
"""

from __future__ import annotations

import argparse
import difflib
import re
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

# What argparse's "invalid <type> value" means, by the type's name.
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "step_count": "a whole number of steps"}
_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}


def step_count(text: str) -> int:
    """A number of steps: ``100000``, ``1e5``, ``100000.0``, ``100k``, ``1M``, ``2.5M``, ``1_000``."""
    cleaned = text.strip().replace("_", "").replace(",", "")
    scale = _SUFFIXES.get(cleaned[-1:].lower(), 1)
    number = cleaned[:-1] if scale != 1 else cleaned
    try:
        value = Decimal(number) * scale  # exact: 2.5M is 2500000, never 2499999.9999
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of steps; write it as 100000, 1e5, 100k "
                                         f"or 2.5M") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of steps; write it as 100000, 1e5, "
                                         f"100k or 2.5M")
    return int(value)


def choice_message(value: Any, choices: Any) -> str:
    """"'lsmt' is not a choice; did you mean 'lstm'? Choices: lstm, gru, none"."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{value!r} is not a choice{hint} Choices: {', '.join(names)}"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the problem, a close match or the fix) and exit with 2."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, choice_message(value, action.choices))

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self._readable(message)}\n")

    def _readable(self, message: str) -> str:
        message = re.sub(r"^argument (\S+?)(/\S+)?: ", r"\1: ", message)  # "argument --core/-c: " -> "--core: "
        invalid = re.match(r"^(\S+): invalid (\w+) value: (.*)$", message)
        if invalid:
            flag, kind, value = invalid.groups()
            message = f"{flag}: {value} is not {_TYPE_WORDS.get(kind, 'a valid ' + kind)}"
        unknown = re.match(r"^unrecognized arguments: (.*)$", message)
        if unknown:
            message = f"unknown argument {unknown.group(1)}" + self._close_flag(unknown.group(1).split()[0])
        if "Choices:" in message or message.endswith("?"):
            return message if message.endswith("?") else message + "."
        command = f"python {self.prog}" if self.prog.endswith(".py") else self.prog
        return f"{message}. ({command} --help lists every flag.)"

    def _close_flag(self, given: str) -> str:
        flags = [s for action in self._actions for s in action.option_strings if action.help != argparse.SUPPRESS]
        close = difflib.get_close_matches(given.split("=")[0], flags, n=1)
        return f"; did you mean {close[0]}?" if close else ""
