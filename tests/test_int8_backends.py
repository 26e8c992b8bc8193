"""benchmarks/int8_backends.py runs end to end in --quick mode (no timing checks); needs torchao."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_int8_backends_quick():
    pytest.importorskip("torchao")
    import int8_backends

    out = int8_backends.main(["--quick"])
    assert "| float32 |" in out and "| torch.ao dynamic int8 (quantize_int8) |" in out
    assert "| torchao int8 " in out and "failed:" not in out
