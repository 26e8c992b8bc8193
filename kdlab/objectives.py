"""Training objectives: what the one training loop minimises.

:func:`kdlab.train.fit` runs the same loop for every method; only the objective
changes. An objective is an ``nn.Module`` (so it can own parameters, such as an
adversarial discriminator, and moves to the device with the student) called as

    loss, logs = objective(student_logits, targets, teacher_logits, inputs=x)

``loss`` is a float32 scalar to minimise; ``logs`` maps names to detached
0-dim tensors that the loop averages over the epoch without a host sync per
batch. Set ``uses_teacher = True`` to receive teacher logits (cached once when
inputs are not augmented, computed online on the same augmented views
otherwise). Objectives that train a model of their own (a discriminator)
implement ``auxiliary_step(...)``, which the loop calls after the student's step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import losses, validate


class Objective(nn.Module):
    """Base class. Subclasses implement ``forward`` and set ``uses_teacher``."""

    uses_teacher: bool = False

    def forward(self, student_logits: torch.Tensor, targets: torch.Tensor,
                teacher_logits: torch.Tensor | None = None, *, inputs: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-able description recorded in the training history and checkpoints."""
        return {"objective": type(self).__name__}


class CrossEntropy(Objective):
    """Plain supervised training on the true labels: ``CE(y, softmax(z_s))``."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = validate.real("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)

    def forward(self, student_logits, targets, teacher_logits=None, *, inputs=None):
        loss = F.cross_entropy(student_logits.float(), targets, label_smoothing=self.label_smoothing)
        return loss, {"ce": loss.detach()}

    def describe(self) -> dict:
        return {"objective": "CrossEntropy", "label_smoothing": self.label_smoothing}


class Distillation(Objective):
    r"""Hinton et al. (2015) knowledge distillation, alpha on the soft term:

    .. math:: L = \alpha \cdot T^2 \, KL(p_t^T \,\|\, p_s^T) + (1 - \alpha) \cdot CE(y, z_s)

    See :func:`kdlab.losses.distillation_loss`.
    """

    uses_teacher = True

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9):
        super().__init__()
        self.temperature = validate.positive("temperature", temperature)
        self.alpha = validate.probability("alpha", alpha)

    def forward(self, student_logits, targets, teacher_logits=None, *, inputs=None):
        # Same value and gradient as losses.distillation_loss, with the gradient in closed form.
        loss, soft, hard = losses.distillation_terms(student_logits, teacher_logits, targets, self.temperature,
                                                     self.alpha)
        return loss, {"kd": soft, "ce": hard}

    def describe(self) -> dict:
        return {"objective": "Distillation", "temperature": self.temperature, "alpha": self.alpha}


class TeacherHardLabels(Objective):
    """Train on the teacher's argmax predictions ("hard pseudo-labels") instead of the
    true labels: ``CE(argmax z_t, z_s)``. The true labels are ignored."""

    uses_teacher = True

    def forward(self, student_logits, targets, teacher_logits=None, *, inputs=None):
        pseudo = teacher_logits.argmax(dim=-1)
        loss = F.cross_entropy(student_logits.float(), pseudo)
        agree = (pseudo == targets).float().mean()
        return loss, {"ce_pseudo": loss.detach(), "pseudo_label_acc": agree.detach()}
