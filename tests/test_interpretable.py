"""Soft decision tree (kdlab.interpretable) and the notebook 08 exercise checks."""

from __future__ import annotations

import math

import pytest
import torch

import kdlab
import kdlab.interpretable as it
from kdlab.data import Batch
from kdlab.errors import ParameterError, ParameterTypeError

from .fixtures import prepared


def batch_of(x, y):
    n = len(y)
    return Batch(x, y, torch.arange(n), torch.zeros(n, dtype=torch.long))


def make_tree(depth=3, k=4, shape=(1, 4, 4), seed=0, beta=1.0):
    return kdlab.models.create("soft_tree", num_classes=k, input_shape=shape, depth=depth, beta=beta, seed=seed)


def test_registered_and_builds_by_name():
    assert "soft_tree" in kdlab.models.names()
    tree = make_tree(depth=3)
    assert isinstance(tree, it.SoftDecisionTree)
    assert tree.kdlab_spec["kwargs"] == {"depth": 3, "beta": 1.0}
    assert tree.filters().shape == (7, 1, 4, 4)
    assert tree.leaf_distributions().shape == (8, 4)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_path_probabilities_sum_to_one(depth):
    p = torch.rand(6, 2 ** depth - 1, generator=torch.Generator().manual_seed(depth))
    leaves, reach = it.path_probabilities(p, return_reach=True)
    assert leaves.shape == (6, 2 ** depth)
    torch.testing.assert_close(leaves.sum(1), torch.ones(6))
    assert torch.all(reach[:, 0] == 1)
    # Each inner node's reach is the sum of the leaves below it; the root's children split it.
    torch.testing.assert_close(reach[:, 1] + reach[:, 2] if depth > 1 else reach[:, 0], torch.ones(6))


def test_depth2_path_probabilities_by_hand():
    p = torch.tensor([[0.2, 0.7, 0.4]])  # root, left child, right child: probability of going RIGHT
    expected = torch.tensor([[0.8 * 0.3, 0.8 * 0.7, 0.2 * 0.6, 0.2 * 0.4]])
    torch.testing.assert_close(it.path_probabilities(p), expected)


def test_forward_returns_logits_of_the_leaf_mixture():
    tree = make_tree(depth=3)
    x = torch.randn(5, 1, 4, 4)
    logits = tree(x)
    assert logits.shape == (5, 4) and torch.isfinite(logits).all()
    probs = logits.softmax(1)
    mixture = tree.path_probabilities(x) @ tree.leaf_distributions()
    torch.testing.assert_close(probs, mixture, atol=1e-6, rtol=1e-5)
    # log of a distribution: the logits are already normalised log-probabilities.
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(5), atol=1e-5, rtol=1e-5)
    assert tree.last_penalty is not None and tree.last_penalty.requires_grad


def test_penalty_zero_when_balanced_positive_when_not():
    depths = it.node_depths(2)
    balanced = torch.full((8, 3), 0.5)
    _, reach = it.path_probabilities(balanced, return_reach=True)
    assert float(it.balance_penalty(balanced, reach, depths)) == pytest.approx(0.0, abs=1e-6)
    skewed = torch.tensor([[0.9, 0.5, 0.5]] * 8)
    _, reach = it.path_probabilities(skewed, return_reach=True)
    value = float(it.balance_penalty(skewed, reach, depths))
    assert value == pytest.approx(-0.5 * math.log(4 * 0.9 * 0.1))  # only the root (weight 2^0) is unbalanced


def test_penalty_weights_by_reach_and_decays_with_depth():
    # The root sends everything left, so the right child's decisions must not count.
    p = torch.tensor([[0.0, 0.5, 0.99], [0.0, 0.5, 0.01]]).repeat(4, 1)
    p[:, 0] = 0.5  # balanced root; reach of node 2 is 0.5 for every input
    _, reach = it.path_probabilities(p, return_reach=True)
    alpha = it.average_decisions(p, reach)
    assert float(alpha[2]) == pytest.approx(0.5)
    p_child = torch.tensor([[0.5, 0.9, 0.5]] * 4)
    _, reach = it.path_probabilities(p_child, return_reach=True)
    assert float(it.balance_penalty(p_child, reach)) == pytest.approx(0.5 * -0.5 * math.log(4 * 0.9 * 0.1))


def test_tree_learns_a_separable_problem():
    # Two classes told apart by the sign of one pixel: a depth-1 tree must get them all right.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 2, 2, generator=gen)
    y = (x[:, 0, 0, 0] > 0).long()
    tree = make_tree(depth=1, k=2, shape=(1, 2, 2))
    objective = it.BalancedTree(tree, strength=0.01)
    opt = torch.optim.Adam(tree.parameters(), lr=0.1)
    for _ in range(80):
        loss, logs = objective(tree(x), batch_of(x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (tree(x).argmax(1) == y).float().mean() > 0.97
    assert (tree.predict_max_path(x) == y).float().mean() > 0.97
    assert set(logs) == {"ce", "balance"}


def test_fit_trains_the_tree_through_the_one_loop():
    ds = kdlab.data.load("digits", seed=0)
    tree = kdlab.models.create("soft_tree", num_classes=ds.num_classes, input_shape=ds.input_shape, depth=4, seed=0)
    hist = kdlab.train.fit(tree, ds, objective=it.BalancedTree(tree, strength=0.1), epochs=3, lr=0.01,
                           device="cpu", progress=False)
    assert "balance" in hist.records[0]
    assert kdlab.metrics.evaluate(tree, ds.test)["accuracy"] > 0.5  # chance is 0.1


def test_distillation_base_uses_teacher():
    tree = make_tree()
    x, y = torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 2])
    t = torch.randn(3, 4)
    obj, batch = prepared(lambda teacher: it.BalancedTree(
        tree, kdlab.objectives.Distillation(teacher, temperature=2.0, alpha=0.5), strength=0.0), t, y)
    assert obj.teacher is obj.base.teacher and obj.teacher.mode == "given"  # prepare reached the base's teacher
    logits = tree(x)
    loss, logs = obj(logits, batch._replace(x=x))
    assert {"kd", "ce", "balance"} <= set(logs) and torch.isfinite(loss)
    torch.testing.assert_close(loss, kdlab.losses.distillation_loss(logits, t, y, 2.0, 0.5))  # strength 0
    assert obj.describe()["balance_strength"] == 0.0


def test_a_distilled_balanced_tree_trains_inside_fit():
    ds = kdlab.data.load("digits", seed=0)
    teacher = kdlab.models.create("mlp", num_classes=10, input_shape=ds.input_shape, hidden=(32,), seed=1)
    kdlab.train.fit(teacher, ds, epochs=1, lr=3e-3, progress=False)
    tree = kdlab.models.create("soft_tree", num_classes=ds.num_classes, input_shape=ds.input_shape, depth=3, seed=0)
    objective = it.BalancedTree(tree, kdlab.objectives.Distillation(teacher, temperature=2.0), strength=0.1)
    history = kdlab.train.fit(tree, ds, objective=objective, epochs=1, lr=0.01, progress=False)
    assert {"kd", "ce", "balance"} <= set(history.last) and history.config["teacher_logits"] == "cached"


def test_decision_path_and_max_path():
    tree = make_tree(depth=3)
    path = tree.decision_path(torch.randn(1, 4, 4))
    assert len(path) == 3 and path[0][0] == 0
    for (node, p), (child, _) in zip(path, path[1:]):
        assert child == 2 * node + (2 if p >= 0.5 else 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"depth": 0}, "depth"), ({"depth": 11}, "depth=11"), ({"beta": 0.0}, "beta"), ({"depth": 2.5}, "depth")])
def test_bad_parameters_raise_clear_errors(kwargs, message):
    with pytest.raises((ParameterError, ParameterTypeError), match=message):
        kdlab.models.create("soft_tree", num_classes=3, input_shape=(1, 4, 4), **kwargs)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ParameterError, match="2\\^depth - 1"):
        it.path_probabilities(torch.rand(2, 4))
    with pytest.raises(ParameterTypeError, match="SoftDecisionTree"):
        it.BalancedTree(torch.nn.Linear(2, 2))
    with pytest.raises(ParameterError, match="forward pass"):
        it.BalancedTree(make_tree())(torch.randn(2, 4), batch_of(torch.randn(2, 1, 4, 4), torch.tensor([0, 1])))


def test_figures_draw():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tree = make_tree(depth=3)
    for fig in (it.plot_tree(tree), it.plot_tree(tree, levels=2),
                it.plot_templates({"a": torch.randn(4, 1, 4, 4), "b": torch.randn(4, 1, 4, 4)})):
        assert len(fig.axes) > 0
        plt.close(fig)


# --- exercise checks: right answers pass, typical mistakes get specific feedback --------------

def right_paths(p):
    r, left, right = p[:, 0], p[:, 1], p[:, 2]
    return torch.stack([(1 - r) * (1 - left), (1 - r) * left, r * (1 - right), r * right], 1)


def test_check_leaf_paths(capsys):
    assert kdlab.checks.check_leaf_paths(right_paths)
    assert not kdlab.checks.check_leaf_paths(lambda p: right_paths(p).flip(1))
    assert "wrong way round" in capsys.readouterr().out
    fb = kdlab.checks.check_leaf_paths(lambda p: right_paths(p)[:, :3])
    assert not fb and "shape" in fb.message
    fb = kdlab.checks.check_leaf_paths(lambda p: right_paths(p) * 2)
    assert not fb and "sum to 1" in fb.message


def test_check_leaf_paths_unanswered_does_not_raise():
    def todo(p):
        raise NotImplementedError
    fb = kdlab.checks.check_leaf_paths(todo)
    assert not fb and not fb.done
    assert not kdlab.checks.check_leaf_paths(None).done


def right_penalty(p, reach, depths):
    alpha = (reach * p).sum(0) / reach.sum(0)
    return (2.0 ** -depths.double() * -0.5 * torch.log(4 * alpha * (1 - alpha))).sum()


def test_check_balance_penalty():
    assert kdlab.checks.check_balance_penalty(right_penalty)

    def unweighted(p, reach, depths):
        return right_penalty(p, torch.ones_like(reach), depths)
    assert "reaching" in kdlab.checks.check_balance_penalty(unweighted).message

    def no_decay(p, reach, depths):
        return right_penalty(p, reach, torch.zeros_like(depths))
    assert "decay" in kdlab.checks.check_balance_penalty(no_decay).message

    def paper_form(p, reach, depths):
        alpha = (reach * p).sum(0) / reach.sum(0)
        return (2.0 ** -depths.double() * -0.5 * (torch.log(alpha) + torch.log(1 - alpha))).sum()
    assert "log 2" in kdlab.checks.check_balance_penalty(paper_form).message
    assert "sign" in kdlab.checks.check_balance_penalty(lambda *a: -right_penalty(*a)).message
    assert not kdlab.checks.check_balance_penalty(lambda *a: 1.0)
    assert not kdlab.checks.check_balance_penalty(None).done
