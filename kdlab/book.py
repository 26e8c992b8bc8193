"""The course as a static website: ``kdlab book`` renders a run folder's executed notebooks.

``kdlab run`` leaves one executed notebook per lesson in a new run folder; :func:`build`
turns them into HTML with nbconvert's ``lab`` template, one page per notebook in course
order, each with links to the previous and next lesson, plus an ``index.html`` listing
them with their title (:data:`kdlab.course.LESSONS`, else the notebook's first heading),
run time and headline result (both from the run's ``run.json``, see :mod:`kdlab.runner`).

* Figures are ``data:`` images inside the pages, so each page is one self-contained
  file; every link between pages is relative, so the folder can be copied, zipped or
  served as it is. Formulas are typeset by MathJax, which the page loads from a CDN
  (offline they show as TeX source).
* The book goes to ``<run>/book/`` (or ``--out DIR``). A folder that exists is never
  overwritten silently: the build stops with an error unless ``force=True``
  (``--force``), and even then it replaces only a folder holding a book written here
  (its ``book.json``), so a mistyped ``--out`` cannot delete anything else. The new
  book is written beside the old one and swapped in at the end, so a failed build
  leaves the old book as it was.

    kdlab book [RUN_DIR] [--out DIR] [--force]        # or: make book
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import re
import shutil
from pathlib import Path

from . import course
from .errors import ParameterError
from .files import atomic_write, write_json

#: The file that marks a folder as a book this module wrote (and may replace with ``force``).
MARKER = "book.json"
_RUN_NAME = re.compile(r"^run-(\d{8}-\d{6})(?:-(\d+))?$")  # files.new_folder's names: run-YYYYmmdd-HHMMSS[-n]
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;line-height:1.45}"
          "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:6px 8px;"
          "text-align:left;vertical-align:top}.learn{color:#555;font-size:.92em}.failed{color:#b00020;"
          "font-weight:bold}.time{white-space:nowrap}")
_NAV_STYLE = ("<style>.kdlab-nav{display:flex;justify-content:space-between;gap:1em;max-width:1100px;"
              "margin:.5em auto;padding:.5em 1em;font-family:system-ui,sans-serif;border-bottom:1px solid #ddd}"
              "</style>")


def latest_run(root: Path | None = None) -> Path:
    """The newest run folder (``run-*`` holding a ``run.json``) under ``root``
    (default :func:`kdlab.lab.runs_root`)."""
    from .lab import runs_root

    root = Path(root) if root is not None else runs_root()
    runs = []
    for folder in root.glob("run-*"):
        name = _RUN_NAME.match(folder.name)
        if name and (folder / "run.json").is_file():
            # By name, not by file time: a copied or touched folder keeps its place; -10 comes after -9.
            runs.append(((name.group(1), int(name.group(2) or 1)), folder))
    if not runs:
        raise FileNotFoundError(f"no run folder (run-*/run.json) in {str(root)!r}; make one with `kdlab run` "
                                "(or `make run`), or give RUN_DIR.")
    return max(runs)[1]


def _first_heading(notebook) -> str | None:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return None


def _title(stem: str, notebook) -> str:
    if stem in course.LESSONS:
        return course.LESSONS[stem].title
    return (notebook is not None and _first_heading(notebook)) or stem


def _took(entry: dict) -> str:
    return f"{entry['seconds'] / 60:.1f} min" if "seconds" in entry else ""


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise ParameterError(f"the book folder (--out) {str(out)!r} already exists; accepted: a folder that does "
                             "not exist yet (--out DIR), or --force to replace the book in it.")
    if not (out / MARKER).is_file():
        raise ParameterError(f"the book folder (--out) {str(out)!r} exists and is not a book written by kdlab "
                             f"(it has no {MARKER}); --force replaces only a book, so choose another --out.")


def _page(notebook, title: str, nav: str, links: dict[str, str]) -> str:
    """One executed notebook (an nbformat node) as HTML, with ``nav`` after ``<body>`` and
    links between notebooks (``02_soft_targets.ipynb``) pointed at their pages."""
    from nbconvert import HTMLExporter

    from .runner import notebook_dir

    # embed_images: a Markdown image becomes a data: URI too, read relative to the notebooks' folder
    # (the run executes them there); output figures are data: URIs already.
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title,
                                                                            "path": str(notebook_dir())}})

    def relink(match: re.Match) -> str:
        target = links.get(match.group(2))
        return f"{match.group(1)}{target}{match.group(3) or ''}\"" if target else match.group(0)

    body = re.sub(r'(href=")(\d\d_[\w-]+\.ipynb)(#[^"]*)?"', relink, body)
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + _NAV_STYLE + nav, body, count=1)


def _nav(pages: list[tuple[str, str]], i: int) -> str:
    """Links to the previous page, the contents and the next page; ``pages`` holds (file, title)."""
    esc = html.escape
    empty = "<span></span>"  # keeps "Contents" in the middle on the first and last page
    prev = f"<a href='{esc(pages[i - 1][0])}'>← {esc(pages[i - 1][1])}</a>" if i > 0 else empty
    after = f"<a href='{esc(pages[i + 1][0])}'>{esc(pages[i + 1][1])} →</a>" if i + 1 < len(pages) else empty
    return f"<nav class='kdlab-nav'>{prev}<a href='index.html'>Contents</a>{after}</nav>"


def _index(run_dir: Path, record: dict, rows: list[dict]) -> str:
    esc = html.escape
    title = f"kdlab course, {run_dir.name}"
    parts = [f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_STYLE}</style>", f"<h1>{esc(title)}</h1>",
             f"<p>Started {esc(str(record.get('start', '?')))} on {esc(str(record.get('device', '?')))}."]
    if record.get("smoke"):
        parts.append(" Smoke mode: each notebook ran in seconds on a small dataset, so its numbers only show "
                     "that it works, not what the method achieves.")
    parts.append("</p><table><tr><th>#</th><th>notebook</th><th>time</th><th>result</th></tr>")
    for row in rows:
        entry, lesson = row["entry"], course.LESSONS.get(row["stem"])
        name = esc(row["title"])
        link = f"<a href='{esc(row['file'])}'>{name}</a>" if row["file"] else name
        learn = f"<div class='learn'>{esc(lesson.learn)}</div>" if lesson else ""
        if entry["status"] == "ok":
            result = esc(entry.get("headline") or "")
        else:
            result = f"<span class='failed'>failed</span> {esc(entry.get('error', ''))}"
        if not row["file"]:
            result += " (no executed notebook in the run folder)"
        parts.append(f"<tr><td>{esc(row['stem'][:2])}</td><td>{link}{learn}</td>"
                     f"<td class='time'>{esc(_took(entry))}</td><td>{result}</td></tr>")
    parts.append("</table></html>")
    return "\n".join(parts) + "\n"


def build(run_dir: Path | None = None, out: Path | None = None, *, force: bool = False) -> Path:
    """Render ``run_dir`` (default: :func:`latest_run`) into ``out`` (default ``run_dir/book``);
    returns the path of ``index.html``. See the module docstring for when it refuses."""
    import nbformat

    run_dir = Path(run_dir) if run_dir is not None else latest_run()
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"RUN_DIR {str(run_dir)!r} is not a run folder (it has no run.json); run folders "
                                "are made by `kdlab run`.")
    out = Path(out) if out is not None else run_dir / "book"
    _check_out(out, force)
    record = json.loads((run_dir / "run.json").read_text())
    rows = []
    # Course order: notebook names start with their number, whatever order they were run in.
    for entry in sorted(record["notebooks"], key=lambda e: e["notebook"]):
        stem = Path(entry["notebook"]).stem
        executed = run_dir / entry["notebook"]
        notebook = nbformat.read(executed, as_version=4) if executed.is_file() else None
        rows.append({"stem": stem, "entry": entry, "notebook": notebook, "title": _title(stem, notebook),
                     "file": f"{stem}.html" if notebook is not None else None})
    pages = [(row["file"], row["title"]) for row in rows if row["file"]]
    links = {f"{row['stem']}.ipynb": row["file"] for row in rows if row["file"]}

    # Written beside `out`, then swapped in: a failed build leaves an existing book untouched.
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for i, row in enumerate(row for row in rows if row["file"]):
            text = _page(row["notebook"], row["title"], _nav(pages, i), links)
            atomic_write(staging / row["file"], lambda fh, text=text: fh.write(text))
        index = _index(run_dir, record, rows)
        atomic_write(staging / "index.html", lambda fh: fh.write(index))
        write_json(staging / MARKER, {"run": run_dir.name, "written": _dt.datetime.now().isoformat(timespec="seconds"),
                                      "pages": [file for file, _ in pages]})
        if out.exists():  # _check_out allowed it: force, and a book
            old = out.with_name(f".{out.name}.{os.getpid()}.old")
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"
