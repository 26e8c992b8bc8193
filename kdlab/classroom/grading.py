"""The toolkit an exercise's autograder tests are written with: :class:`Trial`.

An exercise's ``tests(t)`` runs the formative check first (``t.formative(check)``), so
a wrong answer gets the check's own feedback, which names the usual mistake. Then it
tries more inputs and edge cases than the check does, each with ``t.expect(...)``,
whose message says what went wrong in the learner's terms::

    def tests(t):
        t.formative(checks.check_kd_loss)
        s, z = logits(8, 10, seed=1)
        t.expect(t.close(t.call(s, s.clone(), 2.0), 0.0), "the loss must be 0 when student and teacher agree")

``t.call(...)`` runs the learner's function: ``NotImplementedError`` becomes "not done
yet", any other error a failed test naming it. The first failed ``expect`` ends the trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch


class Mistake(Exception):
    """An autograder test failed; the message is the learner's feedback."""


class NotDone(Exception):
    """The answer is still the stub."""


def _message(text: str) -> str:
    # Feedback of a formative check starts with its mark (✅ ❌ 📝); the grade has its own.
    text = text.split(" ", 1)[1] if text[:1] in "✅❌📝" else text
    return text.replace(" When you have written it, run this cell again.", "")  # a grade is read later


class Trial:
    """One grading of one answer: ``answer`` (the learner's function, guarded, or value) and
    the notebook's ``namespace``; counts the tests that passed."""

    def __init__(self, exercise, answer, namespace: Mapping):
        self.exercise = exercise
        self.answer = answer
        self.namespace = namespace
        self.passed = 0

    @property
    def name(self) -> str:
        return self.exercise.answer

    def formative(self, check: Callable, *args) -> None:
        """Run the formative ``check(answer, *args)`` (printing nothing); raise with its feedback unless it passes."""
        check = getattr(check, "__wrapped__", check)  # the plain check: grading records no attempt
        feedback = check(self.answer, *args)
        if not feedback.done:
            raise NotDone(_message(feedback.message))
        if not feedback:
            raise Mistake(_message(feedback.message))
        self.passed += 1

    def call(self, *args, **kwargs):
        """The learner's function applied to ``args``; its errors become feedback."""
        try:
            return self.answer(*args, **kwargs)
        except NotImplementedError:
            raise NotDone(f"Not done yet: {self.name} still raises NotImplementedError.") from None
        except (Mistake, NotDone):
            raise
        except Exception as err:  # noqa: BLE001 - the learner's error is the feedback
            raise Mistake(f"{self.name} raised {type(err).__name__}: {err}".strip()) from None

    def expect(self, condition, message: str) -> None:
        """One test: passes if ``condition`` is true, else ends the trial with ``message``."""
        if not condition:
            raise Mistake(message)
        self.passed += 1

    @staticmethod
    def close(value, expected, *, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
        """True if ``value`` (a number, tensor or sequence) equals ``expected`` in shape and
        within tolerance, and is finite where ``expected`` is; False for anything else."""
        got, want = _as_float64(value), _as_float64(expected)
        if got is None or want is None or got.shape != want.shape:
            return False
        return bool(torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=False))

    @staticmethod
    def number(value) -> float | None:
        """``value`` as a float (a Python number or a one-element tensor), else None."""
        got = _as_float64(value)
        return None if got is None or got.numel() != 1 else got.reshape(()).item()


def _as_float64(value) -> torch.Tensor | None:
    # Python numbers go straight to float64: through float32 they would lose digits.
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().double()
        if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
            return torch.stack([torch.as_tensor(v).detach().cpu().double().reshape(()) for v in value])
        if isinstance(value, bool) or value is None:
            return None
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def unchanged(tensor: torch.Tensor):
    """A test helper: call the returned function later to know whether ``tensor`` was left
    as it was (catches answers that change their input in place, like ``logits /= T``)."""
    before = tensor.detach().clone()
    return lambda: torch.equal(tensor.detach(), before)
