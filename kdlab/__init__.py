"""kdlab: a notebook tutorial-and-lab kit for knowledge distillation.

Modules, one per concern (see docs/ARCHITECTURE.md):
``data`` datasets on the device; ``models`` models by name; ``losses`` the KD
loss functions; ``objectives`` what the loop minimises; ``train`` the one
training loop; ``metrics`` evaluation; ``checkpoint`` safe saving and loading;
``lab``, ``plots``, ``checks`` the notebooks' plumbing, figures and exercise checks;
``transfer``, ``adversarial``, ``transplant``, ``interpretable``, ``compress`` the
variants of notebooks 05-09.
"""

from . import (adversarial, checkpoint, checks, compress, data, devices, errors, experiments, interpretable, lab, losses,
               metrics, models, objectives, plots, train, transfer, transplant, validate, widgets)

__version__ = "0.1.0"

# The CPU's worker threads flush denormal floats to zero (why: devices.flush_denormals).
# Done at import because workers copy the setting when they start, on the first parallel
# operation; set later (as fit does for its own thread), it never reached the threads
# running the matrix products, and long CPU runs slowed down 2x and more
# (docs/BENCHMARKS.md, section 1). Python's own floats are left alone.
# KDLAB_KEEP_DENORMALS=1 opts out.
devices.WORKERS_FLUSH_DENORMALS = devices.flush_denormals_in_workers()

__all__ = ["adversarial", "checkpoint", "checks", "compress", "data", "devices", "errors", "experiments", "interpretable",
           "lab", "losses", "metrics", "models", "objectives", "plots", "train", "transfer", "transplant", "validate",
           "widgets", "__version__"]
