"""Shared helpers for the benchmark scripts: alternating timers and markdown tables.

Every ratio is measured inside one run with the contenders alternating round by
round, so a slow moment of a noisy machine hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def alternate(contenders: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each contender once per round, in turn; each returns the amount of work it did
    (samples). Returns samples per second per round for each contender.

    Round r starts with contender r (mod their number) and goes round in order, so no
    contender always runs right after the same neighbour (caches it left cold, a slow
    one before it): over the rounds every contender runs in every position."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        start = r % len(names)
        for name in names[start:] + names[:start]:
            run = contenders[name]
            t0 = time.perf_counter()
            work = run()
            rates[name].append(work / (time.perf_counter() - t0))
    return rates


def median(values) -> float:
    return statistics.median(values)


def ratio_stats(a: list[float], b: list[float]) -> str:
    """Ratio of medians, and the range of per-round ratios: '0.97 (0.95-0.99)'."""
    per_round = [x / y for x, y in zip(a, b)]
    return f"{median(a) / median(b):.2f} ({min(per_round):.2f}–{max(per_round):.2f})"


def ratio_ci(a: list[float], b: list[float]) -> str:
    """Geometric mean of the per-round ratios a/b and its 95% Student-t interval, taken on the
    log scale: the contenders alternate, so round i of a and round i of b are a pair, and a slow
    moment of the machine that hits both cancels in their ratio. '0.97 [0.95, 0.99]'."""
    import math

    import kdlab

    logs = [math.log(x / y) for x, y in zip(a, b)]
    mean, half = kdlab.metrics.mean_ci(logs)
    if math.isnan(half):
        return f"{math.exp(mean):.2f} [one round]"
    return f"{math.exp(mean):.2f} [{math.exp(mean - half):.2f}, {math.exp(mean + half):.2f}]"


def best_ratio(a: list[float], b: list[float]) -> str:
    """Ratio of the best rounds (highest rates): a noisy machine only ever slows a round
    down, so the fastest round of each contender is the closest to its true speed."""
    return f"{max(a) / max(b):.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs, not speed")
    return p


def positive_int(text: str) -> int:
    """argparse type for counts such as --rounds: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def parse_with_device(description: str, argv, device_help: str):
    """The arguments of a CPU-first benchmark (``--quick``, ``--device``, default cpu) and its torch device."""
    import kdlab

    p = parser(description)
    p.add_argument("--device", default="cpu", help=device_help)
    args = p.parse_args(argv)
    return args, kdlab.devices.resolve(args.device)
