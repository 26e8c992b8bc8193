"""Settings for every pytest run (unit tests, nbval and papermill smoke runs)."""

import os
import shutil
import tempfile

# make test runs two pytest workers, and each starts notebook kernels that train with one
# thread per core. With OpenMP's default wait policy, idle threads spin before they sleep,
# and two processes' spinning threads on 2 cores sometimes slow each other tenfold; passive
# waiting does not (benchmarks/thread_contention.py, docs/BENCHMARKS.md section 8). Set here,
# when pytest loads this file, because OpenMP reads it once, when torch is first imported (the
# tests' conftest imports kdlab); the workers and kernels started later inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config):
    # Notebooks executed by nbval/papermill inherit this environment: smoke mode makes
    # each one finish in seconds on `digits`. setdefault lets a user force a full run.
    os.environ.setdefault("KDLAB_SMOKE", "1")
    # No display on CI machines; figures render off-screen.
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Tests run on the CPU even on a GPU box, so results match CI.
    os.environ.setdefault("KDLAB_DEVICE", "cpu")
    # nbval runs the notebooks with their defaults (output_dir="", checkpoint_dir="../checkpoints"),
    # which write into the user's runs/ and checkpoints/. Both go to a folder deleted after the
    # session instead, so a test run leaves the tree as it found it; set unconditionally, because
    # a user's own KDLAB_RUNS would otherwise collect the smoke output.
    scratch = tempfile.mkdtemp(prefix="kdlab-tests-")
    config.kdlab_scratch = scratch
    os.environ["KDLAB_RUNS"] = os.path.join(scratch, "runs")
    os.environ["KDLAB_CHECKPOINTS"] = os.path.join(scratch, "checkpoints")
    # Hypothesis keeps its example database and constants cache in ./.hypothesis otherwise.
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(scratch, "hypothesis")


def pytest_unconfigure(config):
    shutil.rmtree(config.kdlab_scratch, ignore_errors=True)
