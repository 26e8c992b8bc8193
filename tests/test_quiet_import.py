"""``import kdlab`` only defines things: no threads, no pyplot, no ipywidgets, no torch work."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CODE = """
import json, os, sys
import torch  # first: torch's own start-up is not kdlab's

def threads():
    return len(os.listdir("/proc/self/task"))

before = threads()
import kdlab
after = threads()
report = {"before": before, "after": after, "pyplot": "matplotlib.pyplot" in sys.modules,
          "ipywidgets": "ipywidgets" in sys.modules, "torch_threads": torch.get_num_threads()}
torch.randn(512, 512) @ torch.randn(512, 512)  # control: a parallel operation does start threads
report["after_matmul"] = threads()
kdlab.plots.plot_history, kdlab.widgets.SoftTargetExplorer  # still there, loaded on first use
report["pyplot_on_use"] = "matplotlib.pyplot" in sys.modules
kdlab.checks.check_accuracy(None)  # what an exercise cell runs first in a learner's kernel
report["nbformat_in_checks"] = "nbformat" in sys.modules  # seconds of schema-validator imports, not needed there
print(json.dumps(report))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_import_kdlab_has_no_side_effects():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=300)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"], report
    assert not report["pyplot"] and not report["ipywidgets"], report
    assert report["pyplot_on_use"]
    assert not report["nbformat_in_checks"], "an exercise check imported nbformat (docs/BENCHMARKS.md, section 8)"
    if report["torch_threads"] > 1:  # the count does see threads when something starts them
        assert report["after_matmul"] > report["after"], report
