"""OnnxRunner: PolicyRunner's game-loop API over an ONNX export, equal to it, and importable without torch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from registry_cases import core_names, core_settings
from test_runner import BOX, make_policy, random_obs

from agents.deploy.export import export_onnx
from agents.deploy.onnx_runner import OnnxRunner, OnnxRuntimeMissingError
from agents.deploy.runner import PolicyRunner, UnknownAgentError

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]

# (agent ids acting, ids reset before the step, ids removed before the step) per step: agents join, leave,
# come back fresh, reset mid-game, act in a different order, and tuple ids act as one id each.
SCRIPT = [
    ([0, 1, 2], [], []),
    ([0, 1, 2], [], []),
    ([2, 0], [1], []),
    ([1, ("red", 3), 2], [2, "never-seen"], [0]),
    ([("red", 3), 0, 1], [], []),
    ([0, 1, ("red", 3), 2], [], [2]),
    ([2, 1], [("red", 3)], []),
]


@pytest.mark.parametrize("kwargs,act_space", [
    *[(core_settings(core), spaces.Discrete(3)) for core in core_names()],
    ({"core": "gru"}, spaces.Discrete(3, start=1)),
    ({"num_layers": 2, "separate_critic": True}, spaces.Discrete(3)),
    ({"carry_across_episodes": True}, spaces.Discrete(3)),
    ({}, spaces.Box(-1.0, 1.0, (2,), np.float32)),
    ({"core": "stack", "carry_across_episodes": True}, spaces.Box(-1.0, 1.0, (2,), np.float32)),
])
def test_onnx_runner_equals_policy_runner_as_agents_join_leave_and_reset(tmp_path, kwargs, act_space):
    check_onnx_runner_equals_policy_runner(make_policy(act_space=act_space, **kwargs), tmp_path)


def check_onnx_runner_equals_policy_runner(policy, tmp_path) -> None:
    """OnnxRunner over the policy's ONNX export equals PolicyRunner as agents join, leave and reset."""
    act_space = policy.action_space
    export_onnx(policy, tmp_path / "p.onnx")
    torch_runner, onnx_runner = PolicyRunner(policy), OnnxRunner(tmp_path / "p.onnx")
    observations = iter(random_obs(BOX, 100, seed=5))
    for ids, resets, removes in SCRIPT:
        for runner in (torch_runner, onnx_runner):
            runner.reset(resets)
            runner.remove(removes)
        batch = np.stack([next(observations) for _ in ids])
        want, want_info = torch_runner.act(batch, agent_ids=ids, return_info=True)
        got, info = onnx_runner.act(batch, agent_ids=ids, return_info=True)
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(info.value, want_info.value, atol=1e-5)
        np.testing.assert_allclose(info.logprob, want_info.logprob, atol=1e-4)
        np.testing.assert_array_equal(info.episode_start, want_info.episode_start)
        assert onnx_runner.agent_ids == torch_runner.agent_ids
        for agent_id in ids:
            np.testing.assert_allclose(onnx_runner.get_state(agent_id), torch_runner.get_state(agent_id).numpy(),
                                       atol=1e-5)
    obs = next(observations)
    single = onnx_runner.act(obs)  # one agent, no ids: agent 0, one observation in, one action out
    np.testing.assert_allclose(single, torch_runner.act(obs), atol=1e-5)
    assert np.shape(single) == act_space.shape


def test_onnx_runner_state_access_sampling_and_errors(tmp_path):
    policy = make_policy()
    export_onnx(policy, tmp_path / "p.onnx")
    runner = OnnxRunner.load(tmp_path / "p.onnx", deterministic=False, seed=0)
    obs = random_obs(BOX, 4, seed=1)
    runner.reset(7)  # unknown: a no-op
    assert runner.agent_ids == ()
    runner.act(obs[0])
    saved = runner.get_state()
    first = runner.act(obs[1], deterministic=True)
    runner.set_state(0, saved)  # rewind one step
    assert runner.act(obs[1], deterministic=True) == first
    draws = [OnnxRunner(tmp_path / "p.onnx", deterministic=False, seed=3).act(obs[0]) for _ in range(2)]
    assert draws[0] == draws[1] and 0 <= draws[0] < 3
    assert runner.act([obs[0], obs[1]], agent_ids=["a", "b"]).shape == (2,)  # a list of single observations
    with pytest.raises(ValueError, match="looks like a batch: pass agent_ids"):
        runner.act(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"distinct.*repeated: 1"):
        runner.act(np.zeros((2, 4), np.float32), agent_ids=[1, 1])
    with pytest.raises(UnknownAgentError, match="remove: unknown agent id"):
        runner.remove("nobody")
    with pytest.raises(ValueError, match=r"expected a state of shape \(S, L, H\) = \(2, 1, 32\)"):
        runner.set_state(0, np.zeros((2, 32)))


def test_onnx_runner_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch):
    export_onnx(make_policy(), tmp_path / "p.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OnnxRuntimeMissingError, match="pip install onnxruntime"):
        OnnxRunner(tmp_path / "p.onnx")


def test_onnx_runner_imports_and_runs_without_torch(tmp_path):
    export_onnx(make_policy(), tmp_path / "p.onnx")
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import numpy as np\n"
        "from agents.deploy.onnx_runner import OnnxRunner\n"
        f"runner = OnnxRunner({str(tmp_path / 'p.onnx')!r})\n"
        "actions = runner.act(np.zeros((3, 4), np.float32), agent_ids=[(0, 1), (0, 2), (1, 1)])\n"
        "runner.remove([(0, 2)])\n"
        "print('actions', actions.shape, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "actions (3,) False" in result.stdout
