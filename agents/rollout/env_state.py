"""Snapshot and restore a Gymnasium env's state as JSON, so that a resumed run continues exactly.

Envs cannot be pickled into a checkpoint (loading pickles can run code), and
most envs have no state API. What they do have is plain data: a classic-control
env is a few floats, a numpy array and a random generator; ``TimeLimit`` is a
step counter. This module reads that data, layer by layer from the outermost
wrapper down to ``env.unwrapped``, and writes it back.

Per layer (a wrapper or the base env):

- If the layer's class defines ``mnemo_get_state()`` and
  ``mnemo_set_state(state)``, those are used (the state must be JSON data, or
  contain numpy arrays / generators from the list below). The names are
  prefixed so they cannot clash with an env's own ``get_state`` / ``set_state``
  (MuJoCo's ``set_state(qpos, qvel)``).
- Otherwise its instance attributes are captured generically. Supported values:
  ``None``, bool, int, float, str; numpy arrays (numeric or bool) and numpy
  scalars; ``np.random.Generator``, ``np.random.RandomState``,
  ``random.Random``; and lists, tuples, dicts, deques, dataclasses and plain
  Python objects made of these. Spaces, env specs, functions, classes and
  modules are static and skipped, as is the wrapped ``env`` (it is the next
  layer).
- Anything else (a pygame surface, a physics-engine handle, an open file, a
  nested env) makes the env *unsnapshottable*: ``snapshot_env`` raises
  ``EnvStateError`` naming the attribute, and training resumes by restarting
  episodes instead.

Restoring never creates an object from a class named in the file: values are
written into the objects the freshly made env already holds (arrays copied in
place, generators' bit-generator states set, dataclass fields and object
attributes assigned), and a snapshot whose layer classes or object types do
not match the env is refused. Only builtins, numpy arrays and the numpy bit
generators PCG64, PCG64DXSM, MT19937, Philox and SFC64 are ever constructed.

Not captured (documented limits): class-level attributes mutated at run time,
state held in C extensions, and the global ``random`` / ``np.random`` streams
(an env drawing from those is not reproducible in the first place).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import enum
import random
import types
from typing import Any

import gymnasium as gym
import numpy as np

SNAPSHOT_VERSION = 1
_MAX_DEPTH = 8
_BIT_GENERATORS = {"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"}
_ARRAY_KINDS = "biufc"  # bool, signed, unsigned, float, complex


class EnvStateError(ValueError):
    """The env's state cannot be captured or does not fit the env it is restored into."""


def is_static(value: Any) -> bool:
    """Values that describe the env rather than its state: never captured, never restored."""
    return isinstance(value, (gym.Space, gym.envs.registration.EnvSpec, types.FunctionType, types.MethodType,
                              types.BuiltinFunctionType, types.ModuleType, type, staticmethod, classmethod,
                              property))


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# Classes that moved to another module since snapshots were first written: a snapshot names a class by the
# path it had then, so a checkpoint saved before a move still restores into the same class.
_MOVED_CLASSES = {
    "agents.previous_inputs.PreviousActionReward": "agents.rollout.previous_inputs.PreviousActionReward",
    "agents.vector_env.GuardedEnv": "agents.rollout.vector_env.GuardedEnv",
    "envs.memory.TMazeEnv": "envs.memory.tmaze.TMazeEnv",
    "envs.memory.GatedMemoryEnv": "envs.memory.gated_memory.GatedMemoryEnv",
    "envs.memory.CountRecallEnv": "envs.memory.count_recall.CountRecallEnv",
}


def _saved_class(name: str) -> str:
    """The current path of a class that a snapshot names (``_MOVED_CLASSES``)."""
    return _MOVED_CLASSES.get(name, name)


def _own_slots(obj: Any) -> list[str]:
    """Names stored in ``__slots__`` anywhere in the class hierarchy (not in ``__dict__``)."""
    names: list[str] = []
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s not in ("__dict__", "__weakref__")]
    return names


# --------------------------------------------------------------------------- encoding
def encode(value: Any, where: str = "value", depth: int = 0) -> Any:
    """A JSON-ready description of ``value``; raises EnvStateError naming ``where`` if it is not plain data."""
    if depth > _MAX_DEPTH:
        raise EnvStateError(f"{where} is nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"$": "enum", "class": _qualname(value), "name": value.name}
    if type(value) in (int, float):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise EnvStateError(f"{where} is a numpy array of dtype {value.dtype} (only numbers and bools)")
        data = np.ascontiguousarray(value)
        return {"$": "ndarray", "dtype": data.dtype.str, "shape": list(data.shape),
                "data": base64.b64encode(data.tobytes()).decode("ascii")}
    if isinstance(value, np.generic):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise EnvStateError(f"{where} is a numpy scalar of dtype {value.dtype}")
        return {"$": "npscalar", "dtype": value.dtype.str,
                "data": base64.b64encode(np.asarray(value).tobytes()).decode("ascii")}
    if isinstance(value, np.random.Generator):
        return {"$": "Generator", "state": encode(value.bit_generator.state, where, depth + 1)}
    if isinstance(value, np.random.RandomState):
        return {"$": "RandomState", "state": encode(value.get_state(legacy=False), where, depth + 1)}
    if isinstance(value, random.Random):
        return {"$": "Random", "state": encode(value.getstate(), where, depth + 1)}
    if isinstance(value, list):
        return [encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, tuple) and type(value) is tuple:
        return {"$": "tuple", "items": [encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, collections.deque):
        return {"$": "deque", "maxlen": value.maxlen,
                "items": [encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, dict) and type(value) is dict:
        return {"$": "dict", "items": [[encode(k, f"{where} key", depth + 1), encode(v, f"{where}[{k!r}]", depth + 1)]
                                       for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name), f"{where}.{f.name}", depth + 1)
                  for f in dataclasses.fields(value) if not is_static(getattr(value, f.name))}
        return {"$": "dataclass", "class": _qualname(value), "fields": fields}
    if _is_plain_object(value):
        if _own_slots(value):
            raise EnvStateError(f"{where} ({_qualname(value)}) keeps attributes in __slots__")
        attrs = {k: encode(v, f"{where}.{k}", depth + 1) for k, v in vars(value).items() if not is_static(v)}
        return {"$": "object", "class": _qualname(value), "attrs": attrs}
    raise EnvStateError(f"{where} is a {_qualname(value)}, which is not plain data")


def _is_plain_object(value: Any) -> bool:
    """An instance of a Python class (not a C type, an env or a space) whose attributes live in ``__dict__``."""
    return (hasattr(value, "__dict__") and not isinstance(value, (gym.Env, gym.Space))
            and type(value).__module__ not in ("builtins", "numpy", "torch"))


def decode(data: Any, current: Any = None, where: str = "value") -> Any:
    """The value ``data`` describes, written into ``current`` where possible (arrays, generators, objects)."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        if isinstance(current, list) and len(current) == len(data):
            for i, item in enumerate(data):
                current[i] = decode(item, current[i], f"{where}[{i}]")
            return current
        return [decode(item, None, f"{where}[{i}]") for i, item in enumerate(data)]
    if not isinstance(data, dict) or "$" not in data:
        raise EnvStateError(f"{where}: malformed snapshot entry {str(data)[:80]!r}")
    kind = data["$"]
    if kind == "ndarray":
        array = _array_from(data, where)
        if (isinstance(current, np.ndarray) and current.shape == array.shape and current.dtype == array.dtype
                and current.flags.writeable):
            np.copyto(current, array)
            return current
        return array
    if kind == "npscalar":
        return _array_from({**data, "shape": []}, where)[()]
    if kind == "Generator":
        state = decode(data["state"], None, where)
        name = state.get("bit_generator") if isinstance(state, dict) else None
        if name not in _BIT_GENERATORS:
            raise EnvStateError(f"{where}: unknown bit generator {name!r}")
        if isinstance(current, np.random.Generator) and type(current.bit_generator).__name__ == name:
            current.bit_generator.state = state
            return current
        generator = np.random.Generator(getattr(np.random, name)())
        generator.bit_generator.state = state
        return generator
    if kind == "RandomState":
        state = decode(data["state"], None, where)
        target = current if isinstance(current, np.random.RandomState) else np.random.RandomState()
        target.set_state(state)
        return target
    if kind == "Random":
        state = _to_tuples(decode(data["state"], None, where))
        target = current if isinstance(current, random.Random) else random.Random()
        target.setstate(state)
        return target
    if kind == "tuple":
        items = data["items"]
        olds = current if isinstance(current, tuple) and len(current) == len(items) else (None,) * len(items)
        return tuple(decode(item, old, f"{where}[{i}]") for i, (item, old) in enumerate(zip(items, olds, strict=True)))
    if kind == "deque":
        return collections.deque((decode(item, None, where) for item in data["items"]), maxlen=data["maxlen"])
    if kind == "dict":
        pairs = [(_hashable(decode(k, None, f"{where} key")), v) for k, v in data["items"]]
        if isinstance(current, dict) and set(current) == {k for k, _ in pairs}:
            for key, value in pairs:
                current[key] = decode(value, current[key], f"{where}[{key!r}]")
            return current
        return {key: decode(value, None, f"{where}[{key!r}]") for key, value in pairs}
    if kind == "enum":
        if not isinstance(current, enum.Enum) or _qualname(current) != _saved_class(data["class"]):
            raise EnvStateError(f"{where}: the snapshot holds a {data['class']}, the env does not")
        try:
            return type(current)[data["name"]]
        except KeyError:
            raise EnvStateError(f"{where}: {data['class']} has no member {data['name']!r}") from None
    if kind in ("dataclass", "object"):
        # Never build an object from a class named in a file: only write into the one the env already holds.
        if current is None or _qualname(current) != _saved_class(data["class"]):
            raise EnvStateError(f"{where}: the snapshot holds a {data['class']}, the env holds "
                                f"{'nothing' if current is None else _qualname(current)}")
        values = data["fields"] if kind == "dataclass" else data["attrs"]
        decoded = {name: decode(value, getattr(current, name, None), f"{where}.{name}")
                   for name, value in values.items()}
        if kind == "dataclass" and current.__dataclass_params__.frozen:
            try:
                return dataclasses.replace(current, **decoded)
            except (TypeError, ValueError) as exc:
                raise EnvStateError(f"{where}: cannot rebuild frozen {data['class']} ({exc})") from exc
        for name, value in decoded.items():
            setattr(current, name, value)
        return current
    raise EnvStateError(f"{where}: unknown snapshot entry type {kind!r}")


def _array_from(data: dict, where: str) -> np.ndarray:
    dtype = np.dtype(data["dtype"])
    if dtype.kind not in _ARRAY_KINDS:
        raise EnvStateError(f"{where}: refusing array dtype {dtype}")
    raw = base64.b64decode(data["data"])
    shape = tuple(int(n) for n in data["shape"])
    if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise EnvStateError(f"{where}: array data does not match its shape {shape} and dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _to_tuples(value: Any) -> Any:
    """random.Random.setstate wants nested tuples."""
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


# --------------------------------------------------------------------------- envs
def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _has_protocol(layer: gym.Env) -> bool:
    cls = type(layer)
    return callable(getattr(cls, "mnemo_get_state", None)) and callable(getattr(cls, "mnemo_set_state", None))


def snapshot_env(env: gym.Env) -> dict:
    """The state of every layer of ``env`` as JSON-ready data.

    Raises:
        EnvStateError: some layer holds a value that is not plain data (the message names it).
    """
    layers = []
    for depth, layer in enumerate(_layers(env)):
        name = f"{type(layer).__name__} (layer {depth})"
        if _has_protocol(layer):
            layers.append({"class": _qualname(layer), "custom": encode(layer.mnemo_get_state(), name)})
            continue
        if _own_slots(layer):
            raise EnvStateError(f"{name} keeps attributes in __slots__; give it mnemo_get_state/mnemo_set_state")
        attrs = {}
        for key, value in vars(layer).items():
            if key == "env" and isinstance(layer, gym.Wrapper):
                continue
            if is_static(value):
                continue
            if isinstance(value, gym.Env):
                raise EnvStateError(f"{name}.{key} holds another env; give the layer mnemo_get_state/mnemo_set_state")
            attrs[key] = encode(value, f"{name}.{key}")
        layers.append({"class": _qualname(layer), "attrs": attrs})
    return {"version": SNAPSHOT_VERSION, "layers": layers}


def restore_env(env: gym.Env, snapshot: dict) -> None:
    """Write a ``snapshot_env`` result back into an env made the same way (same id and arguments).

    Raises:
        EnvStateError: the snapshot does not fit this env (other wrappers, classes or object types).
    """
    if not isinstance(snapshot, dict) or snapshot.get("version") != SNAPSHOT_VERSION:
        raise EnvStateError("env snapshot has an unknown format")
    layers = _layers(env)
    saved = snapshot["layers"]
    if [_qualname(layer) for layer in layers] != [_saved_class(entry["class"]) for entry in saved]:
        raise EnvStateError(
            f"env layers {[type(layer).__name__ for layer in layers]} differ from the snapshot's "
            f"{[entry['class'].rsplit('.', 1)[-1] for entry in saved]}")
    for depth, (layer, entry) in enumerate(zip(layers, saved, strict=True)):
        name = f"{type(layer).__name__} (layer {depth})"
        if "custom" in entry:
            layer.mnemo_set_state(decode(entry["custom"], None, name))
            continue
        for key, value in entry["attrs"].items():
            current = vars(layer).get(key)
            new = decode(value, current, f"{name}.{key}")
            if new is not current:
                vars(layer)[key] = new  # as captured: straight into the instance dict, past any __setattr__
