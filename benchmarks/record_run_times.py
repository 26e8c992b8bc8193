"""Copy the per-notebook run times of a finished ``kdlab run`` into the course and its docs.

    python benchmarks/record_run_times.py runs/run-<time>

Reads ``run.json`` (the seconds papermill took per notebook) and writes each
notebook's minutes, to one decimal, into the one place they come from,
``kdlab/course.py`` (``minutes=``), and the places that quote it: the README's
notebook map, ``docs/INSTRUCTORS.md`` and the run-time line of each notebook's first
cell (``tests/test_docs.py`` and ``tests/test_notebooks.py`` check they agree). Only a
run with default parameters, not in smoke mode, where every notebook passed, is accepted:
anything else would quote a time nobody measured at the defaults.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MINUTES = re.compile(r"\d+\.\d min")


def minutes_from_run(run_dir: Path) -> dict[str, float]:
    record = json.loads((run_dir / "run.json").read_text())
    if record.get("smoke"):
        sys.exit(f"{run_dir} is a smoke run; run times are quoted for default parameters.")
    times = {}
    for entry in record["notebooks"]:
        if entry.get("status") != "ok":
            sys.exit(f"{entry['notebook']} did not finish in {run_dir}; rerun before recording times.")
        times[Path(entry["notebook"]).stem] = round(entry["seconds"] / 60, 1)
    return times


def replace_on_line(text: str, marker: str, minutes: float) -> tuple[str, int]:
    """Replace the ``N.N min`` on every line that contains ``marker``."""
    count = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if marker in line and MINUTES.search(line):
            lines[i] = MINUTES.sub(f"{minutes:.1f} min", line, count=1)
            count += 1
    return "".join(lines), count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a runs/run-<time> folder written by kdlab run")
    parser.add_argument("--root", type=Path, default=ROOT, help="the kit's top folder (default: this checkout)")
    args = parser.parse_args(argv)
    times = minutes_from_run(args.run_dir)
    root = args.root
    course = root / "kdlab" / "course.py"
    source = course.read_text()
    for name, minutes in times.items():
        # The Lesson("<name>", ...) entry's minutes=..., the first one after its name.
        pattern = re.compile(rf'(Lesson\("{re.escape(name)}".*?minutes=)[\d.]+', re.S)
        source, n = pattern.subn(rf"\g<1>{minutes}", source, count=1)
        if not n:
            sys.exit(f"no Lesson entry for {name} in {course}")
    course.write_text(source)
    for doc in (root / "README.md", root / "docs" / "INSTRUCTORS.md"):
        text = doc.read_text()
        for name, minutes in times.items():
            text, _ = replace_on_line(text, name, minutes)
        doc.write_text(text)
    for name, minutes in times.items():
        path = root / "notebooks" / f"{name}.ipynb"
        nb = json.loads(path.read_text())
        first = "".join(nb["cells"][0]["source"])
        first, n = replace_on_line(first, "Run time", minutes)
        nb["cells"][0]["source"] = first.splitlines(keepends=True)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {minutes:.1f} min")


if __name__ == "__main__":
    main()
