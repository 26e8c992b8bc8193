"""Hints and solutions for self-paced learners, and what the exercise checks record.

``kdlab.checks.hint("kd_loss")`` prints the exercise's next hint (the first call the
first hint, the next call the second, then says there are no more).
``kdlab.checks.solution("kd_loss")`` prints a solution, but only once the exercise's
check has seen an attempt in this session (an answer that is not ``None`` and no longer
raises ``NotImplementedError``). Nothing is shown in a notebook unless asked for.

The hints and solutions live in the classroom catalogue (:mod:`kdlab.classroom`), the
one source of the student and instructor notebooks. :func:`for_exercise` turns a
check into the check of a catalogued exercise: it records attempts, points to the
hints, and refuses credit to an answer that calls the kit's own implementation.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable

from .feedback import Feedback
from .feedback import report as _report

# What this Python session has seen: exercise ids whose check got an attempt, and how
# many hints of each exercise were shown. A new kernel starts afresh.
_attempted: set[str] = set()
_hints_shown: dict[str, int] = {}


def _exercise(exercise_id: str):
    from ..classroom import exercise  # here, not at the top: the classroom imports the checks

    return exercise(exercise_id)


def hint(exercise_id: str) -> None:
    """Print the next hint for exercise ``exercise_id`` (e.g. ``"kd_loss"``)."""
    ex = _exercise(exercise_id)
    shown = _hints_shown.get(ex.id, 0)
    if shown >= len(ex.hints):
        print(f"No more hints for {ex.id}: you have seen all {len(ex.hints)}. After an attempt, "
              f'kdlab.checks.solution("{ex.id}") shows a solution.')
        return
    _hints_shown[ex.id] = shown + 1
    print(f"💡 Hint {shown + 1} of {len(ex.hints)} ({ex.id}): {ex.hints[shown]}")


class _Printed(str):
    """A string already printed: a notebook shows nothing more for it as a cell's value."""

    def _ipython_display_(self) -> None:
        pass


def solution(exercise_id: str) -> str | None:
    """Print a solution of exercise ``exercise_id`` once its check has seen an attempt; returns
    its code (None before an attempt)."""
    ex = _exercise(exercise_id)
    if ex.id not in _attempted:
        print(f"Have a go first: write {ex.answer} and run its check; then this shows a solution. "
              f'kdlab.checks.hint("{ex.id}") gives a hint.')
        return None
    code = ex.solved_source()
    print(f"A solution of {ex.id} (yours may differ and still be right):\n\n{code}")
    return _Printed(code)


def attempted(exercise_id: str) -> bool:
    """Whether the check of ``exercise_id`` has seen an attempt in this session."""
    return exercise_id in _attempted


def for_exercise(exercise_id: str) -> Callable[[Callable[..., Feedback]], Callable[..., Feedback]]:
    """Decorator: ``check`` becomes the formative check of catalogued exercise ``exercise_id``.

    The check runs as before; in addition an answer that calls one of the exercise's
    ``references`` gets a "write it yourself" message and no pass, an attempt is
    recorded for :func:`solution`, and a failed or missing answer is told where the
    hints are. The undecorated check stays available as ``check.__wrapped__``.
    """
    def decorate(check: Callable[..., Feedback]) -> Callable[..., Feedback]:
        @functools.wraps(check)
        def checked(answer, *args, **kwargs) -> Feedback:
            from ..classroom import honesty

            ex = _exercise(exercise_id)
            guarded = honesty.guard(answer, ex.references) if callable(answer) else answer
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):  # printed below, or replaced if the answer delegates
                feedback = check(guarded, *args, **kwargs)
            hits = getattr(guarded, "hits", [])
            if hits:
                feedback = _report(False, honesty.message(ex.answer, hits, graded=False))
            else:
                print(printed.getvalue(), end="")
            if feedback.done:
                _attempted.add(ex.id)
            if not feedback:
                more = "" if not feedback.done else f'; kdlab.checks.solution("{ex.id}") shows one'
                print(f'   Stuck? kdlab.checks.hint("{ex.id}") gives a hint{more}.')
            return feedback

        checked.exercise_id = exercise_id
        return checked

    return decorate
