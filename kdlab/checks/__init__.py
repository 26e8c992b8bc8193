"""Exercise checks: call one with your answer and it tells you what, specifically, is wrong.

One module per part of the course (``core_lesson`` for notebooks 01-04, one per
later notebook topic); every public ``check_*`` function of every module is
re-exported here, so notebooks simply call ``kdlab.checks.check_kd_loss(...)``.
See :mod:`kdlab.checks.feedback` for the :class:`Feedback` they return.

``audit_kd_loss(fn)`` audits any distillation loss a learner wrote and names its
problems (:mod:`kdlab.checks.audit`; notebook 10).

``hint("kd_loss")`` prints an exercise's next hint and ``solution("kd_loss")`` a solution,
after an attempt (:mod:`kdlab.checks.hints`).
"""

from __future__ import annotations

import importlib
import pkgutil

from .audit import Audit, audit_kd_loss
from .feedback import Feedback
from .hints import hint, solution

__all__ = ["Audit", "Feedback", "audit_kd_loss", "hint", "solution"]

# Import every topic module and lift its check_* functions to the package level.
# Discovery (rather than a hand-kept list) lets each notebook's checks live in
# their own module without touching this file.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name in ("feedback", "hints") or _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in dir(_module):
        if _name.startswith("check_") and callable(getattr(_module, _name)):
            if _name in globals():
                raise ImportError(f"kdlab.checks: {_name} is defined in two modules; check names must be unique")
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
del _info, _module, _name
