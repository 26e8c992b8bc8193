"""Run every benchmark and write their tables to benchmarks/results/latest.md (``make bench``).

    python benchmarks/run_all.py [--quick] [--skip-lessons]
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import distill_overhead  # noqa: E402
import kd_attribution  # noqa: E402
import kd_overhead  # noqa: E402
import layout  # noqa: E402
import lm_throughput  # noqa: E402
import long_run_drift  # noqa: E402
import loop_throughput  # noqa: E402
import optimizer_step  # noqa: E402
import sweep_threads  # noqa: E402
import time_to_lesson  # noqa: E402
from common import parser  # noqa: E402


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--skip-lessons", action="store_true", help="skip the notebook, sweep and test-suite timings (~15 min)")
    p.add_argument("--keep", metavar="DIR", help="keep the notebooks' outputs (metrics.json, figures) in DIR")
    args = p.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    parts = [f"# kdlab benchmarks, {dt.datetime.now():%Y-%m-%d %H:%M}", "",
             f"Command: `python benchmarks/run_all.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(), ""]
    parts.append(loop_throughput.main(quick))
    parts.append(optimizer_step.main(quick))
    parts.append(long_run_drift.main(quick))
    parts.append(layout.main(quick))
    parts.append(kd_overhead.main(quick))
    parts.append(distill_overhead.main(quick))
    parts.append(kd_attribution.main(quick))
    parts.append(lm_throughput.main(quick))
    if not args.skip_lessons:
        parts.append(sweep_threads.main(quick))
        parts.append(time_to_lesson.main(quick + (["--keep", args.keep] if args.keep else [])))
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    name = "quick.md" if args.quick else "latest.md"
    (results / name).write_text("\n".join(parts) + "\n")
    print(f"wrote {results / name}")


if __name__ == "__main__":
    main()
