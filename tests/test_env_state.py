"""Env snapshots (agents/rollout/env_state.py): exact round trips, clear refusals, and no object built from a file."""

from __future__ import annotations

import collections
import dataclasses
import json
import pickle
import random
import shutil

import faulty_envs  # noqa: F401  (registers tests/NoSnapshot-v0)
import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the built-in ids)
from agents.rollout.env_state import EnvStateError, decode, encode, restore_env, snapshot_env
from agents.run.checkpoint import LATEST
from agents.train import cli as train

BUILT_IN = sorted(env_id for env_id in gym.registry if env_id.startswith("mnemo/"))


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_every_built_in_env_continues_exactly_from_its_snapshot(env_id):
    a = gym.make(env_id)
    a.reset(seed=3)
    a.action_space.seed(5)
    for _ in range(23):
        _, _, terminated, truncated, _ = a.step(a.action_space.sample())
        if terminated or truncated:
            a.reset()
    snapshot = json.loads(json.dumps(snapshot_env(a)))  # through JSON text, as in a checkpoint
    b = gym.make(env_id)
    b.reset(seed=99)
    restore_env(b, snapshot)
    for _ in range(120):
        action = a.action_space.sample()
        ra, rb = a.step(action), b.step(action)
        assert all(np.array_equal(x, y) for x, y in zip(ra[:4], rb[:4], strict=True))
        if ra[2] or ra[3]:
            assert np.array_equal(a.reset()[0], b.reset()[0])


@dataclasses.dataclass
class Ball:
    x: float
    v: np.ndarray


@dataclasses.dataclass(frozen=True)
class Params:
    g: float = 9.8


def test_plain_values_round_trip_exactly():
    value = {
        "i": 2**80, "f": 0.1, "nan": float("nan"), "s": "x", "none": None, "flag": True,
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3), "u8": np.array([255], np.uint8),
        "scalar": np.float32(1.5), "tuple": (1, (2.0, "a")), "list": [np.int64(3)],
        "deque": collections.deque([1, 2], 4),
        "gen": np.random.default_rng(7), "mt": np.random.Generator(np.random.MT19937(3)),
        "legacy": np.random.RandomState(4), "py": random.Random(5), (1, 2): "tuple key",
    }
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["i"] == 2**80 and back["f"] == 0.1 and np.isnan(back["nan"]) and back[(1, 2)] == "tuple key"
    assert back["arr"].dtype == np.float32 and np.array_equal(back["arr"], value["arr"])
    assert type(back["scalar"]) is np.float32 and back["tuple"] == (1, (2.0, "a"))
    assert back["deque"].maxlen == 4 and list(back["deque"]) == [1, 2]
    for name in ("gen", "mt"):
        assert back[name].random() == value[name].random()
    assert back["legacy"].rand() == value["legacy"].rand()
    assert back["py"].random() == value["py"].random()


def test_objects_are_written_into_the_env_s_own_objects():
    ball, params = Ball(1.0, np.zeros(2)), Params()
    data = json.loads(json.dumps(encode({"ball": Ball(2.0, np.ones(2)), "params": Params(1.6)})))
    target = {"ball": ball, "params": params}
    out = decode(data, target)
    assert out["ball"] is ball and ball.x == 2.0 and np.array_equal(ball.v, np.ones(2))
    assert out["params"] == Params(1.6)  # frozen: replaced by an equal copy of the same class


def test_snapshots_never_build_an_object_from_a_class_name():
    evil = {"$": "object", "class": "os.system", "attrs": {}}
    with pytest.raises(EnvStateError, match="the env holds nothing"):
        decode(evil, None)
    with pytest.raises(EnvStateError, match=r"holds a os\.system"):
        decode(evil, Ball(1.0, np.zeros(1)))
    with pytest.raises(EnvStateError, match="refusing array dtype"):
        decode({"$": "ndarray", "dtype": "|O", "shape": [1], "data": ""})
    with pytest.raises(EnvStateError, match="unknown bit generator"):
        decode({"$": "Generator", "state": {"$": "dict", "items": [["bit_generator", "Evil"]]}})


def test_an_env_with_opaque_state_is_named():
    env = gym.make("tests/NoSnapshot-v0")
    env.reset(seed=0)
    with pytest.raises(EnvStateError, match=r"UnsnapshottableEnv \(layer \d\)\.lock is a .*lock"):
        snapshot_env(env)


class CustomStateEnv(gym.Env):
    """Keeps its state in an opaque object, but says how to save it."""

    observation_space = gym.spaces.Discrete(100)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.opaque = iter(range(1000))  # an iterator: not plain data
        self.count = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        self.count = next(self.opaque)
        return self.count % 100, 0.0, False, False, {}

    def mnemo_get_state(self) -> dict:
        return {"count": self.count, "rng": self.np_random}

    def mnemo_set_state(self, state: dict) -> None:
        self.count = state["count"]
        self.opaque = iter(range(self.count + 1, 1000))
        self.np_random.bit_generator.state = state["rng"].bit_generator.state


def test_an_env_can_define_its_own_state_protocol():
    a, b = CustomStateEnv(), CustomStateEnv()
    a.reset(seed=1)
    for _ in range(5):
        a.step(0)
    restore_env(b, json.loads(json.dumps(snapshot_env(a))))
    assert [a.step(0)[0] for _ in range(3)] == [b.step(0)[0] for _ in range(3)]


def test_a_snapshot_of_another_env_is_refused():
    a, b = gym.make("mnemo/TMaze-v0"), gym.make("mnemo/CartPoleNoVel-v1")
    a.reset(seed=0)
    b.reset(seed=0)
    with pytest.raises(EnvStateError, match="differ from the snapshot"):
        restore_env(b, snapshot_env(a))


def test_a_malicious_latest_checkpoint_in_a_run_is_refused_and_runs_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--num-envs", "4", "--num-steps", "32", "--bptt-len", "8", "--num-minibatches", "2",
             "--update-epochs", "1", "--eval-episodes", "0", "--no-progress", "--checkpoint-every", "128"]
    assert train.main(["--run-dir", str(run), "--total-steps", "256", *flags]) == 0
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(run / "checkpoints" / LATEST, "wb") as f:
        pickle.dump({"format": "mnemo-checkpoint", "version": 2, "meta": Exploit()}, f)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert train.main(["--resume", str(run), "--total-steps", "384"]) == 0
    assert "latest.pt was refused (it holds pickled objects" in capsys.readouterr().err  # then resumed from previous
    from agents.run.checkpoint import load_policy

    with pytest.warns(UserWarning, match="latest.pt was refused"):
        load_policy(copy)
    assert not marker.exists()
