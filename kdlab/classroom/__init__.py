"""The classroom edition: student and instructor notebooks from one source, and grading.

* :mod:`~kdlab.classroom.exercises`: :class:`Exercise` (stub, solution, hints, points,
  formative check, autograder tests), :class:`Grade` and :func:`autograde`;
* :mod:`~kdlab.classroom.catalogue`: every exercise of notebooks 01-09 (:data:`EXERCISES`,
  :func:`exercise`);
* :mod:`~kdlab.classroom.cells`: the two-cell convention with nbgrader's metadata and markers;
* :mod:`~kdlab.classroom.release`: :func:`student_notebook`, :func:`instructor_notebook`,
  :func:`release` (``kdlab classroom release OUT``);
* :mod:`~kdlab.classroom.honesty`: no credit for calling the kit's own implementation;
* :mod:`~kdlab.classroom.grade`: :func:`grade` (``kdlab classroom grade SUBMISSIONS``), each
  submission run by :mod:`~kdlab.classroom.worker` in a process and a folder of its own.

``notebooks/`` holds the student versions; a test checks that they are what
:func:`student_notebook` makes of :func:`instructor_notebook`.
"""

from __future__ import annotations

from .catalogue import EXERCISES, exercise, of_notebook
from .exercises import CODE_STUB, Exercise, Grade, GradeError, autograde
from .grade import ClassGrades, grade
from .release import instructor_notebook, release, student_notebook, with_hidden_tests

__all__ = ["CODE_STUB", "ClassGrades", "EXERCISES", "Exercise", "Grade", "GradeError", "autograde", "exercise",
           "grade", "instructor_notebook", "of_notebook", "release", "student_notebook", "with_hidden_tests"]
