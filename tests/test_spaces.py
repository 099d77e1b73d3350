"""Observation encoders and action heads for every supported space; clear errors for the rest."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.config import PolicyConfig
from agents.model.policy import RecurrentActorCritic
from agents.spaces import UnsupportedSpaceError, space_from_json, space_to_json
from agents.trees import obs_to_tensor

OBS_SPACES = {
    "box": spaces.Box(-1, 1, (3,), np.float32),
    "box_2d": spaces.Box(-1, 1, (2, 3), np.float32),
    "image_hwc": spaces.Box(0, 255, (16, 16, 3), np.uint8),
    "image_chw_gray": spaces.Box(0, 255, (1, 20, 16), np.uint8),
    "grid_codes": spaces.Box(0, 10, (5, 5, 3), np.uint8),
    "discrete": spaces.Discrete(5, start=2),
    "multidiscrete": spaces.MultiDiscrete([3, 4]),
    "multibinary": spaces.MultiBinary(4),
    "dict": spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32), "room": spaces.Discrete(3),
                         "view": spaces.Box(0, 255, (8, 8, 1), np.uint8)}),
    "tuple": spaces.Tuple((spaces.Discrete(2), spaces.Box(-1, 1, (1,), np.float32))),
}
ACTION_SPACES = {
    "discrete": spaces.Discrete(3),
    "discrete_start": spaces.Discrete(3, start=-1),
    "multidiscrete": spaces.MultiDiscrete([2, 5]),
    "box": spaces.Box(-2, 2, (2,), np.float32),
    "multibinary": spaces.MultiBinary(3),
}


def _batch(space, n, seed=0):
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {k: np.stack([s[k] for s in samples]) for k in space.spaces}
    if isinstance(space, spaces.Tuple):
        return tuple(np.stack([s[i] for s in samples]) for i in range(len(space.spaces)))
    return np.stack(samples)


@pytest.mark.parametrize("obs_name", list(OBS_SPACES))
@pytest.mark.parametrize("act_name", list(ACTION_SPACES))
def test_policy_acts_and_evaluates_in_every_space(obs_name, act_name):
    obs_space, act_space = OBS_SPACES[obs_name], ACTION_SPACES[act_name]
    policy = RecurrentActorCritic(obs_space, act_space, PolicyConfig(hidden_size=8, normalize_obs=True))
    obs = obs_to_tensor(_batch(obs_space, 4), "cpu")
    out = policy.step(obs, policy.initial_state(4), torch.ones(4))
    assert out.action.shape == (4, *policy.action_head.action_shape)
    env_actions = policy.action_head.to_env(out.action)
    for a in env_actions:
        assert act_space.contains(a.item() if np.ndim(a) == 0 else a), (a, act_space)
    seq_obs = obs_to_tensor(_batch(obs_space, 12), "cpu")
    seq_obs = {k: v.reshape(3, 4, *v.shape[1:]) for k, v in seq_obs.items()} if isinstance(seq_obs, dict) else (
        tuple(v.reshape(3, 4, *v.shape[1:]) for v in seq_obs) if isinstance(seq_obs, tuple)
        else seq_obs.reshape(3, 4, *seq_obs.shape[1:]))
    actions = torch.stack([out.action] * 3)
    logprob, entropy, value = policy.evaluate(seq_obs, policy.initial_state(4), torch.zeros(3, 4), actions)
    assert logprob.shape == entropy.shape == value.shape == (3, 4)
    assert torch.isfinite(logprob).all() and torch.isfinite(entropy).all()


def test_images_are_encoded_by_a_cnn_from_either_layout():
    for name in ("image_hwc", "image_chw_gray"):
        policy = RecurrentActorCritic(OBS_SPACES[name], spaces.Discrete(2), PolicyConfig())
        assert any(isinstance(m, torch.nn.Conv2d) for m in policy.modules())


def test_ortho_init_gives_the_cnn_orthogonal_weights_and_features_that_follow_the_frames():
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)

    env = gym.make("mnemo/DarkCatchPixels-v0")
    env.action_space.seed(0)
    frames, (obs, _) = [], env.reset(seed=0)
    for _ in range(100):
        frames.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    frames = torch.as_tensor(np.stack(frames))
    spread = {}
    for ortho in (True, False):
        torch.manual_seed(0)
        policy = RecurrentActorCritic(env.observation_space, env.action_space, PolicyConfig(ortho_init=ortho))
        with torch.no_grad():
            spread[ortho] = float(policy.preprocess(frames).std(dim=0).mean())
        if ortho:
            for layer in policy.preprocess.modules():
                if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                    w = layer.weight.flatten(1)
                    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                    assert torch.allclose(gram, 2 * torch.eye(len(gram)), atol=1e-4)
                    assert not layer.bias.any()
    # PyTorch's default initialisation leaves the features almost constant over an episode.
    assert spread[True] > 10 * spread[False]


@pytest.mark.parametrize("space", [
    spaces.Text(5),
    spaces.Sequence(spaces.Discrete(2)),
    spaces.Dict({"ok": spaces.Discrete(2), "bad": spaces.Text(3)}),
])
def test_unsupported_observation_space_names_itself_and_the_alternatives(space):
    with pytest.raises(UnsupportedSpaceError) as err:
        RecurrentActorCritic(space, spaces.Discrete(2), PolicyConfig())
    message = str(err.value)
    assert "not supported" in message and "Supported:" in message


@pytest.mark.parametrize("space", [spaces.Text(4), spaces.Box(-1, 1, (), np.float32), spaces.Box(0, 3, (2,), np.int64)])
def test_unsupported_action_space_is_named(space):
    with pytest.raises(UnsupportedSpaceError, match="Action space"):
        RecurrentActorCritic(OBS_SPACES["box"], space, PolicyConfig())


@pytest.mark.parametrize("name", list(OBS_SPACES) + [f"action_{k}" for k in ACTION_SPACES])
def test_spaces_round_trip_through_json(name):
    space = OBS_SPACES[name] if name in OBS_SPACES else ACTION_SPACES[name.removeprefix("action_")]
    assert space_from_json(space_to_json(space)) == space


def test_box_actions_are_clipped_for_the_env_only():
    policy = RecurrentActorCritic(OBS_SPACES["box"], ACTION_SPACES["box"], PolicyConfig())
    action = torch.tensor([[5.0, -5.0]])
    assert policy.action_head.to_env(action).tolist() == [[2.0, -2.0]]
    assert action.tolist() == [[5.0, -5.0]]
