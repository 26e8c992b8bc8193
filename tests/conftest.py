"""Fixtures shared by the unit tests (one copy each, built once per session)."""

import pytest

import kdlab


@pytest.fixture(scope="session")
def digits():
    """The offline digits dataset, split with seed 0."""
    return kdlab.data.load("digits", seed=0)


def _dataset(fixture: str, name: str, **options):
    """A session fixture called ``fixture``: ``kdlab.data.load(name, **options)``, loaded once."""
    return pytest.fixture(scope="session", name=fixture)(lambda: kdlab.data.load(name, **options))


mnist5k = _dataset("mnist5k", "mnist-5k", seed=0)
pydoc = _dataset("pydoc", "pydoc", context=32)  # notebook 12's text, in windows of 32 characters
synthetic = _dataset("synthetic", "synthetic", context=16)  # the language whose next-symbol law is known


@pytest.fixture(scope="session")
def mlp_teacher(digits):
    """A small MLP trained for two epochs on digits: a teacher whose logits are not uniform."""
    model = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(32,), seed=1)
    kdlab.train.fit(model, digits, epochs=2, lr=3e-3, progress=False)
    return model.eval()
