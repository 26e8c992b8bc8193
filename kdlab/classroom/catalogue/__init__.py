"""The catalogue: every exercise of the course, in course order (notebook, then position).

One module per part of the course, like :mod:`kdlab.checks`: ``core`` for notebooks
01-04, then one per later notebook. A new notebook's module is added to the list
below by hand, so the catalogue never depends on what happens to have been imported.
"""

from __future__ import annotations

from ..exercises import Exercise, check_unique, unknown
from . import adversarial, beyond_logits, compress, core, interpretable, language, pitfalls, transfer, transplant

#: Every exercise, in course order.
EXERCISES: tuple[Exercise, ...] = (*core.EXERCISES, *transfer.EXERCISES, *adversarial.EXERCISES,
                                   *transplant.EXERCISES, *interpretable.EXERCISES, *compress.EXERCISES,
                                   *pitfalls.EXERCISES, *beyond_logits.EXERCISES, *language.EXERCISES)
check_unique(EXERCISES)
_BY_ID = {ex.id: ex for ex in EXERCISES}


def exercise(exercise_id: str) -> Exercise:
    """The exercise called ``exercise_id`` (e.g. ``"kd_loss"``); an error names the valid ids."""
    if exercise_id not in _BY_ID:
        raise unknown(exercise_id, _BY_ID)
    return _BY_ID[exercise_id]


def of_notebook(notebook: str) -> tuple[Exercise, ...]:
    """The exercises of one notebook (its stem, e.g. ``"03_temperature"``), in order."""
    return tuple(ex for ex in EXERCISES if ex.notebook == notebook)
