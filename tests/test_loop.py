"""The one loop a learner can read: fit stays short, and the kd_loss taught in notebook 03
is the code that trains, reached from fit in three calls (STYLE.md, "What to absorb next")."""

import ast
import inspect
import math
import sys
import textwrap
from pathlib import Path

import pytest

import kdlab
from kdlab import objectives

MAX_FIT_LINES = 80  # nanoGPT's training loop is about 80 lines at top level
MAX_FIT_PARAMETERS = 16


def student(ds):
    return kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape, hidden=(16,), seed=0)


def _is_torch_module_call(code) -> bool:
    # nn.Module.__call__ -> _wrapped_call_impl -> _call_impl -> forward: torch's plumbing, not kdlab's.
    return Path(code.co_filename).parts[-4:] == ("torch", "nn", "modules", "module.py")


class KdLossSpy:
    """Stands in for kdlab.losses.kd_loss (a breakpoint there): counts the calls, records the
    values and the kdlab frames between fit and here, and delegates to the real function."""

    def __init__(self, real):
        self.real = real
        self.calls, self.values, self.paths = 0, [], []

    def __call__(self, student_logits, teacher_logits, temperature, **kwargs):
        self.calls += 1
        frame, path = sys._getframe(1), []
        while frame is not None and frame.f_code is not kdlab.train.fit.__code__:
            if not _is_torch_module_call(frame.f_code):
                path.append(frame.f_code)
            frame = frame.f_back
        self.paths.append(path if frame is not None else None)  # None: not called from inside fit
        value = self.real(student_logits, teacher_logits, temperature, **kwargs)
        self.values.append((float(value.detach()), student_logits.shape[0]))
        return value


@pytest.fixture
def kd_loss_spy(monkeypatch):
    spy = KdLossSpy(kdlab.losses.kd_loss)
    monkeypatch.setattr(kdlab.losses, "kd_loss", spy)
    return spy


def test_a_breakpoint_in_the_taught_kd_loss_fires_on_every_training_batch(digits, mlp_teacher, kd_loss_spy):
    history = kdlab.train.fit(student(digits), digits, teacher=mlp_teacher, epochs=1, batch_size=128, progress=False)
    assert kd_loss_spy.calls == math.ceil(len(digits.train) / 128)
    # What it returned is what training logged as the soft term (a size-weighted mean over the batches).
    mean = sum(v * b for v, b in kd_loss_spy.values) / len(digits.train)
    assert history.last["kd"] == pytest.approx(mean, rel=1e-5)


def test_the_path_from_fit_to_kd_loss_is_three_calls(digits, mlp_teacher, kd_loss_spy):
    kdlab.train.fit(student(digits), digits, teacher=mlp_teacher, epochs=1, batch_size=512, progress=False)
    assert kd_loss_spy.calls > 0
    for path in kd_loss_spy.paths:
        assert path is not None, "kd_loss was called outside fit"
        # fit -> Distillation.forward -> kd_loss: nothing of kdlab's in between.
        assert path == [objectives.Distillation.forward.__code__], [f"{c.co_filename}:{c.co_name}" for c in path]


def test_fit_stays_short():
    source = textwrap.dedent(inspect.getsource(kdlab.train.fit))
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef) and node.name == "fit"
    doc = node.body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
    body = node.body[1:]
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= MAX_FIT_LINES, f"fit's body is {lines} lines (after its docstring); keep it to {MAX_FIT_LINES}"
    params = inspect.signature(kdlab.train.fit).parameters
    assert len(params) <= MAX_FIT_PARAMETERS, list(params)


def test_fit_has_no_teacher_specific_parameters_left():
    # Precomputed or cached teacher logits live in the objective's Teacher, not in the loop.
    params = inspect.signature(kdlab.train.fit).parameters
    assert not {"teacher_logits", "teacher_cache", "optimizer", "callback"} & set(params)
    assert not hasattr(kdlab.train, "history_json") and not hasattr(kdlab.train, "predict_logits")
