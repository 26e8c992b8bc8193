"""Fixtures shared by the unit tests (one copy each, built once per session)."""

import pytest

import kdlab


@pytest.fixture(scope="session")
def digits():
    """The offline digits dataset, split with seed 0."""
    return kdlab.data.load("digits", seed=0)


@pytest.fixture(scope="session")
def mlp_teacher(digits):
    """A small MLP trained for two epochs on digits: a teacher whose logits are not uniform."""
    model = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(32,), seed=1)
    kdlab.train.fit(model, digits, epochs=2, lr=3e-3, progress=False)
    return model.eval()
