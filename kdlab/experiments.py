"""Run one training configuration over several seeds, and summarise the results.

Every comparison in the notebooks is "this configuration against that one, over
seeds", so the loop lives here once:

    rows = run_seeds(lambda seed: models.create("mlp", ..., seed=seed), ds, seeds=range(5),
                     label="distilled", teacher=teacher, temperature=4.0, epochs=30)
    rows += run_seeds(make, ds, range(5), label="hard labels", objective=TeacherHardLabels(teacher))
    table = summarize(rows, by=["label"], metric="accuracy")   # mean ± 95% CI per label
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from . import inference, metrics, train, validate
from .data import Dataset
from .errors import NonFiniteLossError, ParameterError
from .objectives import Distillation, Objective


def run_seeds(make_model: Callable[[int], nn.Module], ds: Dataset, seeds: Iterable[int], *, label: str = "",
              teacher: nn.Module | None = None, make_objective: Callable[[nn.Module, int], Objective] | None = None,
              evaluate_with_teacher: nn.Module | None = None, keep_models: bool = False, keep_history: bool = False,
              on_diverge: str = "raise", **fit_kwargs) -> list[dict]:
    """Train ``make_model(seed)`` with ``fit(..., seed=seed, **fit_kwargs)`` for each seed and
    return one row per seed: ``label``, ``seed``, the test metrics of
    :func:`kdlab.metrics.evaluate` (fidelity too when a teacher is known) and ``train_seconds``.

    What each run minimises: ``objective=`` (in ``fit_kwargs``, one objective for every
    seed), or ``make_objective(model, seed)`` (a fresh one per run, for objectives with
    state of their own, such as a discriminator), or, with ``teacher=``,
    ``Distillation(teacher, temperature, alpha)`` built once, so the teacher's logits are
    computed once for all seeds; else cross-entropy.

    Args:
        teacher: the distillation teacher when no objective is given, and the reference
            for the fidelity metrics (agreement and KL with the teacher).
        evaluate_with_teacher: the fidelity reference when it is not ``teacher``.
        keep_models: each row also holds its trained ``model``.
        keep_history: each row also holds the run's per-epoch ``records`` and ``train_acc``.
        on_diverge: ``"raise"`` (default) lets fit's :class:`~kdlab.errors.NonFiniteLossError`
            through; ``"record"`` keeps going: the row gets ``diverged`` (the error's message;
            ``None`` for runs that did not) and the metrics of the last good weights, which
            fit restored.
    """
    validate.choice("on_diverge", on_diverge, ("raise", "record"))
    shared = fit_kwargs.pop("objective", None)
    if shared is not None and make_objective is not None:
        raise ParameterError("pass either objective= (one objective for every seed) or make_objective=, not both.")
    if teacher is not None and shared is None and make_objective is None:
        shared = Distillation(teacher, fit_kwargs.pop("temperature", 4.0), fit_kwargs.pop("alpha", 0.9))
    for name in ("temperature", "alpha"):
        if name in fit_kwargs:
            raise ParameterError(f"{name}= is only used with teacher= and no objective; set it on the objective.")
    reference = evaluate_with_teacher if evaluate_with_teacher is not None else teacher
    # The reference's test logits are the same for every seed: computed once, not once a run.
    reference_logits = inference.predict_logits(reference, ds.test) if reference is not None else None
    rows = []
    for seed in seeds:
        model = make_model(seed)
        objective = make_objective(model, seed) if make_objective is not None else shared
        diverged = None
        t0 = time.perf_counter()
        try:
            history = train.fit(model, ds, objective=objective, seed=seed, **{"progress": False, **fit_kwargs})
        except NonFiniteLossError as err:  # fit restored the last good weights before raising
            if on_diverge == "raise":
                raise
            diverged, history = str(err), err.history
        seconds = time.perf_counter() - t0
        records = history.records
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
