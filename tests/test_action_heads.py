"""Action heads: each action kind's greedy action, env action, export outputs and inspector rows agree."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.model.action_heads import (
    BernoulliHead,
    CategoricalHead,
    GaussianHead,
    MultiCategoricalHead,
    make_action_head,
)
from agents.spaces import UnsupportedSpaceError

# space, head class, kind name, export output name, export dtype of the greedy action
KINDS = {
    "discrete": (spaces.Discrete(4, start=-1), CategoricalHead, "categorical", "logits", "int64"),
    "multidiscrete": (spaces.MultiDiscrete([2, 3, 4]), MultiCategoricalHead, "multi_categorical", "logits", "int64"),
    "box": (spaces.Box(np.array([-1.0, -2.0], np.float32), np.array([1.0, 0.5], np.float32)), GaussianHead,
            "gaussian", "mean", "float32"),
    "box_2d": (spaces.Box(-1.0, 1.0, (2, 2), np.float32), GaussianHead, "gaussian", "mean", "float32"),
    "multibinary": (spaces.MultiBinary(3), BernoulliHead, "bernoulli", "logits", "int8"),
}


def _head(name: str):
    torch.manual_seed(0)
    head = make_action_head(KINDS[name][0], 6)
    with torch.no_grad():
        head.linear.weight.normal_(0.0, 2.0)  # outputs far from zero: distinct greedy actions per row
    return head


@pytest.mark.parametrize("name", list(KINDS))
def test_make_action_head_picks_the_kind(name):
    space, cls, kind, output_name, export_dtype = KINDS[name]
    head = make_action_head(space, 6)
    assert type(head) is cls and head.kind == kind
    assert (head.output_name, head.export_dtype) == (output_name, export_dtype)


@pytest.mark.parametrize("name", list(KINDS))
@torch.no_grad()
def test_greedy_action_is_the_mode_and_a_valid_env_action(name):
    head, space = _head(name), KINDS[name][0]
    out = head.linear(torch.randn(16, 6, generator=torch.Generator().manual_seed(1)))
    dist = head.distribution(out)
    greedy = head.greedy(out)
    assert torch.equal(greedy, dist.mode())
    stored = head.shape_actions(greedy)
    assert tuple(stored.shape) == (16, *head.action_shape)
    assert torch.equal(head.flat_actions(stored), greedy)
    for a in head.to_env(stored):
        assert space.contains(a.item() if np.ndim(a) == 0 else a), (a, space)


@pytest.mark.parametrize("name", list(KINDS))
@torch.no_grad()
def test_export_action_equals_the_env_action_of_the_greedy_one(name):
    head = _head(name)
    out = head.linear(torch.randn(16, 6, generator=torch.Generator().manual_seed(2)))
    reference = head.to_env(head.shape_actions(head.greedy(out)))
    exported = head.export_action(out, head.export_buffers()).numpy()
    assert exported.dtype == np.dtype(head.export_dtype)
    assert head.same_actions(exported, reference)
    # The export's raw output, normalised, is what the distribution holds.
    np.testing.assert_allclose(head.normalise_export(out.detach().numpy()),
                               head.export_reference(head.distribution(out)), atol=1e-5)


def test_export_metadata_of_each_kind():
    assert _head("discrete").export_metadata() == {"action_start": -1}
    assert _head("multidiscrete").export_metadata() == {"nvec": [2, 3, 4]}
    assert _head("multibinary").export_metadata() == {}
    assert _head("box").export_metadata() == {"log_std": [0.0, 0.0], "action_low": [-1.0, -2.0],
                                              "action_high": [1.0, 0.5]}
    assert set(_head("box").export_buffers()) == {"low", "high"}
    assert _head("discrete").export_buffers() == {}


@pytest.mark.parametrize("name", list(KINDS))
@torch.no_grad()
def test_inspector_rows_match_the_labels(name):
    head = _head(name)
    out = head.linear(torch.randn(1, 6, generator=torch.Generator().manual_seed(3)))
    dist = head.distribution(out)
    action = head.shape_actions(dist.mode())[0]
    values, chosen = head.action_rows(dist, action)
    labels = head.action_labels()
    assert values.shape == (len(labels),)
    assert np.all(values <= 1.0) and np.all(values >= (-1.0 if head.rows_signed else 0.0))
    assert all(0 <= c < len(labels) for c in chosen)


@torch.no_grad()
def test_inspector_labels_and_rows_of_each_kind():
    head = _head("discrete")
    assert head.action_labels() == ["-1", "0", "1", "2"]
    assert head.action_labels(["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    assert head.action_labels(["too", "few"]) == ["-1", "0", "1", "2"]
    assert _head("multidiscrete").action_labels()[:3] == ["0:0", "0:1", "1:0"]
    assert _head("box").action_labels() == ["mean a0", "mean a1"]
    assert _head("multibinary").action_labels() == ["p(b=1) 0", "p(b=1) 1", "p(b=1) 2"]
    assert (_head("box").rows_title, _head("box").rows_signed) == ("action mean", True)
    assert (_head("discrete").rows_title, _head("discrete").rows_signed) == ("action prob", False)
    # Multi-discrete: the chosen rows are offset into the concatenated parts.
    head = _head("multidiscrete")
    dist = head.distribution(head.linear(torch.zeros(1, 6)))
    values, chosen = head.action_rows(dist, torch.tensor([1, 2, 0]))
    assert chosen == [1, 2 + 2, 2 + 3 + 0]
    np.testing.assert_allclose(values.sum(), 3.0, atol=1e-5)  # three distributions' probabilities


def test_describe_action_names_a_discrete_action_when_labels_are_known():
    head = _head("discrete")
    assert head.describe_action(np.int64(1), ["north", "east", "south", "west"]) == "1 (south)"
    assert head.describe_action(np.int64(1)) == "1"
    assert head.describe_action(np.int64(1), ["-1", "0", "1", "2"]) == "1"  # a label equal to the number
    assert _head("box").describe_action(np.array([0.5, -0.25], np.float32)) == "[ 0.5  -0.25]"


def test_unsupported_action_space_is_a_clear_error():
    with pytest.raises(UnsupportedSpaceError, match="Supported"):
        make_action_head(spaces.Dict({"a": spaces.Discrete(2)}), 4)
