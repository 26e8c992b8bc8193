"""kdlab: a notebook tutorial-and-lab kit for knowledge distillation.

Modules, one per concern (see docs/ARCHITECTURE.md):
``data`` datasets on the device; ``models`` models by name; ``losses`` the KD
loss functions; ``objectives`` what the loop minimises; ``train`` the one
training loop; ``metrics`` evaluation; ``checkpoint`` safe saving and loading;
``files`` atomic writes and run folders; ``course`` the lessons (titles, run
times, parameter rules, headlines); ``lab``, ``plots``, ``widgets``, ``checks``
the notebooks' plumbing, figures, explorers and exercise checks; ``runner`` the
``kdlab`` command's runs and sweeps; ``book`` a run rendered as a static site;
``classroom`` the exercises' solutions and autograder tests, and the student and
instructor versions of the notebooks; ``transfer``, ``adversarial``, ``transplant``,
``interpretable``, ``compress`` the variants of notebooks 05-09; ``pitfalls`` the
classic mistakes that notebook 10 measures; ``text``, ``seqmodels``, ``lm`` the corpora,
language models and language-model distillation of notebook 12.

Importing kdlab only defines things: it starts no threads and runs no torch work.
``plots``, ``widgets`` and ``classroom`` load on first use (``kdlab.plots.plot_history``):
the first two import matplotlib's pyplot and ipywidgets, which only notebooks need, and
``classroom`` is only needed to release and grade a class.
"""

import importlib

from . import (adversarial, checkpoint, checks, compress, course, data, devices, errors, experiments, files, inference,
               interpretable, lab, lm, losses, metrics, models, objectives, pitfalls, seqmodels, teacher, text, train,
               transfer, transplant, validate)

__version__ = "0.1.0"

_LAZY = ("classroom", "plots", "widgets")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)  # also sets kdlab.<name>, so this runs once
    raise AttributeError(f"module 'kdlab' has no attribute {name!r}")


__all__ = ["adversarial", "checkpoint", "checks", "classroom", "compress", "course", "data", "devices", "errors",
           "experiments", "files", "inference", "interpretable", "lab", "lm", "losses", "metrics", "models", "objectives", "pitfalls", "plots", "seqmodels", "teacher", "text", "train", "transfer",
           "transplant", "validate", "widgets", "__version__"]
