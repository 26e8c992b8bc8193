"""A run or sweep folder as a page to share: ``kdlab report``.

    kdlab report runs/sweep-04_student_comparison-<hash> --baseline temperature=1

:func:`write` renders ``report.html``, one self-contained file (styles inside, figures as
``data:`` images, links to each point's executed notebook relative to the folder), and
``report.md``, from the Jinja2 templates in ``kdlab/templates/``. A sweep's page starts with
the machine, the versions, and the swept and fixed parameters; then each metric's figure
beside its table, with a caption; then every setting compared with a ``baseline`` setting,
paired by seed (:func:`kdlab.experiments.compare`); then every point, with its state and a
link to its executed notebook. A run's page lists its notebooks. The numbers come from the
sweep's points (:func:`kdlab.sweeps.point_rows`).

One number format throughout (:func:`unit_for`): accuracies in percent, differences of
accuracies and ``*_pp`` gains in percentage points, other numbers with the same decimals
in a column, and a CI always with the decimals of its mean. A metric the notebook could
not define (``null`` in its ``metrics.json``, the reason under ``"undefined"``) is printed
as "not defined" with that reason, never as a number; ``gap_closed`` is computed over each
setting's seeds with :func:`kdlab.experiments.gap_closed`, which is not defined unless the
teacher beats the scratch student by more than the seed spread (so never from one seed); a
sweep with no seed swept shows the ``gap_closed`` each point's notebook computed over its own seeds.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import course, experiments, metrics
from .errors import ParameterError
from .files import atomic_write, write_png
from .runner import parse_value
from .sweeps import (is_number, numeric_columns, point_error, point_finished, point_name, point_rows,
                     summary_figure)

#: The metrics a sweep's page shows first, where a notebook records them (notebook 04's).
PREFERRED = ("distilled_accuracy", "scratch_accuracy", "gain_pp", "gap_closed")
#: Columns of results.csv that are bookkeeping, not results.
_NOT_RESULTS = ("seconds", "smoke", "at_defaults")


# --- one number format ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """How a metric is shown: ``value * scale`` with ``decimals`` and ``suffix``."""

    scale: float = 1.0
    suffix: str = ""
    decimals: int = 3
    signed: bool = False

    def show(self, value) -> str:
        if not is_number(value):
            return "–"
        sign = "+" if self.signed else ""
        return f"{value * self.scale:{sign}.{self.decimals}f}{self.suffix}"

    def show_ci(self, mean: float, half: float) -> str:
        """``"95.12 ± 0.35 %"``: the CI with the decimals of its mean (just the mean with no CI)."""
        if not is_number(half):
            return self.show(mean)
        sign = "+" if self.signed else ""
        return f"{mean * self.scale:{sign}.{self.decimals}f} ± {half * self.scale:.{self.decimals}f}{self.suffix}"


def _base(metric: str) -> str:
    return metric.rsplit(".", 1)[-1]


def is_accuracy(metric: str) -> bool:
    """Whether ``metric`` is a fraction shown in percent (accuracy, agreement, a share of a gap)."""
    base = _base(metric)
    return any(word in base for word in ("accuracy", "agreement", "gap_closed", "sparsity", "fraction"))


def unit_for(metric: str, values: Sequence = ()) -> Unit:
    """The one format of ``metric``: percent for accuracies, pp for ``*_pp`` gains; other
    numbers get 3 significant digits of the column's typical size, the same in every row."""
    base = _base(metric)
    if "gap_closed" in base:
        return Unit(100.0, " %", 0)
    if is_accuracy(metric):
        return Unit(100.0, " %", 2)
    if base.endswith("_pp") or "_pp_" in base:
        return Unit(1.0, " pp", 2, signed=True)
    finite = sorted(abs(v) for v in values if is_number(v) and v != 0)
    typical = finite[len(finite) // 2] if finite else 1.0
    decimals = min(6, max(0, 2 - math.floor(math.log10(typical))))
    return Unit(1.0, "", decimals, signed=any(is_number(v) and v < 0 for v in values))


def difference_unit(metric: str, values: Sequence = ()) -> Unit:
    """The format of a difference of ``metric``: pp for accuracies, else the metric's own, signed."""
    if is_accuracy(metric):
        return Unit(100.0, " pp", 0 if "gap_closed" in _base(metric) else 2, signed=True)
    unit = unit_for(metric, values)
    return Unit(unit.scale, unit.suffix, unit.decimals, signed=True)


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


_ACRONYMS = {"nll": "NLL", "kl": "KL", "ece": "ECE", "ms": "ms", "cpu": "CPU", "f1": "F1"}


def label(metric: str) -> str:
    """``"distilled accuracy"`` for ``distilled_accuracy``, ``"NLL change"`` for ``nll_change``;
    pp gains say so."""
    words = metric.replace(".", " ").split("_")
    text = " ".join(_ACRONYMS.get(w, w) for w in words).replace(" pp", " (pp)")
    return text


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# --- a sweep's page -----------------------------------------------------------------------------------

def parse_baseline(items: Sequence[str] | None, grid: Mapping[str, Sequence]) -> dict:
    """``["temperature=1"]`` (or ``"temperature=1,alpha=0.5"``) as ``{"temperature": 1.0}``,
    each name a swept parameter other than seed and each value one of its grid values."""
    choice = {}
    for item in [part for text in (items or ()) for part in str(text).split(",") if part.strip()]:
        name, sep, text = item.partition("=")
        name = name.strip()
        swept = [n for n in grid if n != "seed"]
        if not sep or name not in swept:
            raise ParameterError(f"--baseline {item!r} must be NAME=VALUE with NAME a swept parameter other than "
                                 f"seed ({', '.join(swept) or 'none in this sweep'}).")
        value = parse_value(text)  # as the grid's -p values were read; unparsable YAML stays text, refused below
        if value not in grid[name]:
            raise ParameterError(f"--baseline {item!r}: {name}={value!r} is not in the grid; its values are "
                                 f"{', '.join(map(str, grid[name]))}.")
        choice[name] = next(v for v in grid[name] if v == value)  # the grid's own type (1 -> 1.0)
    return choice


def _setting(row: Mapping, names: Sequence[str]) -> tuple:
    return tuple(row[n] for n in names)


def _setting_name(setting: tuple, names: Sequence[str]) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, setting)) or "all points"


def _reason(rows: Sequence[Mapping], metric: str) -> str:
    """``"not defined: <why>"`` for ``metric`` in these rows, as the notebooks recorded it."""
    reasons = list(dict.fromkeys(r[f"undefined.{metric}"] for r in rows if r.get(f"undefined.{metric}")))
    why = "; ".join(reasons[:2]) if reasons else "the notebook recorded no number"
    return why if why.startswith("not defined") else f"not defined: {why}"


def _gap_cell(group: Sequence[Mapping]) -> tuple[str, float | None]:
    """gap_closed over a setting's seeds, from its accuracies (:func:`kdlab.experiments.gap_closed`):
    per-seed lists, so one seed is not defined (no spread to compare the gap with)."""
    scratch = [r["scratch_accuracy"] for r in group if is_number(r.get("scratch_accuracy"))]
    distilled = [r["distilled_accuracy"] for r in group if is_number(r.get("distilled_accuracy"))]
    teachers = [r["teacher_accuracy"] for r in group if is_number(r.get("teacher_accuracy"))]
    if not scratch or not distilled or not teachers:
        return "–", None
    teacher = sum(teachers) / len(teachers)
    reason = experiments.gap_closed_reason(scratch, teacher)
    if reason is not None:
        return reason, None
    value = experiments.gap_closed(distilled, scratch, teacher)
    return unit_for("gap_closed").show(value), value


def _metrics_to_show(stem: str, rows: Sequence[Mapping], names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    numeric = numeric_columns(rows, exclude=names)
    defined_somewhere = set(numeric) | {c for r in rows for c in r if r.get(c) is None and not c.startswith("_")}
    if wanted:
        unknown = [m for m in wanted if m not in defined_somewhere]
        if unknown:
            raise ParameterError(f"--metric {unknown[0]!r} is not a metric of this sweep; its metrics: "
                                 f"{', '.join(numeric)}.")
        return list(wanted)
    chosen = [m for m in PREFERRED if m in defined_somewhere]
    try:
        template = course.lesson(stem).headline
    except ParameterError:
        template = ""
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name and field_name in numeric and "_ci" not in field_name and field_name not in chosen:
            chosen.append(field_name)
    if not chosen:
        chosen = [c for c in numeric if not c.startswith("params.") and c not in _NOT_RESULTS and "_ci" not in c][:4]
    return chosen


def _companion_ci(metric: str) -> str:
    """The column holding a point's own CI of ``metric``: gain_pp -> gain_ci_pp, kl_change -> kl_change_ci."""
    return metric[:-3] + "_ci_pp" if metric.endswith("_pp") else metric + "_ci"


def _fixed_parameters(stem: str, rows: Sequence[Mapping], meta: Mapping) -> list[dict]:
    """The parameters every point ran with (as the notebooks recorded them, under ``params`` in
    their metrics.json), and who set each: you (``-f``), smoke mode, or the notebook's default."""
    grid, given = meta["grid"], meta.get("fixed", {})
    try:
        smoke_values = course.lesson(stem).smoke if meta.get("smoke") else {}
    except ParameterError:
        smoke_values = {}
    common = None
    for r in rows:
        params = r.get("_params")  # as point_rows read it from the point's metrics.json
        if not isinstance(params, Mapping):
            continue
        common = dict(params) if common is None else {k: v for k, v in common.items() if params.get(k) == v}
    common = {**(common or {}), **given}
    hidden = set(grid) | {"output_dir", "checkpoint_dir", "smoke"}
    out = []
    for name, value in common.items():
        if name in hidden:
            continue
        source = "you" if name in given else ("smoke mode" if name in smoke_values or (
            name == "dataset" and meta.get("smoke")) else "notebook default")
        out.append({"name": name, "value": value, "source": source})
    return out


def _point_status(folder: Path, name: str) -> tuple[str, str]:
    pdir = folder / name
    if point_finished(pdir):
        return "finished", ""
    if (pdir / "error.txt").exists():
        return "failed", point_error(pdir, 0)[:300]
    return "not run", ""


def sweep_context(folder: Path, *, baseline: Sequence[str] | None = None, wanted: Sequence[str] = ()) -> dict:
    """Everything ``report.html.j2`` shows for a sweep folder, already formatted."""
    meta = json.loads((folder / "sweep.json").read_text())
    notebook = Path(meta["notebook"])
    stem, grid = notebook.stem, meta["grid"]
    names = list(grid)
    settings_names = [n for n in names if n != "seed"]
    rows = point_rows(folder)
    all_points = [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    try:
        lesson = course.lesson(stem)
        title = f"Sweep of {lesson.number} · {lesson.title}"
    except ParameterError:
        title = f"Sweep of {notebook.name}"
    statuses = [(p, *_point_status(folder, point_name(p))) for p in all_points]
    counts = {s: sum(1 for _, status, _ in statuses if status == s) for s in ("finished", "failed", "not run")}
    machine = meta.get("machine") or {"device": meta.get("device", "?")}
    ctx = {
        "kind": "sweep", "title": title, "folder": str(folder.resolve()),
        "summary": (f"{len(all_points)} points: " + " × ".join(f"{n} ({', '.join(map(str, v))})" for n, v in grid.items())
                    + "; " + ", ".join(f"{c} {s}" for s, c in counts.items() if c)),
        "smoke": bool(meta.get("smoke")),
        "meta": [("Notebook", notebook.name), ("Machine", _machine_text(machine)),
                 ("Versions", _versions_text(meta.get("versions", {}))), ("Folder", str(folder.resolve()))]
                + ([("Updated", meta["updated"])] if meta.get("updated") else []),
        "swept": [{"name": n, "text": ", ".join(map(str, v))} for n, v in grid.items()],
        "fixed": _fixed_parameters(stem, rows, meta),
        "sections": [], "comparison": None, "points": [], "points_header": [],
    }
    if not rows:
        ctx["empty"] = "No point has finished yet: nothing to show."
        return ctx
    shown = _metrics_to_show(stem, rows, names, wanted)
    settings = sorted({_setting(r, settings_names) for r in rows}, key=str)
    x_name = settings_names[0] if settings_names else None
    seeds = sorted({r["seed"] for r in rows}) if "seed" in names else []
    per_setting = {s: [r for r in rows if _setting(r, settings_names) == s] for s in settings}
    for metric in shown:
        ctx["sections"].append(_metric_section(folder, metric, rows, per_setting, settings_names, x_name, seeds,
                                               ctx["fixed"]))
    if baseline:
        ctx["comparison"] = _comparison(parse_baseline(baseline, grid), shown, per_setting, settings_names, names)
    header = names + [label(m) for m in shown] + ["status", "notebook"]
    ctx["points_header"] = header
    by_name = {r["_folder"]: r for r in rows}
    units = {m: unit_for(m, [r.get(m) for r in rows]) for m in shown}
    for point, status, error in statuses:
        pname = point_name(point)
        row = by_name.get(pname, {})
        cells = [str(point[n]) for n in names]
        for m in shown:
            if not row:
                cells.append("")
            elif row.get(m) is None or not is_number(row.get(m)):
                cells.append("not defined" if m in row or f"undefined.{m}" in row else "–")
            else:
                cells.append(units[m].show_ci(row[m], row.get(_companion_ci(m))))
        executed = folder / pname / "executed.ipynb"
        ctx["points"].append({"cells": cells, "status": status, "error": error,
                              "link": f"{pname}/executed.ipynb" if executed.exists() else None})
    return ctx


def _metric_section(folder: Path, metric: str, rows, per_setting, settings_names, x_name, seeds, fixed) -> dict:
    unit = unit_for(metric, [r.get(metric) for r in rows])
    # Over swept seeds, from the accuracies; with no seed swept, as each point's notebook computed it.
    pooled = metric == "gap_closed" and bool(seeds) and any("scratch_accuracy" in r for r in rows)
    table = []
    for setting, group in per_setting.items():
        values = [r[metric] for r in group if is_number(r.get(metric))]
        note = ""
        if pooled:
            text, _ = _gap_cell(group)
            n = len(group)
        elif values:
            mean, half = metrics.mean_ci(values)
            text, n = unit.show_ci(mean, half), len(values)
            missing = len(group) - len(values)
            if missing:
                note = f"{missing} of {len(group)} points: {_reason(group, metric)}"
        else:
            text, n = _reason(group, metric) if any(metric in r for r in group) else "–", len(group)
        table.append({"setting": [str(v) for v in setting] or ["all points"], "value": text, "n": n, "note": note,
                      "undefined": text.startswith("not defined")})
    figure, caption = None, ""
    # A pooled gap_closed is a ratio of means per setting, shown in the table: no per-point figure to draw.
    defined = [] if pooled else [r for r in rows if is_number(r.get(metric))]
    if x_name is not None and defined:
        path = write_png(summary_figure(defined, x_name, metric, unit=unit, series=settings_names[1:]),
                         folder / f"report-{metric}.png")
        figure = {"uri": _data_uri(path), "file": path.name}
        over = (f"over seeds {', '.join(map(str, seeds))} (one point each)" if seeds
                else "one point per setting (no seed was swept, so no interval)")
        given = [f"{p['name']}={p['value']}" for p in fixed if p["source"] == "you"]
        caption = (f"{_sentence_case(label(metric))} against {x_name}: mean ± 95% CI {over}"
                   + (f", one line per {', '.join(settings_names[1:])}" if settings_names[1:] else "")
                   + (f"; fixed by you: {', '.join(given)}" if given else "")
                   + "; every other parameter as listed under Parameters.")
    note = ""
    if pooled:
        note = ("(distilled − scratch) / (teacher − scratch) from each setting's mean accuracies over its seeds; "
                "not defined unless the teacher beats the scratch student by more than the seed spread (the 95% CI "
                "of the scratch mean), so never from one seed.")
    elif metric == "gap_closed" and not seeds:
        note = ("As each point's notebook computed it, over that point's own seeds (no seed was swept): not "
                "defined unless the teacher beats the scratch student by more than their spread.")
    value_header = "from the mean accuracies" if pooled else "mean ± 95% CI"
    return {"metric": metric, "label": label(metric), "header": [*(settings_names or ["points"]), value_header, "n"],
            "rows": table, "figure": figure, "caption": caption, "note": note, "id": metric.replace(".", "-")}


def _comparison(choice: Mapping, shown: Sequence[str], per_setting, settings_names, names) -> dict:
    """Every setting against the baseline setting, paired by seed where the grid has seeds."""
    paired = "seed" in names
    base_of = lambda s: tuple(choice.get(n, v) for n, v in zip(settings_names, s))
    rows = []
    for setting, group in per_setting.items():
        base = base_of(setting)
        if base == setting or base not in per_setting:
            continue
        for metric in shown:
            if metric == "gap_closed":
                continue  # a ratio per setting, not per seed: see its own table
            a_by = {r.get("seed"): r[metric] for r in group if is_number(r.get(metric))}
            b_by = {r.get("seed"): r[metric] for r in per_setting[base] if is_number(r.get(metric))}
            seeds = sorted(set(a_by) & set(b_by), key=str) if paired else [None]
            if paired and not seeds:
                continue
            a = [a_by[s] for s in seeds] if paired else list(a_by.values())
            b = [b_by[s] for s in seeds] if paired else list(b_by.values())
            if not a or not b:
                continue
            unit = difference_unit(metric, a + b)
            c = experiments.compare(a, b, paired=paired, higher_is_better=experiments.higher_is_better_for(metric),
                                    names=(_setting_name(setting, settings_names), _setting_name(base, settings_names)),
                                    metric=label(metric), scale=unit.scale, unit=unit.suffix, digits=unit.decimals)
            interval = "" if math.isnan(c.ci95) else f" ± {c.ci95:.{unit.decimals}f}"
            rows.append({"setting": _setting_name(setting, settings_names), "metric": label(metric),
                         "difference": f"{c.difference:+.{unit.decimals}f}{interval}{unit.suffix}",
                         "p": "–" if math.isnan(c.p_value) else ("< 0.001" if c.p_value < 1e-3 else f"{c.p_value:.2g}"),
                         "n": len(a), "verdict": c.phrase, "outcome": c.outcome, "reason": c.reason})
    design = ("paired by seed: each difference is taken within a seed, then averaged (mean ± 95% CI, paired t test)"
              if paired else "no seed was swept, so runs cannot be paired: each side is one run")
    return {"baseline": _setting_name(tuple(choice.get(n, "*") for n in settings_names), settings_names),
            "design": design, "rows": rows}


# --- a run's page -------------------------------------------------------------------------------------

def _machine_text(machine: Mapping) -> str:
    parts = [machine.get("device"), machine.get("cpu"),
             f"{machine['cores']} cores" if machine.get("cores") else None, machine.get("platform")]
    return "; ".join(str(p) for p in parts if p)


def _versions_text(versions: Mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items() if k != "platform")


def run_context(folder: Path) -> dict:
    """Everything ``report.html.j2`` shows for a run folder, already formatted."""
    meta = json.loads((folder / "run.json").read_text())
    machine = meta.get("machine") or {"device": meta.get("device"), "platform": meta.get("versions", {}).get("platform")}
    notebooks = []
    for entry in meta["notebooks"]:
        stem = Path(entry["notebook"]).stem
        executed = folder / entry["notebook"]
        minutes = f"{entry['seconds'] / 60:.1f} min" if "seconds" in entry else "–"
        result = entry.get("headline") or "" if entry["status"] == "ok" else entry.get("error", "")
        notebooks.append({"name": stem, "status": entry["status"], "minutes": minutes, "result": result,
                          "link": entry["notebook"] if executed.exists() else None})
    planned = [Path(p).stem for p in meta.get("planned", [])]
    not_run = [p for p in planned if p not in {n["name"] for n in notebooks}]
    return {
        "kind": "run", "title": f"Run {folder.name}", "folder": str(folder.resolve()), "smoke": bool(meta.get("smoke")),
        "summary": (f"{len(notebooks)} notebooks, {sum(n['status'] == 'ok' for n in notebooks)} finished"
                    + (f"; not run: {', '.join(not_run)}" if not_run else "")),
        "meta": [("Command", " ".join(meta.get("command") or []) or "–"), ("Machine", _machine_text(machine)),
                 ("Versions", _versions_text(meta.get("versions", {}))), ("Folder", str(folder.resolve())),
                 ("Started", meta.get("start", "–")), ("Ended", meta.get("end", "not finished"))],
        "params": [{"name": k, "value": v} for k, v in (meta.get("params") or {}).items()],
        "notebooks": notebooks,
    }


# --- writing -----------------------------------------------------------------------------------------

def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("kdlab", "templates"), undefined=jinja2.StrictUndefined,
                              autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def write(folder: str | os.PathLike, *, baseline: Sequence[str] | None = None,
          metrics_: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for a run or sweep folder; returns their paths.

    ``baseline`` (sweeps): ``["temperature=1"]``, the setting every other one is compared
    with, paired by seed. ``metrics_``: the metrics to show (default: the notebook's main ones).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"RUN_DIR {str(folder)!r} does not exist.")
    if (folder / "sweep.json").exists():
        ctx = sweep_context(folder, baseline=baseline, wanted=metrics_)
    elif (folder / "run.json").exists():
        if baseline:
            raise ParameterError("--baseline compares the points of a sweep; this is a run folder (run.json).")
        ctx = run_context(folder)
    else:
        raise FileNotFoundError(f"{str(folder)!r} is neither a run folder (run.json) nor a sweep folder (sweep.json).")
    env = _environment()
    md = atomic_write(folder / "report.md", lambda fh: fh.write(env.get_template("report.md.j2").render(**ctx)))
    page = atomic_write(folder / "report.html", lambda fh: fh.write(env.get_template("report.html.j2").render(**ctx)))
    return md, page
