"""The feedback that every exercise check returns, and safe calling of learner code.

Every check prints its feedback and returns a :class:`Feedback` (truthy when the
answer is right). An unanswered exercise (``None``, or a function that raises
``NotImplementedError``) gets a friendly "not done yet" note, never an
exception, so a notebook still runs top to bottom before the exercises are done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Feedback:
    ok: bool
    message: str
    done: bool = True

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.message

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's value: the check printed its message already, so a
        check on a cell's last line would otherwise show it twice."""


def report(ok: bool, message: str, done: bool = True) -> Feedback:
    """Print and return feedback: ✅ right, ❌ wrong, 📝 not attempted yet."""
    mark = "✅" if ok else ("📝" if not done else "❌")
    fb = Feedback(ok, f"{mark} {message}", done)
    print(fb.message)
    return fb


def not_done(what: str) -> Feedback:
    return report(False, f"Not done yet: {what} When you have written it, run this cell again.", done=False)


def call(fn: Callable, *args, name: str = "your function", **kwargs):
    """Run the learner's function ``fn(*args, **kwargs)``.

    Returns ``(value, None)`` on success, or ``(None, feedback)`` when it still
    raises ``NotImplementedError`` (a "not done yet" note) or fails with any
    other error (reported as feedback, never re-raised into the notebook).
    """
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        return None, not_done(f"{name} still raises NotImplementedError.")
    except Exception as err:  # noqa: BLE001 - we report any learner error as feedback
        return None, report(False, f"{name} raised {type(err).__name__}: {err}")


def probe(fn: Callable, *args, **kwargs):
    """Call the learner's function on a second, diagnostic input; ``None`` if it fails.

    Used after the main answer passed, to catch answers that are right on the
    test batch only (no NaN guard, no zero at equal inputs); prints nothing.
    """
    try:
        return fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a failing probe is judged by the caller
        return None
