"""``kdlab book``: a run folder as a static website with relative links and inline figures,
which never overwrites an existing book unless told to."""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from kdlab import book, cli

ROOT = Path(__file__).resolve().parents[1]
# Two quick notebooks of the course: 01 trains the smoke teacher that 02 loads.
SMOKE_NOTEBOOKS = ("01_teacher_training", "02_soft_targets")
LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']*)["']""")
PNG = re.compile(r"""<img[^>]*\ssrc=["']data:image/png;base64,""")
# 1x1 transparent PNG: an output figure for the hand-made runs below.
TINY_PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4c50000000049454e44ae426082")).decode()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A real `kdlab run --smoke` of two notebooks, once for the module: (run folder, stderr)."""
    out = tmp_path_factory.mktemp("runs")
    # A subprocess, as a user runs it; its stderr (kernels included) is checked below.
    done = subprocess.run([sys.executable, "-m", "kdlab", "run", *SMOKE_NOTEBOOKS, "--smoke", "--out", str(out)],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = out.glob("run-*")
    return folder, done.stderr


@pytest.fixture(scope="module")
def smoke_book(smoke_run):
    folder, _ = smoke_run
    assert cli.main(["book", str(folder)]) == 0
    return folder / "book"


def links(page: Path) -> list[str]:
    return LINK.findall(page.read_text(encoding="utf-8"))


def local_links(page: Path) -> list[str]:
    """Links to files: not data: URIs, not anchors within the page, not the web (MathJax's CDN)."""
    return [link for link in links(page) if not link.startswith(("data:", "#", "https://"))]


def index_pages(folder: Path) -> list[str]:
    return [link for link in local_links(folder / "index.html") if link.endswith(".html")]


@pytest.mark.slow
def test_a_smoke_run_prints_no_kernel_warnings(smoke_run):
    from tests.test_cli import KERNEL_WARNINGS

    _, stderr = smoke_run
    assert not [line for line in stderr.splitlines() if KERNEL_WARNINGS.search(line)], stderr


@pytest.mark.slow
def test_the_index_lists_the_notebooks_in_order_with_titles_times_and_headlines(smoke_run, smoke_book):
    folder, _ = smoke_run
    assert index_pages(smoke_book) == [f"{stem}.html" for stem in SMOKE_NOTEBOOKS]
    text = (smoke_book / "index.html").read_text(encoding="utf-8")
    assert "Train the teacher" in text and "Soft targets" in text  # titles from kdlab.course.LESSONS
    record = json.loads((folder / "run.json").read_text())
    for entry in record["notebooks"]:
        assert f"{entry['seconds'] / 60:.1f} min" in text
        if entry.get("headline"):
            assert entry["headline"] in text
    assert record["notebooks"][0]["headline"].startswith("teacher test accuracy")


@pytest.mark.slow
def test_every_link_is_relative_and_resolves(smoke_run, smoke_book):
    folder, _ = smoke_run
    pages = sorted(smoke_book.glob("*.html"))
    assert len(pages) == 1 + len(SMOKE_NOTEBOOKS)
    for page in pages:
        for link in links(page):
            assert str(folder.parent) not in link and not link.startswith(("file:", "/")), (page.name, link)
        for link in local_links(page):
            assert ":" not in link and (smoke_book / link.split("#")[0]).is_file(), (page.name, link)


@pytest.mark.slow
def test_executed_pages_hold_their_figures_inline(smoke_book):
    for stem in SMOKE_NOTEBOOKS:
        assert PNG.search((smoke_book / f"{stem}.html").read_text(encoding="utf-8")), stem


@pytest.mark.slow
def test_an_existing_book_is_replaced_only_with_force(smoke_run, smoke_book, capsys, tmp_path):
    folder, _ = smoke_run
    before = (smoke_book / "index.html").stat().st_mtime_ns
    assert cli.main(["book", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err
    assert (smoke_book / "index.html").stat().st_mtime_ns == before
    other = tmp_path / "site"
    assert cli.main(["book", str(folder), "--out", str(other)]) == 0
    (other / "stale.txt").write_text("from the book before")
    assert cli.main(["book", str(folder), "--out", str(other), "--force"]) == 0
    assert not (other / "stale.txt").exists() and (other / "index.html").exists()


# --- hand-made run folders: no kernel needed ---

def fake_run(runs: Path, name: str, entries: list[tuple[str, str, list]]) -> Path:
    """A run folder as `kdlab run` leaves it: run.json and executed notebooks, given as
    (stem, status, cells); a None cells list means the notebook never ran."""
    folder = runs / name
    folder.mkdir(parents=True)
    record = {"start": "2025-01-01T12:00:00", "device": "cpu", "smoke": True, "notebooks": []}
    for stem, status, cells in entries:
        entry = {"notebook": f"{stem}.ipynb", "status": status, "seconds": 90.0}
        if status == "ok":
            entry["headline"] = f"headline of {stem}"
        else:
            entry["error"] = "RuntimeError: deliberate (cell [2])"
        record["notebooks"].append(entry)
        if cells is not None:
            nbformat.write(new_notebook(cells=cells), folder / f"{stem}.ipynb")
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def figure_cell():
    cell = new_code_cell("plot()")
    cell.outputs = [new_output("display_data", data={"image/png": TINY_PNG, "text/plain": "<Figure>"})]
    return cell


def test_pages_link_to_each_other_and_mark_failures(tmp_path):
    run = fake_run(tmp_path, "run-20250101-120000", [
        ("99_my_experiment", "ok", [new_markdown_cell("Intro\n\n## My experiment\ntext"), figure_cell()]),
        ("03_temperature", "failed", [new_markdown_cell("# Temperature\nSee [the teacher](01_teacher_training.ipynb)"
                                                        " or [soft targets](02_soft_targets.ipynb#top).")]),
        ("01_teacher_training", "ok", [new_markdown_cell("# Teacher"), figure_cell()]),
        ("02_soft_targets", "failed", None),
    ])
    index = book.build(run)
    assert index == run / "book" / "index.html"
    # Course order, whatever the run's order; a notebook that never ran has no page.
    assert index_pages(run / "book") == ["01_teacher_training.html", "03_temperature.html", "99_my_experiment.html"]
    text = index.read_text(encoding="utf-8")
    assert "Temperature and alpha" in text and "My experiment" in text  # the course's title, else the first heading
    assert text.count("class='failed'") == 2 and "RuntimeError: deliberate" in text and "1.5 min" in text
    page = (run / "book" / "03_temperature.html").read_text(encoding="utf-8")
    # A link to a notebook with a page goes to the page; one without a page is left as written.
    assert 'href="01_teacher_training.html"' in page and 'href="02_soft_targets.ipynb#top"' in page
    nav = re.search(r"<nav class='kdlab-nav'>.*?</nav>", page).group(0)
    assert LINK.findall(nav) == ["01_teacher_training.html", "index.html", "99_my_experiment.html"]
    assert PNG.search((run / "book" / "01_teacher_training.html").read_text(encoding="utf-8"))
    assert json.loads((run / "book" / book.MARKER).read_text())["run"] == run.name


def test_force_never_replaces_a_folder_that_is_not_a_book(tmp_path, capsys):
    run = fake_run(tmp_path / "runs", "run-20250101-120000", [("01_teacher_training", "ok", [figure_cell()])])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert cli.main(["book", str(run), "--out", str(mine), "--force"]) == 2
    assert "not a book" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep me"


def test_the_default_run_is_the_newest(tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    for name in ("run-20250101-120000", "run-20250101-120000-9", "run-20250101-120000-10", "run-20241231-235959"):
        fake_run(runs, name, [("01_teacher_training", "ok", [figure_cell()])])
    (runs / "run-20260101-000000").mkdir()  # newer, but without run.json: not a run folder
    assert book.latest_run(runs).name == "run-20250101-120000-10"
    monkeypatch.setenv("KDLAB_RUNS", str(runs))
    assert cli.main(["book"]) == 0
    assert (runs / "run-20250101-120000-10" / "book" / "index.html").is_file()
    assert "run-20250101-120000-10" in capsys.readouterr().out


def test_no_run_folder_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path / "empty"))
    assert cli.main(["book"]) == 2
    err = capsys.readouterr().err
    assert "no run folder" in err and "kdlab run" in err
    assert cli.main(["book", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
