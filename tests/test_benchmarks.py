"""Each benchmark script runs end to end in --quick mode and prints its table (no timing checks)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_loop_throughput_quick():
    import loop_throughput

    out = loop_throughput.main(["--quick"])
    assert "| MLP 800-800 |" in out and "| CNN teacher |" in out and "fit / bare" in out


@pytest.mark.slow
def test_distill_overhead_quick():
    import distill_overhead

    out = distill_overhead.main(["--quick"])
    assert "KD, cached teacher logits" in out and "per-view logit cache" in out


@pytest.mark.slow
def test_time_to_lesson_quick(tmp_path):
    import time_to_lesson

    out = time_to_lesson.main(["--quick", "--lessons", "--keep", str(tmp_path)])
    assert out.count("| ok |") == 4, out
    assert (tmp_path / "04_student_comparison" / "metrics.json").exists()
