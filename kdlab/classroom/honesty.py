"""Honest credit: an answer that only calls the kit's own implementation earns nothing.

Each exercise names its ``references``, the kit functions that already solve it
(``kdlab.losses.kd_loss`` for the KD loss). Two checks look for them, since neither
catches everything on its own:

* :func:`guard` wraps the learner's function: while it runs, every reference is
  replaced by a tripwire that notes the call and then does the work, both in its
  module (``kdlab.losses.kd_loss``) and in the learner's namespace (after
  ``from kdlab.losses import kd_loss``). The kit's own uses outside that call are not
  counted, so a check may still compare with the reference.
* :func:`static_uses` reads the answer's source with :mod:`ast` for names that
  resolve to a reference, which also catches a *value* computed with one
  (``answer = pairs[0][:2]`` after the notebook listed ``pairs``).

This is a guard against the honest shortcut, not against a determined cheat, and it
is no sandbox: the learner's code runs with the grader's rights.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import functools
import importlib
import inspect
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence

_MISSING = object()


def resolve(reference: str):
    """``(owner, attribute, object)`` for a dotted name such as ``"kdlab.losses.kd_loss"``."""
    parts = reference.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:-1]:
            owner = getattr(owner, part)
        return owner, parts[-1], getattr(owner, parts[-1])
    raise ValueError(f"reference {reference!r} does not name an importable function")


def _wire(reference: str, original: Callable, hits: list[str]) -> Callable:
    @functools.wraps(original)
    def tripwire(*args, **kwargs):
        if reference not in hits:
            hits.append(reference)
        return original(*args, **kwargs)

    return tripwire


@contextlib.contextmanager
def _tripwires(wired, hits: list[str], namespace: dict | None):
    saved = []  # (where, name, value) to put back, in reverse order
    try:
        for reference, owner, attribute, original in wired:
            wire = _wire(reference, original, hits)
            saved.append((owner, attribute, getattr(owner, attribute)))
            setattr(owner, attribute, wire)
            if namespace is not None:
                for name, value in list(namespace.items()):
                    if value is original:
                        saved.append((namespace, name, value))
                        namespace[name] = wire
        yield
    finally:
        for where, name, value in reversed(saved):
            if isinstance(where, dict):
                where[name] = value
            else:
                setattr(where, name, value)


def guard(fn: Callable, references: Sequence[str]) -> Callable:
    """``fn`` wrapped so that calls it makes to ``references`` are recorded in ``.hits``."""
    wired = [(ref, *resolve(ref)) for ref in references if "." in ref]
    hits: list[str] = []
    namespace = getattr(fn, "__globals__", None)

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        with _tripwires(wired, hits, namespace):
            return fn(*args, **kwargs)

    guarded.hits = hits
    return guarded


def parse(source: str) -> ast.Module | None:
    """``source`` parsed, with IPython's ``%magic`` and ``!shell`` lines blanked; None if it is not Python."""
    try:
        return ast.parse(source)
    except SyntaxError:
        pass
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _lookup(chain: str, scope: Mapping):
    first, *rest = chain.split(".")
    obj = scope.get(first, getattr(builtins, first, _MISSING))
    for part in rest:
        if not isinstance(obj, types.ModuleType):  # read attributes of modules only: no learner code runs
            return _MISSING
        obj = getattr(obj, part, _MISSING)
    return obj


def static_uses(source: str, answer, namespace: Mapping, references: Sequence[str]) -> list[str]:
    """The ``references`` that ``source`` (an answer cell, or the answer function's code) uses."""
    tree = parse(source)
    if tree is None or not references:
        return []
    scope = getattr(answer, "__globals__", None) or namespace
    originals = {ref: resolve(ref)[2] for ref in references if "." in ref}
    bare = {ref for ref in references if "." not in ref}
    local = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    local |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            used += [f"{node.module}.{alias.name}" for alias in node.names
                     if f"{node.module}.{alias.name}" in originals]
            continue
        if not isinstance(node, (ast.Name, ast.Attribute)) or not isinstance(node.ctx, ast.Load):
            continue
        chain = _dotted(node)
        if chain is None or chain.split(".")[0] in local and "." not in chain:
            continue
        if chain in bare:
            used.append(chain)
            continue
        obj = _lookup(chain, scope)
        for ref, original in originals.items():
            tail = ".".join(ref.split(".")[-2:])  # "losses.kd_loss" also matches an aliased module
            if obj is original or f".{chain}".endswith(f".{tail}"):
                used.append(ref)
    return list(dict.fromkeys(used))


def answer_source(name: str, answer, namespace: Mapping) -> str | None:
    """The code that made ``answer``: a function's definition, or the last cell of IPython's
    input history (``_ih``) that assigns ``name``; None if it cannot be found."""
    if callable(answer):
        try:
            return textwrap.dedent(inspect.getsource(answer))
        except (OSError, TypeError):
            pass
    history = namespace.get("_ih") or namespace.get("In") or []
    for cell in reversed(list(history)):
        tree = parse(cell) if isinstance(cell, str) else None
        if tree is None:
            continue
        for node in tree.body:
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            names = {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
            if name in names or (isinstance(node, ast.FunctionDef) and node.name == name):
                return cell
    return None


def message(name: str, used: Sequence[str], *, graded: bool = True) -> str:
    """The feedback for an answer that uses the kit's own implementation (``graded``: in a grade,
    which then says that it earns no points)."""
    calls = [u for u in used if "." in u]
    variables = [u for u in used if "." not in u]
    parts = []
    if calls:
        parts.append(f"calls {', '.join(calls)}, the kit's own implementation")
    if variables:
        parts.append(f"uses {', '.join(variables)}, which the notebook computed for you")
    verdict = ", so it earns no points" if graded else ""
    return (f"Write it yourself: {name} {' and '.join(parts)}{verdict}. Work it out with torch operations; "
            "comparing your answer with the kit's version in a cell of your own is fine.")
