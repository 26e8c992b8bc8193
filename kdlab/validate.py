"""Argument checks shared by the public API.

Each check raises a :mod:`kdlab.errors` exception whose message names the parameter,
the value received and what is accepted, so a learner can fix the call without
reading a torch stack trace.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from .errors import ParameterError, ParameterTypeError


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ParameterError(f"{name}={value!r} is not one of the accepted values: {listed}.")
    return value


def real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """Check a finite real number within ``[low, high]`` (ends open when asked)."""
    if not _is_real(value):
        raise ParameterTypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if not math.isfinite(value):
        raise ParameterError(f"{name}={value!r} is not finite; accepted: a finite number in {interval}.")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ParameterError(f"{name}={value!r} is outside the accepted range {interval}.")
    return value


def positive(name: str, value: Any) -> float:
    """A finite real number > 0 (learning rates, temperatures)."""
    return real(name, value, low=0.0, low_open=True)


def probability(name: str, value: Any) -> float:
    """A real number in [0, 1] (``alpha``, dropout)."""
    return real(name, value, low=0.0, high=1.0)


def integer(name: str, value: Any, *, low: int | None = None) -> int:
    """An ``int`` (not bool, not float) at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterTypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    value = int(value)
    if low is not None and value < low:
        raise ParameterError(f"{name}={value!r} is too small; accepted: an integer >= {low}.")
    return value


def int_tuple(name: str, value: Any, *, low: int = 1) -> tuple[int, ...]:
    """A tuple/list of integers each >= ``low`` (hidden sizes, input shapes)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ParameterTypeError(f"{name} must be a sequence of integers, got {value!r}.")
    items = tuple(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < low:
            raise ParameterError(f"{name}={value!r} must contain integers >= {low}; {item!r} is not.")
    return tuple(int(i) for i in items)
