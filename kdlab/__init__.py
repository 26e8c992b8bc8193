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

__all__ = ["adversarial", "checkpoint", "checks", "compress", "data", "devices", "errors", "experiments", "interpretable",
           "lab", "losses", "metrics", "models", "objectives", "plots", "train", "transfer", "transplant", "validate",
           "widgets", "__version__"]
