"""The registries of the extension points that a setting names: memory cores (``--core``) and collector
backends (``--backend``). One registry per extension point; the command line's choices, config validation,
``make_core`` / ``make_collector``, the docs check and the tests all read it, so a name registered here is
accepted everywhere and nothing else keeps a list.

This module sits beside ``agents/config.py`` (layer 1: no torch, no Ray): the built-in entries name their
class or factory as ``"module:attribute"`` and are imported only when one is built, so validating a config
imports nothing of the model and Ray stays optional. A user's own core or backend registers the object itself:

```python
from agents.registry import register_core

@register_core("tanh_rnn", summary="h' = tanh(W x + U h)")
class TanhRNNCore(nn.Module):
    @classmethod
    def from_config(cls, config, input_size): ...
```

Registered before ``build_parser()`` runs, the name is among ``--core``'s choices; registered before
``TrainConfig.validate()``, it passes validation. Action heads are picked by the action space's type, never by a
setting, so their registry lives with them (``agents.model.action_heads.ACTION_HEADS``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class UnknownEntryError(ValueError):
    """A setting names an entry that no registry holds; the message lists the registered names."""


@dataclass(frozen=True)
class Entry:
    """One registered name.

    Attributes:
        name: what the setting says (``--core lstm``).
        target: the class or factory, or ``"package.module:attribute"`` to import when it is first built.
        summary: one line for the docs and error messages.
        options: settings that only this entry reads (``stack_len`` for the stack core); validation refuses them
            with an entry that does not read them.
    """

    name: str
    target: Any
    summary: str = ""
    options: tuple[str, ...] = ()


class Registry:
    """Names -> entries for one extension point, in registration order.

    Args:
        what: what an entry is, for messages ("memory core").
        flag: the setting that names one ("--core").
        register_with: how a user adds one, for messages ("agents.registry.register_core").
    """

    def __init__(self, what: str, flag: str, register_with: str):
        self.what, self.flag, self.register_with = what, flag, register_with
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: Any, summary: str = "", options: tuple[str, ...] = ()) -> None:
        """Register ``target`` under ``name``; a name taken by another target is refused (re-adding the same is a
        no-op, so a module imported twice registers once)."""
        old = self._entries.get(name)
        if old is not None and old.target is not target:
            raise ValueError(f"{self.flag} {name!r} is already registered ({old.target!r}); pick another name.")
        self._entries[name] = Entry(name, target, summary, tuple(options))

    def register(self, name: str, summary: str = "", options: tuple[str, ...] = ()) -> Callable[[Any], Any]:
        """Decorator form of ``add``: returns the class or function unchanged."""

        def decorate(target: Any) -> Any:
            self.add(name, target, summary, options)
            return target

        return decorate

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a test's own entry when it is done)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def entry(self, name: str) -> Entry:
        """The entry ``name`` registers, or UnknownEntryError listing the registered names."""
        if name not in self._entries:
            raise UnknownEntryError(self.unknown_message(name))
        return self._entries[name]

    def load(self, name: str) -> Any:
        """The class or factory registered as ``name``, importing its module if it is given as a string."""
        target = self.entry(name).target
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
        return target

    def unknown_message(self, name: object) -> str:
        return (f"{self.flag} must be one of {', '.join(self._entries)}, got {name!r}; register your own "
                f"{self.what} with {self.register_with} before the config is validated.")

    def options_of_others(self, name: str) -> dict[str, str]:
        """Settings that some other entry reads and ``name`` does not: setting -> the entry that reads it."""
        own = set(self.entry(name).options)
        return {option: other.name for other in self._entries.values() for option in other.options
                if option not in own and other.name != name}


CORES = Registry("memory core", "--core", "agents.registry.register_core")
CORES.add("lstm", "agents.model.cores:LSTMCore", "an LSTM: state (h, c), gates i, f, o")
CORES.add("gru", "agents.model.cores:GRUCore", "a GRU: state h, gates r, z")
CORES.add("none", "agents.model.cores:NoCore", "no memory: the memoryless baseline")
CORES.add("stack", "agents.model.cores:StackCore", "a frame stack of the last --stack-len encodings",
          options=("stack_len",))

BACKENDS = Registry("collector backend", "--backend", "agents.registry.register_backend")
BACKENDS.add("local", "agents.rollout.collector:local_collector", "the vector env in this process")
BACKENDS.add("ray", "agents.rollout.ray_collector:ray_collector", "Ray actors, each with its share of the envs",
             options=("num_workers", "envs_per_worker", "ray_address"))


def register_core(name: str, summary: str = "", options: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """Register a memory core class under ``name`` (``--core name``); see ``agents.model.cores.MemoryCore``."""
    return CORES.register(name, summary, options)


def register_backend(name: str, summary: str = "", options: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """Register a ``CollectorFactory`` (config -> Collector) under ``name`` (``--backend name``)."""
    return BACKENDS.register(name, summary, options)
