"""Writing results to disk: atomic writes, JSON for results, new timestamped folders.

* :func:`atomic_write` writes to a temporary file in the target's folder, flushes it
  to disk, then renames it over the target. A reader sees the old file or the new
  one, never half of one, and a process killed mid-write leaves the old file intact.
* :func:`jsonable` turns tensors, numpy numbers and NaN into what JSON can hold;
  :func:`write_json` writes the result atomically.
* :func:`write_png` saves a matplotlib figure atomically.
* :func:`new_folder` makes a folder no earlier run has used.

Checkpoints (:mod:`kdlab.checkpoint`), metrics (:mod:`kdlab.lab`), run records
(:mod:`kdlab.runner`), measured model sizes (:mod:`kdlab.compress`) and figures
(:mod:`kdlab.lab`, :mod:`kdlab.sweeps`) all go through here.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from .errors import ParameterError

MODES = ("w", "wb")


def atomic_write(path: str | os.PathLike, write: Callable[[IO], object], mode: str = "w") -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"`` (bytes). The folder is created if
    needed; on any error the temporary file is removed and ``path`` is left as it was.
    """
    if mode not in MODES:
        raise ParameterError(f"mode={mode!r} is not accepted; accepted: {', '.join(map(repr, MODES))}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than tempfile.mkstemp: the file gets the usual permissions
    # (umask) instead of mkstemp's owner-only 0600, so shared run folders stay readable.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, mode.replace("w", "x"), **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename, so a crash cannot leave an empty target
        os.replace(tmp, path)  # atomic on POSIX and Windows within one filesystem
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def jsonable(value):
    """``value`` in JSON's types: mappings get str keys, tuples become lists, tensors and
    numpy values become numbers or lists, paths become str, NaN and ±inf become null."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if callable(getattr(value, "tolist", None)):  # torch tensors, numpy arrays and numpy scalars
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null reads as "not measured"
    return value


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``jsonable(obj)`` to ``path`` atomically, indented for reading; returns the path."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda fh: fh.write(text))


def write_png(fig, path: str | os.PathLike, *, dpi: int = 110, bbox_inches: str | None = None) -> Path:
    """Save matplotlib figure ``fig`` as a PNG at ``path`` atomically (a killed run leaves no half image);
    ``bbox_inches="tight"`` crops the white margin. Returns the path."""
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches=bbox_inches), "wb")


def new_folder(base: str | os.PathLike, prefix: str) -> Path:
    """A new folder ``base/prefix-YYYYmmdd-HHMMSS[-n]``; an existing one is never reused.

    ``mkdir`` either creates the folder or fails, so two processes starting in the same
    second get different folders.
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        path = base / (f"{prefix}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
