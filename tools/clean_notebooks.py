"""Strip outputs from notebooks and fix their kernelspec, or check that they are clean.

    python tools/clean_notebooks.py notebooks          # clean in place
    python tools/clean_notebooks.py --check notebooks  # exit 1 if any notebook is not clean

Uses only the standard library so CI can run it before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def problems(nb: dict) -> list[str]:
    found = []
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        found.append("kernelspec is not python3")
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            found.append(f"cell {i} has outputs")
    return found


def clean(nb: dict) -> dict:
    nb.setdefault("metadata", {})["kernelspec"] = dict(KERNELSPEC)
    nb["metadata"].pop("papermill", None)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders of notebooks")
    parser.add_argument("--check", action="store_true", help="report problems instead of fixing them")
    args = parser.parse_args(argv)
    notebooks = []
    for path in args.paths:
        notebooks += sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
    notebooks = [p for p in notebooks if ".ipynb_checkpoints" not in p.parts]
    bad = 0
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        found = problems(nb)
        if args.check:
            if found:
                bad += 1
                print(f"{path}: {'; '.join(found)} (run `make clean-notebooks`)")
        elif found:
            path.write_text(json.dumps(clean(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"cleaned {path}")
    if args.check:
        print(f"{len(notebooks)} notebook(s) checked, {bad} not clean")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
