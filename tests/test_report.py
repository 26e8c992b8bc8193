"""`kdlab report` and the metrics behind it: one number format, ratios that are not defined
when their denominator is noise, a paired comparison against a baseline, a self-contained
page that reads well in a real browser.

The sweep folders here are written by hand (sweep.json, and per point parameters.json,
metrics.json and executed.ipynb, as kdlab sweep leaves them), so these tests take seconds;
tests/test_cli.py runs a real weak-teacher sweep of notebook 04.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
from html import unescape
from pathlib import Path

import pytest

from kdlab import cli, experiments, metrics, report, sweeps
from kdlab.experiments import GAP_NOT_DEFINED, gap_closed, gap_closed_reason
from kdlab.sweeps import point_name

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
# Per seed: scratch and distilled accuracy at each temperature (distillation helps at T = 4).
SCRATCH = {0: 0.9500, 1: 0.9520, 2: 0.9480}
DISTILLED = {1.0: {0: 0.9510, 1: 0.9500, 2: 0.9495}, 4.0: {0: 0.9600, 1: 0.9610, 2: 0.9575}}


def fake_sweep(folder: Path, *, teacher: float = 0.985, failed: tuple = (), not_run: tuple = (),
               record_reason: bool = True, seeded: bool = True) -> Path:
    """A sweep folder of notebook 04 over temperature (1, 4) x seed (0, 1, 2), as kdlab sweep leaves it
    (``seeded=False``: over temperature only, each point the notebook's run at seed 0)."""
    grid = {"temperature": [1.0, 4.0], **({"seed": list(SEEDS)} if seeded else {})}
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({
        "notebook": str(ROOT / "notebooks" / "04_student_comparison.ipynb"), "grid": grid,
        "fixed": {"epochs": 30}, "smoke": False, "command": ["kdlab", "sweep", "04"], "updated": "2026-01-01T10:00:00",
        "versions": {"python": "3.11.7", "torch": "2.14.1", "kdlab": "0.1.0", "platform": "Linux"},
        "machine": {"device": "cpu (2 threads)", "cpu": "Test CPU 3000", "cores": 2, "platform": "Linux-test"}}))
    for t in grid["temperature"]:
        for seed in grid.get("seed", [0]):
            pdir = folder / point_name({"temperature": t, "seed": seed} if seeded else {"temperature": t})
            pdir.mkdir()
            params = {"temperature": t, "seed": seed, "epochs": 30, "output_dir": str(pdir), "smoke": False}
            (pdir / "parameters.json").write_text(json.dumps(params))
            if (t, seed) in not_run:
                continue
            (pdir / "executed.ipynb").write_text("{}")
            if (t, seed) in failed:
                (pdir / "error.txt").write_text("RuntimeError: deliberate failure (cell [3])\n\ntraceback")
                continue
            scratch, distilled = SCRATCH[seed], DISTILLED[t][seed]
            reason = gap_closed_reason(scratch, teacher)
            record = {"notebook": "04_student_comparison", "seconds": 12.0, "smoke": False, "at_defaults": False,
                      "params": {"dataset": "mnist-5k", "epochs": 30, "alpha": 0.9, "temperature": t, "seed": seed,
                                 "n_seeds": 1, "output_dir": str(pdir), "smoke": False},
                      "teacher_accuracy": teacher, "scratch_accuracy": scratch, "distilled_accuracy": distilled,
                      "gain_pp": 100 * (distilled - scratch), "gain_ci_pp": None,
                      "gap_closed": None if reason else gap_closed(distilled, scratch, teacher),
                      "nll_change": -0.0213 * t, "nll_change_ci": 0.0101}
            if reason and record_reason:
                record["undefined"] = {"gap_closed": reason}
            (pdir / "metrics.json").write_text(json.dumps(record))
    sweeps.aggregate(folder)
    return folder


def text_of(page: str) -> str:
    """What a reader sees of ``page`` (styles and tags removed, entities decoded, spaces collapsed)."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page)))


# --- metrics that cannot mislead -------------------------------------------------------------------

def test_gap_closed_is_not_defined_when_the_teacher_does_not_beat_the_scratch_student():
    assert gap_closed(0.97, 0.95, 0.99) == pytest.approx(0.5)
    # The trap: a teacher below the scratch student. The ratio of two negatives would read as 0.96.
    assert math.isnan(gap_closed(0.44, 0.58, 0.437))
    reason = gap_closed_reason(0.58, 0.437)
    assert reason.startswith(GAP_NOT_DEFINED) and "teacher 43.70%" in reason and "scratch 58.00%" in reason
    assert GAP_NOT_DEFINED == "not defined: the teacher does not beat the scratch student"
    # Per-seed values: a teacher inside the scratch student's seed spread is no better than it.
    scratch = [0.95, 0.97, 0.93]
    _, half = metrics.mean_ci(scratch)
    assert half > 0.01
    assert math.isnan(gap_closed([0.96, 0.97, 0.95], scratch, 0.95 + half / 2))
    assert "± " in gap_closed_reason(scratch, 0.95 + half / 2)
    assert gap_closed([0.96, 0.97, 0.95], scratch, 0.95 + 2 * half) == pytest.approx(0.01 / (2 * half))
    assert gap_closed_reason(scratch, 0.95 + 2 * half) is None
    # One seed in a list has no spread to compare the gap with.
    assert math.isnan(gap_closed([0.97], [0.95], 0.99))
    assert "one scratch seed" in gap_closed_reason([0.95], 0.99)


# --- one number format ------------------------------------------------------------------------------

@pytest.mark.parametrize("metric, mean, half, expected", [
    ("distilled_accuracy", 0.95123, 0.00349, "95.12 ± 0.35 %"),
    ("gain_pp", 0.68, 0.3, "+0.68 ± 0.30 pp"),
    ("gain_pp", -13.2, 4.44, "-13.20 ± 4.44 pp"),
    ("kl_to_teacher", 0.1412, 0.0143, "0.141 ± 0.014"),
    ("gap_closed", 0.4567, 0.12, "46 ± 12 %"),
])
def test_each_metric_has_one_format_and_its_ci_has_the_decimals_of_its_mean(metric, mean, half, expected):
    unit = report.unit_for(metric, [mean])
    assert unit.show_ci(mean, half) == expected
    shown_mean, shown_half = re.findall(r"[\d.]+", expected)[:2]
    assert len(shown_mean.partition(".")[2]) == len(shown_half.partition(".")[2])
    assert unit.show_ci(mean, float("nan")) == unit.show(mean)  # one value: no interval to show


def test_a_column_of_small_numbers_gets_enough_decimals_for_all_of_its_rows():
    unit = report.unit_for("nll_change", [-0.0213, -0.0852, 0.004])
    assert unit.show(-0.0213) == "-0.0213" and unit.show(0.004) == "+0.0040"


# --- results.csv ----------------------------------------------------------------------------------------

def test_results_csv_keeps_an_undefined_metric_as_an_empty_cell_with_its_reason(tmp_path):
    folder = fake_sweep(tmp_path / "sweep", teacher=0.90)
    with open(folder / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert all(r["gap_closed"] == "" for r in rows)
    assert all(r["undefined.gap_closed"].startswith(GAP_NOT_DEFINED) for r in rows)
    assert (folder / "summary.png").exists()


# --- the page -------------------------------------------------------------------------------------------

def test_a_sweep_report_shows_the_machine_the_parameters_and_each_metric_beside_its_figure(tmp_path):
    folder = fake_sweep(tmp_path / "sweep", failed=[(4.0, 2)], not_run=[(1.0, 1)])
    md, page = report.write(folder)
    html = page.read_text()
    text = text_of(html)
    assert "Sweep of 04 · Students compared" in text
    assert "6 points: temperature (1.0, 4.0) × seed (0, 1, 2); 4 finished, 1 failed, 1 not run" in text
    assert "Test CPU 3000" in text and "2 cores" in text and "torch 2.14.1" in text
    assert "temperature 1.0, 4.0" in text and "seed 0, 1, 2" in text  # swept
    assert "epochs 30 you" in text and "alpha 0.9 notebook default" in text  # fixed, and who set it
    # Each metric: a heading, then its figure (embedded) and caption beside its table.
    for name in ("Distilled accuracy", "Scratch accuracy", "Gain (pp)", "Gap closed"):
        assert f"<h2>{name}</h2>" in html
    section = html.split("<h2>Distilled accuracy</h2>")[1].split("<h2>")[0]
    assert '<img src="data:image/png;base64,' in section and "<figcaption>" in section and "<table>" in section
    assert "mean ± 95% CI over seeds 0, 1, 2" in text_of(section) and "fixed by you: epochs=30" in text_of(section)
    # Accuracies in percent, gains in pp, with the CI at the decimals of its mean.
    assert re.search(r"9[56]\.\d\d ± \d\.\d\d %", text_of(section))
    assert re.search(r"[+-]\d\.\d\d ± \d\.\d\d pp", text_of(html.split("<h2>Gain (pp)</h2>")[1].split("<h2>")[0]))
    # Every point, with its state and a link to its executed notebook.
    assert html.count('<a href="temperature=') == 5  # the point that never ran has no notebook
    assert "failed: RuntimeError: deliberate failure (cell [3])" in text and "not run" in text
    assert "--baseline temperature=VALUE" in text  # how to ask for the comparison
    assert "# Sweep of 04 · Students compared" in md.read_text()


def test_a_report_page_is_self_contained(tmp_path):
    folder = fake_sweep(tmp_path / "sweep")
    _, page = report.write(folder, baseline=["temperature=1"])
    html = page.read_text()
    assert "<style>" in html and "<link" not in html and "<script" not in html
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'href="(https?:)?//', html)
    # Copied elsewhere with its folder, the page still shows everything (the links are relative).
    moved = shutil.copytree(folder, tmp_path / "elsewhere")
    assert (moved / "report.html").read_text() == html


def test_every_setting_is_compared_with_the_baseline_paired_by_seed(tmp_path):
    folder = fake_sweep(tmp_path / "sweep")
    _, page = report.write(folder, baseline=["temperature=1"])
    html = page.read_text()
    section = text_of(html.split("<h2>Against the baseline temperature=1.0</h2>")[1].split("<h2>")[0])
    assert "paired by seed" in section
    diff, half = metrics.paired_ci([100 * DISTILLED[4.0][s] for s in SEEDS], [100 * DISTILLED[1.0][s] for s in SEEDS])
    assert f"temperature=4.0 distilled accuracy {diff:+.2f} ± {half:.2f} pp" in section
    verdict = experiments.compare([DISTILLED[4.0][s] for s in SEEDS], [DISTILLED[1.0][s] for s in SEEDS], paired=True)
    assert verdict.word == "higher"
    assert "temperature=4.0 is higher than temperature=1.0 (better)" in section
    # The scratch student does not depend on T: the same seeds give a difference of 0, a tie.
    assert "temperature=4.0 and temperature=1.0 tie" in section
    assert "gap closed" not in section  # a ratio per setting, not per seed


def test_a_higher_compression_ratio_is_better_against_the_baseline(tmp_path):
    folder = fake_sweep(tmp_path / "sweep")
    for t in (1.0, 4.0):
        for seed in SEEDS:  # notebook 09's int8_size_ratio: dense size ÷ int8 size, higher is better
            path = folder / point_name({"temperature": t, "seed": seed}) / "metrics.json"
            path.write_text(json.dumps({**json.loads(path.read_text()), "int8_size_ratio": 3.5 + t / 10 + seed / 100}))
    _, page = report.write(folder, baseline=["temperature=1"], metrics_=["int8_size_ratio", "nll_change"])
    section = text_of(page.read_text().split("<h2>Against the baseline temperature=1.0</h2>")[1].split("<h2>")[0])
    assert "int8 size ratio +0.30 ± 0.00" in section
    assert section.count("temperature=4.0 is higher than temperature=1.0 (better)") == 1
    assert "temperature=4.0 is lower than temperature=1.0 (better)" in section  # nll_change: lower is better


@pytest.mark.parametrize("baseline, message", [
    (["alpha=0.5"], "NAME a swept parameter other than seed (temperature)"),
    (["seed=0"], "NAME a swept parameter other than seed"),
    (["temperature=2"], "temperature=2 is not in the grid; its values are 1.0, 4.0"),
    (["temperature"], "must be NAME=VALUE"),
    (["temperature=[1"], "--baseline 'temperature=[1': temperature='[1' is not in the grid"),  # not YAML
])
def test_a_baseline_outside_the_grid_is_refused_with_the_choices(tmp_path, capsys, baseline, message):
    folder = fake_sweep(tmp_path / "sweep")
    assert cli.main(["report", str(folder), *[f"--baseline={b}" for b in baseline]]) == 2
    assert message in capsys.readouterr().err
    assert not (folder / "report.html").exists()


def test_a_weak_teacher_gap_closed_is_not_defined_in_the_report(tmp_path):
    folder = fake_sweep(tmp_path / "sweep", teacher=0.90)
    md, page = report.write(folder, baseline=["temperature=1"])
    section = text_of(page.read_text().split("<h2>Gap closed</h2>")[1].split("<h2>")[0])
    # Both settings, from the seeds' accuracies: the teacher (90%) is below every scratch run.
    assert section.count(f"{GAP_NOT_DEFINED} by more than the seed spread (teacher 90.00%, scratch 95.00%") == 2
    assert not re.search(r"\d+ %", section.split("n ")[1].split("(distilled")[0])  # no number where it is undefined
    assert GAP_NOT_DEFINED in md.read_text()
    # Each point shows the notebook's own verdict too.
    points = text_of(page.read_text().split("<h2>Every point</h2>")[1])
    assert points.count("not defined") == 6


def test_a_strong_teacher_gap_closed_is_a_share_of_the_gap(tmp_path):
    folder = fake_sweep(tmp_path / "sweep", teacher=0.985)
    _, page = report.write(folder)
    section = text_of(page.read_text().split("<h2>Gap closed</h2>")[1].split("<h2>")[0])
    expected = gap_closed([DISTILLED[4.0][s] for s in SEEDS], [SCRATCH[s] for s in SEEDS], 0.985)
    assert f"4.0 {100 * expected:.0f} % 3" in section
    assert "not defined" not in section.split("(distilled")[0] or "1.0 not defined" in section


def test_a_setting_with_one_finished_seed_has_no_gap_closed(tmp_path):
    # One seed has no spread to compare the gap with, however far the teacher is ahead.
    folder = fake_sweep(tmp_path / "sweep", teacher=0.985, failed=[(4.0, 1), (4.0, 2)])
    _, page = report.write(folder)
    section = text_of(page.read_text().split("<h2>Gap closed</h2>")[1].split("<h2>")[0])
    assert f"4.0 {GAP_NOT_DEFINED} by more than the seed spread (one scratch seed gives no spread" in section
    expected = gap_closed([DISTILLED[1.0][s] for s in SEEDS], [SCRATCH[s] for s in SEEDS], 0.985)
    assert f"1.0 {100 * expected:.0f} % 3" in section
    assert "so never from one seed" in section


def test_with_no_seed_swept_gap_closed_is_the_notebooks_own(tmp_path):
    folder = fake_sweep(tmp_path / "sweep", teacher=0.985, seeded=False)
    # Each point's notebook ran its own seeds: too spread at T = 1 for a gap, a share of it at T = 4.
    why = f"{GAP_NOT_DEFINED} by more than the seed spread (teacher 98.50%, scratch 95.00% ± 4.00 pp)"
    for t, value, undefined in ((1.0, None, {"gap_closed": why}), (4.0, 0.4, None)):
        path = folder / point_name({"temperature": t}) / "metrics.json"
        record = json.loads(path.read_text())
        record.update(gap_closed=value, undefined=undefined or {})
        path.write_text(json.dumps(record))
    _, page = report.write(folder)
    section = text_of(page.read_text().split("<h2>Gap closed</h2>")[1].split("<h2>")[0])
    assert f"1.0 {why}" in section and "4.0 40 % 1" in section  # not a ratio of the points' mean accuracies
    assert "As each point's notebook computed it, over that point's own seeds" in section


def test_metrics_can_be_chosen_and_an_unknown_one_is_named(tmp_path, capsys):
    folder = fake_sweep(tmp_path / "sweep")
    assert cli.main(["report", str(folder), "--metric", "nll_change"]) == 0
    html = (folder / "report.html").read_text()
    assert "<h2>NLL change</h2>" in html and "<h2>Distilled accuracy</h2>" not in html
    points = text_of(html.split("<h2>Every point</h2>")[1])
    assert "-0.0213 ± 0.0101" in points  # a point's own CI (nll_change_ci) beside its value
    assert cli.main(["report", str(folder), "--metric", "accuracyy"]) == 2
    assert "--metric 'accuracyy' is not a metric of this sweep" in capsys.readouterr().err


def test_a_run_report_lists_each_notebook_with_its_result_and_link(tmp_path):
    folder = tmp_path / "run-20260101-100000"
    folder.mkdir()
    (folder / "01_teacher_training.ipynb").write_text("{}")
    (folder / "run.json").write_text(json.dumps({
        "command": ["kdlab", "run", "01", "02"], "start": "2026-01-01T10:00:00", "smoke": True,
        "versions": {"python": "3.11.7", "torch": "2.14.1"}, "device": "cpu (2 threads)",
        "machine": {"device": "cpu (2 threads)", "cpu": "Test CPU 3000", "cores": 2},
        "params": {"epochs": 2}, "planned": ["/x/01_teacher_training.ipynb", "/x/02_soft_targets.ipynb",
                                              "/x/03_temperature.ipynb"],
        "notebooks": [{"notebook": "01_teacher_training.ipynb", "status": "ok", "seconds": 60.0,
                       "headline": "teacher test accuracy 98.50%"},
                      {"notebook": "02_soft_targets.ipynb", "status": "interrupted", "error": "interrupted (Ctrl-C)"}]}))
    md, page = report.write(folder)
    text = text_of(page.read_text())
    assert "Run run-20260101-100000" in text and "Test CPU 3000" in text and "kdlab run 01 02" in text
    assert "01_teacher_training ok 1.0 min teacher test accuracy 98.50%" in text
    assert "02_soft_targets interrupted" in text and "not run: 03_temperature" in text
    assert '<a href="01_teacher_training.ipynb">' in page.read_text()
    assert "| 01_teacher_training" not in md.read_text()  # linked in Markdown too
    assert "[01_teacher_training](01_teacher_training.ipynb)" in md.read_text()
    with pytest.raises(ValueError, match="--baseline compares the points of a sweep"):
        report.write(folder, baseline=["temperature=1"])


def test_report_of_a_folder_that_is_neither(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "neither a run folder" in capsys.readouterr().err


# --- in a real browser ---------------------------------------------------------------------------------

def _chromium() -> str | None:
    return os.environ.get("KDLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
def test_the_report_reads_well_in_headless_chromium(tmp_path):
    """Opened offline in Chromium: the figures load from the page itself, each figure sits beside
    its table, nothing is cut off; a screenshot is left in tmp_path to look at."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    executable = _chromium()
    if executable is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the report's browser test needs Chromium (apt-get install chromium, or set KDLAB_CHROMIUM)")
        pytest.skip("no Chromium: apt-get install chromium, or set KDLAB_CHROMIUM")
    folder = fake_sweep(tmp_path / "sweep", teacher=0.90, failed=[(4.0, 2)])
    _, page_path = report.write(folder, baseline=["temperature=1"])
    requests = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
            assert images and all(done and width > 300 for done, width in images), images
            for metric in ("distilled_accuracy", "scratch_accuracy", "gain_pp"):
                figure = page.locator(f"#{metric} figure").bounding_box()
                table = page.locator(f"#{metric} table").bounding_box()
                assert figure["x"] + figure["width"] <= table["x"], metric  # beside, not below
                assert table["y"] < figure["y"] + figure["height"], metric
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1280, "the page is wider than the window"
            body = page.inner_text("body")
            assert GAP_NOT_DEFINED in body and "Against the baseline temperature=1.0" in body
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests), requests  # self-contained
    print(f"screenshot: {tmp_path / 'report.png'}")


def test_a_point_whose_metric_is_not_defined_is_counted_out_with_its_reason(tmp_path):
    folder = fake_sweep(tmp_path / "sweep")
    point = folder / point_name({"temperature": 4.0, "seed": 2})
    record = json.loads((point / "metrics.json").read_text())
    record.update(nll_change=None, undefined={"nll_change": "not defined: the scratch student's NLL was infinite"})
    (point / "metrics.json").write_text(json.dumps(record))
    _, page = report.write(folder, metrics_=["nll_change"])
    text = text_of(page.read_text())
    assert "-0.0852 ± 0.0000 1 of 3 points: not defined: the scratch student's NLL was infinite" in text
    assert "1.0 -0.0213 ± 0.0000 3" in text  # the mean of the defined points only, and how many


def test_each_points_metrics_are_read_once_and_give_the_fixed_parameters(tmp_path, monkeypatch):
    folder = fake_sweep(tmp_path / "sweep")
    reads = []
    read_text = Path.read_text

    def counting(self, *args, **kwargs):
        if self.name == "metrics.json":
            reads.append(self.parent.name)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    context = report.sweep_context(folder)
    assert sorted(reads) == sorted(p.parent.name for p in folder.glob("*/metrics.json"))  # once each, no second pass
    fixed = {p["name"]: (p["value"], p["source"]) for p in context["fixed"]}
    assert fixed["epochs"] == (30, "you") and fixed["dataset"] == ("mnist-5k", "notebook default")
    assert "temperature" not in fixed and "seed" not in fixed and "output_dir" not in fixed
    with open(sweeps.aggregate(folder, figure=False)) as fh:  # the private columns stay out of results.csv
        assert not [k for k in next(csv.reader(fh)) if k.startswith("_")]
