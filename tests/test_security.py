"""Checkpoints load safely, and nothing touches the network unless download=True."""

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

import kdlab

ROOT = Path(__file__).resolve().parents[1]


def test_checkpoints_load_with_weights_only(tmp_path, monkeypatch):
    path = kdlab.checkpoint.save(kdlab.models.create("linear", num_classes=3, input_shape=(1, 2, 2)), tmp_path / "m.pt")
    seen = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    kdlab.checkpoint.load(path)
    assert seen == [True]


class Payload:
    """Unpickling this would create a marker file: the classic malicious-checkpoint trick."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_malicious_checkpoint_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "kdlab-checkpoint", "kind": "model", "payload": Payload(marker)}, evil)
    assert zipfile.is_zipfile(evil)
    with pytest.raises(kdlab.errors.CheckpointError, match="refuses to unpickle"):
        kdlab.checkpoint.load(evil)
    assert not marker.exists()
    # Control: the same file *does* run code when loaded unsafely, so the test can fail.
    torch.load(evil, weights_only=False)
    assert marker.exists()


GUARD = textwrap.dedent("""
    # Installed through sitecustomize: records and refuses every connection that is not local.
    import os, socket
    _log = os.environ["KDLAB_SOCKET_LOG"]
    _real_connect = socket.socket.connect
    def _guarded(self, address):
        local = self.family == getattr(socket, "AF_UNIX", None) or (
            isinstance(address, tuple) and str(address[0]) in ("127.0.0.1", "::1", "localhost"))
        if not local:
            with open(_log, "a") as fh:
                fh.write(f"{address}\\n")
            raise OSError(f"network access blocked by the test guard: {address}")
        return _real_connect(self, address)
    socket.socket.connect = _guarded
""")


@pytest.fixture
def guarded_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "connections.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "KDLAB_SOCKET_LOG": str(log)}
    return env, log


def test_the_guard_catches_a_real_connection_attempt(guarded_env):
    env, log = guarded_env
    code = "import socket\ntry:\n    socket.create_connection(('203.0.113.1', 80), timeout=1)\nexcept OSError:\n    pass"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert "203.0.113.1" in log.read_text()


def test_import_and_training_open_no_connection(guarded_env):
    env, log = guarded_env
    code = ("import kdlab\nds = kdlab.data.load('mnist-5k')\nm = kdlab.models.create('mlp', num_classes=10, "
            "input_shape=ds.input_shape, hidden=(16,))\nkdlab.train.fit(m, ds, epochs=1, progress=False)\n"
            "kdlab.metrics.evaluate(m, ds.test)")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300, cwd=ROOT)
    assert not log.exists(), log.read_text()


@pytest.mark.slow
def test_a_notebook_in_smoke_mode_opens_no_connection(guarded_env, tmp_path):
    env, log = guarded_env
    nb = ROOT / "notebooks" / "01_teacher_training.ipynb"
    code = (f"import papermill\npapermill.execute_notebook({str(nb)!r}, {str(tmp_path / 'out.ipynb')!r}, "
            f"cwd={str(nb.parent)!r}, kernel_name='python3', progress_bar=False, parameters=dict(smoke=True, "
            f"output_dir={str(tmp_path / 'o')!r}, checkpoint_dir={str(tmp_path / 'c')!r}))")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600, cwd=ROOT)
    assert (tmp_path / "o" / "metrics.json").exists()
    assert not log.exists(), log.read_text()


@pytest.mark.slow
def test_the_guard_reaches_notebook_kernels(guarded_env, tmp_path):
    """Control for the test above: a kernel started by papermill inherits the guard."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(
        "import socket\ntry:\n    socket.create_connection(('203.0.113.1', 80), timeout=1)\nexcept OSError:\n    pass")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    env, log = guarded_env
    code = f"import papermill\npapermill.execute_notebook({str(path)!r}, {str(tmp_path / 'o.ipynb')!r}, kernel_name='python3', progress_bar=False)"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert "203.0.113.1" in log.read_text()
