"""Run one training configuration over several seeds, and summarise the results.

Every comparison in the notebooks is "this configuration against that one, over
seeds", so the loop lives here once:

    rows = run_seeds(lambda seed: models.create("mlp", ..., seed=seed), ds, seeds=range(5),
                     label="distilled", teacher=teacher, temperature=4.0, epochs=30)
    table = summarize(rows, by=["label"], metric="accuracy")   # mean ± 95% CI per label
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from . import metrics, train
from .data import Dataset


def run_seeds(make_model: Callable[[int], nn.Module], ds: Dataset, seeds: Iterable[int], *,
              teacher: nn.Module | None = None, label: str = "", evaluate_with_teacher: nn.Module | None = None,
              keep_models: bool = False, **fit_kwargs) -> list[dict]:
    """Train ``make_model(seed)`` with ``fit(..., seed=seed, **fit_kwargs)`` for each seed and
    return one row per seed: ``label``, ``seed``, the test metrics of
    :func:`kdlab.metrics.evaluate` (fidelity too when a teacher is known) and
    ``train_seconds``. With ``keep_models`` each row also holds its ``model``."""
    rows = []
    reference = evaluate_with_teacher if evaluate_with_teacher is not None else teacher
    for seed in seeds:
        model = make_model(seed)
        t0 = time.perf_counter()
        history = train.fit(model, ds, teacher=teacher, seed=seed, **{"progress": False, **fit_kwargs})
        seconds = time.perf_counter() - t0
        row = {"label": label, "seed": seed, **metrics.evaluate(model, ds.test, teacher=reference),
               "train_seconds": seconds, "final_val_acc": history.last.get("val_acc")}
        if keep_models:
            row["model"] = model
        rows.append(row)
    return rows


def column(rows: Sequence[dict], key: str, **where) -> list:
    """Values of ``key`` in the rows whose fields equal ``where`` (e.g. ``label="scratch"``)."""
    return [r[key] for r in rows if all(r.get(k) == v for k, v in where.items())]


def summarize(rows: Sequence[dict], by: Sequence[str], metric: str = "accuracy") -> list[dict]:
    """Group rows by the fields ``by`` and give ``mean``, ``ci95`` (half-width) and ``n``
    of ``metric`` per group, in first-seen order."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r[metric])
    out = []
    for key, values in groups.items():
        mean, half = metrics.mean_ci(values)
        out.append({**dict(zip(by, key)), "metric": metric, "mean": mean, "ci95": half, "n": len(values)})
    return out


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the 95% CIs of the means of ``a`` and ``b`` overlap.

    A single run has no interval (its half-width is nan), so nothing can be told
    apart from it: that counts as overlapping, never as a significant difference.
    """
    (ma, ha), (mb, hb) = metrics.mean_ci(a), metrics.mean_ci(b)
    if math.isnan(ha) or math.isnan(hb):
        return True
    return (ma - ha) <= (mb + hb) and (mb - hb) <= (ma + ha)


def gap_closed(student: float, scratch: float, teacher: float) -> float:
    """Fraction of the teacher-scratch gap that the distilled student closes:
    ``(student - scratch) / (teacher - scratch)`` (accuracies; nan if there is no gap)."""
    gap = teacher - scratch
    return float("nan") if abs(gap) < 1e-12 else (student - scratch) / gap
