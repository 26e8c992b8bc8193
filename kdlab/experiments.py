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

from . import metrics, train, validate
from .data import Dataset
from .errors import NonFiniteLossError, ParameterError
from .objectives import Objective


def run_seeds(make_model: Callable[[int], nn.Module], ds: Dataset, seeds: Iterable[int], *,
              teacher: nn.Module | None = None, label: str = "", evaluate_with_teacher: nn.Module | None = None,
              keep_models: bool = False, make_objective: Callable[[nn.Module, int], Objective | None] | None = None,
              keep_history: bool = False, on_diverge: str = "raise", **fit_kwargs) -> list[dict]:
    """Train ``make_model(seed)`` with ``fit(..., seed=seed, **fit_kwargs)`` for each seed and
    return one row per seed: ``label``, ``seed``, the test metrics of
    :func:`kdlab.metrics.evaluate` (fidelity too when a teacher is known) and
    ``train_seconds``.

    Args:
        keep_models: each row also holds its trained ``model``.
        make_objective: ``make_objective(model, seed)`` builds a fresh objective for each
            run (one with state of its own, such as a discriminator or a penalty that
            reads the model, must not be shared between seeds); ``None`` from it, or no
            ``make_objective``, means fit's default.
        keep_history: each row also holds the run's per-epoch ``records`` (fit's
            History rows, as far as the run got) and ``train_acc``.
        on_diverge: ``"raise"`` (default) lets fit's :class:`~kdlab.errors.NonFiniteLossError`
            through; ``"record"`` keeps going: the row gets ``diverged`` (the error's message;
            ``None`` for runs that did not) and the metrics of the last good weights, which
            fit restored. Use it for experiments that are expected to fail sometimes.
    """
    validate.choice("on_diverge", on_diverge, ("raise", "record"))
    if "objective" in fit_kwargs and make_objective is not None:
        raise ParameterError("pass either objective= (one objective for every seed) or make_objective=, not both.")
    rows = []
    reference = evaluate_with_teacher if evaluate_with_teacher is not None else teacher
    # The reference's test logits are the same for every seed: computed once, not once a run.
    reference_logits = train.predict_logits(reference, ds.test) if reference is not None else None
    for seed in seeds:
        model = make_model(seed)
        kwargs = dict(fit_kwargs)
        if make_objective is not None:
            objective = make_objective(model, seed)
            if objective is not None:
                kwargs["objective"] = objective
        records: list[dict] = []
        diverged = None
        t0 = time.perf_counter()
        try:
            train.fit(model, ds, teacher=teacher, seed=seed,
                      **{"progress": False, **kwargs, "callback": _chain(records.append, kwargs.get("callback"))})
        except NonFiniteLossError as err:  # fit restored the last good weights before raising
            if on_diverge == "raise":
                raise
            diverged = str(err)
        seconds = time.perf_counter() - t0
        row = {"label": label, "seed": seed, **metrics.evaluate(model, ds.test, teacher_logits=reference_logits),
               "train_seconds": seconds, "final_val_acc": records[-1].get("val_acc") if records else None}
        if on_diverge == "record":
            row["diverged"] = diverged
        if keep_history:
            row["records"] = records
            row["train_acc"] = records[-1]["train_acc"] if records else None
        if keep_models:
            row["model"] = model
        rows.append(row)
    return rows


def _chain(first: Callable[[dict], None], second: Callable[[dict], None] | None) -> Callable[[dict], None]:
    if second is None:
        return first

    def both(record: dict) -> None:
        first(record)
        second(record)
    return both


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
