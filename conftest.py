"""Settings for every pytest run (unit tests, nbval and papermill smoke runs)."""

import os


def pytest_configure(config):
    # Notebooks executed by nbval/papermill inherit this environment: smoke mode makes
    # each one finish in seconds on `digits`. setdefault lets a user force a full run.
    os.environ.setdefault("KDLAB_SMOKE", "1")
    # No display on CI machines; figures render off-screen.
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Tests run on the CPU even on a GPU box, so results match CI.
    os.environ.setdefault("KDLAB_DEVICE", "cpu")
