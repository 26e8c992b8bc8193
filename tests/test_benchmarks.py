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
    assert "| fit / bare + validation in fit's layout" in out  # the bare loop that does fit's work


@pytest.mark.slow
def test_loop_overhead_quick():
    import loop_overhead

    out = loop_overhead.main(["--quick"])
    for contender in ("bare", "base", *(f"+ {piece}" for piece in loop_overhead.PIECES), "all pieces", "fit"):
        assert f"| {contender} | " in out
    assert "1 epoch)" in out and "memory layout contiguous_format" in out and "outside its epochs" in out


def test_alternate_runs_every_contender_in_every_position():
    import common

    order = []
    contenders = {name: (lambda name=name: order.append(name) or 1.0) for name in "abc"}
    rates = common.alternate(contenders, rounds=3)
    assert order == list("abc" "bca" "cab")
    assert {name: len(r) for name, r in rates.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratio_ci_is_the_geometric_mean_of_paired_rounds():
    import common

    assert common.ratio_ci([2.0, 8.0], [1.0, 2.0]).startswith("2.83 [")  # sqrt(2 * 4)
    assert common.ratio_ci([3.0], [2.0]) == "1.50 [one round]"
    low, high = common.ratio_ci([1.0, 1.1, 0.9, 1.0], [1.0] * 4).split("[")[1].rstrip("]").split(", ")
    assert float(low) < 1.0 < float(high)
    with pytest.raises(SystemExit):
        common.parser("x").parse_args(["--quick", "extra"])
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="at least 1, got '0'"):
        common.positive_int("0")


@pytest.mark.slow
def test_distill_overhead_quick():
    import distill_overhead

    out = distill_overhead.main(["--quick"])
    assert "KD, cached teacher logits" in out and "per-augmentation logit cache" in out
    assert "| KD, objectives.Distillation (fit's path) |" in out and "| soft term alone, losses.kd_loss |" in out
    assert "default AdamW step" in out


@pytest.mark.slow
def test_kd_overhead_quick():
    import kd_overhead

    out = kd_overhead.main(["--quick"])
    assert "KD epoch ÷ CE epoch" in out and "| KD, cached teacher logits" in out and "Target ≤ 1.08" in out
    assert "| cached |" in out  # the Teacher computed its cache once and served it


@pytest.mark.slow
def test_distill_overhead_default_adamw_builds_the_default_step():
    import torch

    import distill_overhead
    import kdlab

    model = torch.nn.Linear(3, 2)
    with distill_overhead.default_adamw():
        opt = kdlab.train.make_optimizer("adamw", model, lr=1e-3, weight_decay=0.0)
    assert not opt.defaults.get("fused") and not opt.defaults.get("foreach")
    assert kdlab.train.make_optimizer("adamw", model, lr=1e-3, weight_decay=0.0).defaults.get("fused")


@pytest.mark.slow
def test_optimizer_step_quick():
    import optimizer_step

    out = optimizer_step.main(["--quick"])
    assert out.count("| fused |") == 2 and "| zeros |" in out


@pytest.mark.slow
def test_profile_ops_quick():
    import profile_ops

    out = profile_ops.main(["--quick"])
    assert "| CE 1 | KD 1 | CE 2 | KD 2 |" in out and "all operators" in out


@pytest.mark.slow
def test_long_run_drift_quick():
    import long_run_drift

    out = long_run_drift.main(["--quick"])
    assert "denormals kept" in out and "kdlab default" in out


@pytest.mark.slow
def test_time_to_lesson_quick(tmp_path):
    import time_to_lesson

    # One notebook suffices to check the script; the smoke runs of every notebook are in test_notebooks.
    out = time_to_lesson.main(["--quick", "--lessons", "--only", "01", "--keep", str(tmp_path)])
    assert out.count("| ok |") == 1, out
    assert (tmp_path / "01_teacher_training" / "metrics.json").exists()
    assert not (tmp_path / "02_soft_targets").exists()


@pytest.mark.slow
def test_gpu_paths_runs_on_cpu_in_quick_mode():
    import gpu_paths

    out = gpu_paths.main(["--quick", "--device", "cpu"])
    assert "| fit |" in out and "| bare |" in out and "Skipped: needs CUDA" in out


@pytest.mark.slow
def test_layout_quick():
    import layout

    out = layout.main(["--quick"])
    assert "| CNN, mnist-5k 28x28 |" in out and "| channels_last, batch 256 |" in out


@pytest.mark.slow
def test_lm_throughput_quick():
    import lm_throughput

    out = lm_throughput.main(["--quick"])
    assert "| teacher |" in out and "| GRU student |" in out and "cache ÷ no cache" in out
    assert "| student, forward KL (cached teacher) |" in out and "| student, on-policy (forward KL) |" in out


@pytest.mark.slow
def test_kd_attribution_quick():
    import kd_attribution

    out = kd_attribution.main(["--quick"])
    assert "| CE + lookup |" in out and "| KD forward, CE gradient |" in out and "| KD |" in out


def test_record_run_times_updates_the_course_and_every_quote(tmp_path):
    import json
    import shutil

    import record_run_times

    root = Path(__file__).resolve().parents[1]
    for rel in ("kdlab/course.py", "README.md", "docs/INSTRUCTORS.md", "notebooks/03_temperature.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, tmp_path / rel)
    run = tmp_path / "run"
    run.mkdir()
    entry = {"notebook": "03_temperature.ipynb", "status": "ok", "seconds": 754.0}
    (run / "run.json").write_text(json.dumps({"smoke": False, "notebooks": [entry]}))
    record_run_times.main([str(run), "--root", str(tmp_path)])
    assert 'Lesson("03_temperature"' in (tmp_path / "kdlab/course.py").read_text()
    assert "minutes=12.6" in (tmp_path / "kdlab/course.py").read_text()
    for rel in ("README.md", "docs/INSTRUCTORS.md"):
        line = next(line for line in (tmp_path / rel).read_text().splitlines() if "03_temperature" in line and " min" in line)
        assert "12.6 min" in line
    first = "".join(json.loads((tmp_path / "notebooks/03_temperature.ipynb").read_text())["cells"][0]["source"])
    assert "12.6 min" in next(line for line in first.splitlines() if "Run time" in line)
    (run / "run.json").write_text(json.dumps({"smoke": True, "notebooks": [entry]}))
    with pytest.raises(SystemExit, match="smoke run"):
        record_run_times.main([str(run), "--root", str(tmp_path)])


@pytest.mark.slow
def test_versions_ab_times_the_kdlab_it_imports(tmp_path):
    import versions_ab

    import kdlab

    teacher = kdlab.models.create("cnn", num_classes=10, input_shape=(1, 28, 28), seed=0)
    path = kdlab.checkpoint.save(teacher, tmp_path / "teacher.pt")
    out = versions_ab.main([str(path)])
    assert kdlab.__file__ in out and "teacher ms/256" in out and "mlp fit 3 ep" in out and "cnn fit 1 ep" in out


@pytest.mark.slow
def test_thread_contention_quick():
    import thread_contention

    out = thread_contention.main(["--quick"])
    assert "| passive |" in out and "two at once ÷ alone" in out, out


def test_the_suite_runs_with_passive_openmp_waiting():
    # conftest.py sets it before torch loads; a user's own setting wins (setdefault)
    import os

    assert os.environ.get("OMP_WAIT_POLICY", "").upper() in ("PASSIVE", "ACTIVE")
