"""One source of truth per exercise: :class:`Exercise`, the catalogue and the autograder.

An :class:`Exercise` holds everything about one exercise of one notebook: the code a
student starts from (``stub``), the code that solves it (``solution``), one or two
hints, its points, the formative check line of the notebook, the kit functions a
learner must not simply call (``references``) and the autograder tests (``tests``).
The student notebook, the instructor notebook, ``kdlab.checks.hint``/``solution`` and
the grader are all generated from it (see :mod:`kdlab.classroom.cells`).

``Exercise.grade(namespace)`` grades the learner's answer found in a notebook's
``globals()``; :func:`autograde` is the same for an nbgrader hidden-test block: it
raises :class:`GradeError` (an ``AssertionError``, so nbgrader gives the cell 0) unless
the answer gets every point. Grading is all or nothing per exercise, as nbgrader does
for a test cell that raises.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import ParameterError
from . import honesty
from .grading import Mistake, NotDone, Trial

#: What nbgrader's ClearSolutions puts in place of a ``### BEGIN SOLUTION ... ### END SOLUTION``
#: region, and the line every stub holds where the solution goes. nbgrader's default stub
#: also raises NotImplementedError; kdlab's stubs keep that line outside the region, so the
#: cleared value-answer cells still run (set ``c.ClearSolutions.code_stub = {"python": CODE_STUB}``).
CODE_STUB = "# YOUR CODE HERE"


@dataclass(frozen=True)
class Grade:
    """The autograder's verdict on one exercise: ``points`` of ``max_points``, and why."""

    points: float
    max_points: float
    feedback: str
    exercise: str = ""

    def __str__(self) -> str:
        feedback = " ".join(self.feedback.split())  # one line, so that a log or a CSV cell holds it whole
        return f"{self.exercise}: {self.points:g}/{self.max_points:g} points. {feedback}"

    @classmethod
    def parse(cls, text: str) -> Grade | None:
        """The grade printed by :func:`autograde` (``str(grade)``) in ``text``; None if there is none."""
        found = _GRADE_LINE.search(text)
        if found is None:
            return None
        return cls(float(found["points"]), float(found["max"]), found["feedback"].strip(), found["id"])


# What autograde prints: "✅ autograder kd_loss: 5/5 points. Correct: ..." (the mark and word optional).
_GRADE_LINE = re.compile(r"^(?:\S+ autograder )?(?P<id>[A-Za-z0-9_-]+): (?P<points>[\d.]+)/(?P<max>[\d.]+) "
                         r"points\. (?P<feedback>.*)$", re.M)


class GradeError(AssertionError):
    """An answer did not get every point; ``.grade`` holds the :class:`Grade`."""

    def __init__(self, grade: Grade):
        super().__init__(str(grade))
        self.grade = grade


@dataclass(frozen=True)
class Exercise:
    """One exercise (see the module docstring).

    * ``id``: unique, letters, digits and ``_``; the nbgrader ``grade_id`` of the answer cell
      (the test cell's is ``<id>_test``).
    * ``notebook``: the notebook's stem, e.g. ``"03_temperature"``.
    * ``answer``: the learner's variable, e.g. ``"my_kd_loss"``: a function when the stub
      defines it (``def my_kd_loss(...)``), else a value.
    * ``stub``: the student's answer cell, with one line ``# YOUR CODE HERE``
      (:data:`CODE_STUB`); ``solution`` is the code that replaces that line, written without
      its indentation.
    * ``check``: the source of the test cell that follows, the formative check.
    * ``references``: dotted names of the kit's own implementations (``"kdlab.losses.kd_loss"``)
      an answer must not call; a bare name (``"pairs"``) is a notebook variable that holds
      the answer and must not be used.
    * ``tests``: the autograder tests, ``tests(trial)``; they raise (``trial.expect``) at the
      first failure. See :class:`kdlab.classroom.grading.Trial`.
    """

    id: str
    notebook: str
    answer: str
    points: int
    hints: tuple[str, ...]
    stub: str
    solution: str
    check: str
    references: tuple[str, ...]
    tests: Callable[[Trial], None]

    @property
    def is_function(self) -> bool:
        return re.search(rf"^def {re.escape(self.answer)}\(", self.stub, re.M) is not None

    @property
    def test_id(self) -> str:
        """The nbgrader ``grade_id`` of the test cell."""
        return f"{self.id}_test"

    def solved_source(self) -> str:
        """The answer cell with the solution written in: what ``kdlab.checks.solution`` shows."""
        from .cells import solved_source

        return solved_source(self)

    def grade(self, namespace: Mapping, *, source: str | None = None) -> Grade:
        """Grade the answer ``namespace[self.answer]`` (``namespace`` is a notebook's ``globals()``).

        ``source`` is the answer cell's code, for the check that it does not use the kit's
        own implementation; by default it is found from the function, or from IPython's
        input history for a value. Never raises for anything the answer does.
        """
        if namespace.get(self.answer) is None:
            what = "is not defined" if self.answer not in namespace else "is still None"
            verb = "define the function" if self.is_function else "set it"
            return self._verdict(0, f"Not done yet: {self.answer} {what}; {verb} in the answer cell and run it.")
        answer = namespace[self.answer]
        if self.is_function and not callable(answer):
            return self._verdict(0, f"{self.answer} should be a function, but it is a {type(answer).__name__}.")
        if source is None:
            source = honesty.answer_source(self.answer, answer, namespace)
        used = honesty.static_uses(source, answer, namespace, self.references) if source else []
        if used:
            return self._verdict(0, honesty.message(self.answer, used))
        guarded = honesty.guard(answer, self.references) if self.is_function else answer
        trial = Trial(self, guarded, namespace)
        try:
            # The formative checks print their feedback; the grade reports it instead.
            with contextlib.redirect_stdout(io.StringIO()):
                self.tests(trial)
            problem = None
        except (NotDone, Mistake) as err:
            problem = str(err)
        except Exception as err:  # noqa: BLE001 - whatever the answer does, the class is still graded
            problem = f"The autograder could not use {self.answer}: {type(err).__name__}: {err}"
        hits = getattr(guarded, "hits", [])
        if hits:
            return self._verdict(0, honesty.message(self.answer, hits))
        if problem is not None:
            return self._verdict(0, problem)
        return self._verdict(self.points, f"Correct: all {trial.passed} autograder tests pass.")

    def _verdict(self, points: float, feedback: str) -> Grade:
        return Grade(points, self.points, feedback, self.id)


def autograde(exercise_id: str, namespace: Mapping, *, source: str | None = None) -> Grade:
    """Grade one exercise in a notebook (the hidden tests of an instructor notebook call this).

    Prints the grade as one line (:meth:`Grade.parse` reads it back) and returns it when it
    has every point; otherwise raises :class:`GradeError`, an ``AssertionError``, so that
    nbgrader gives the test cell no points.
    """
    from .catalogue import exercise

    grade = exercise(exercise_id).grade(namespace, source=source)
    mark = "✅" if grade.points >= grade.max_points else "❌"
    print(f"{mark} autograder {grade}")
    if grade.points < grade.max_points:
        raise GradeError(grade)
    return grade


def check_unique(exercises) -> None:
    """Raise if two exercises share an id or an answer variable in one notebook (a catalogue bug)."""
    seen: set[str] = set()
    answers: set[tuple[str, str]] = set()
    for ex in exercises:
        if ex.id in seen:
            raise ValueError(f"exercise id {ex.id!r} is used twice in the catalogue")
        if (ex.notebook, ex.answer) in answers:
            raise ValueError(f"{ex.notebook} has two exercises answered in {ex.answer!r}")
        seen.add(ex.id)
        answers.add((ex.notebook, ex.answer))


def unknown(exercise_id: str, valid) -> ParameterError:
    return ParameterError(f"exercise {exercise_id!r} is not in the catalogue; exercises: {', '.join(valid)}.")
