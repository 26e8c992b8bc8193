"""Training objectives: what the one training loop minimises.

:func:`kdlab.train.fit` runs the same loop for every method; only the objective
changes. An objective is an ``nn.Module`` (so it can own parameters, such as an
adversarial discriminator, and moves to the device with the student), called on each
batch as

    loss, logs = objective(student_logits, batch)      # (B, K) logits, a kdlab.data.Batch

``loss`` is a float32 scalar to minimise; ``logs`` maps names to detached 0-dim
tensors that the loop averages over the epoch without a host sync per batch.

An objective that learns from a teacher owns it, as a :class:`kdlab.teacher.Teacher`
in ``self.teacher``, and asks it for the batch's logits: ``self.teacher.logits(batch)``.
``fit`` calls :meth:`Objective.prepare` once before the first step (the teacher then
computes any cache it needs), and :meth:`Objective.after_step` after each optimiser
step (an adversarial objective trains its discriminator there).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import losses, validate
from .data import Batch, Split
from .teacher import Teacher


def as_teacher(teacher: nn.Module | Teacher) -> Teacher:
    """``teacher`` as a :class:`~kdlab.teacher.Teacher` (a trained model is wrapped with the default caching)."""
    return teacher if isinstance(teacher, Teacher) else Teacher(teacher)


class Objective(nn.Module):
    """Base class. Subclasses implement ``forward(student_logits, batch) -> (loss, logs)``;
    those that learn from a teacher set ``self.teacher``."""

    teacher: Teacher | None = None

    def forward(self, student_logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def prepare(self, split: Split, *, augment: bool, epochs: int, device: torch.device, amp: bool,
                num_classes: int) -> None:
        """Called by ``fit`` once before training on ``split``: readies the teacher, if any."""
        if self.teacher is not None:
            self.teacher.prepare(split, augment=augment, epochs=epochs, device=device, amp=amp,
                                 num_classes=num_classes)

    def after_step(self, student_logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Called by ``fit`` after each optimiser step with the detached logits; returns extra logs."""
        return {}

    def describe(self) -> dict:
        """JSON-able description recorded in the training history and checkpoints."""
        return {"objective": type(self).__name__}


class CrossEntropy(Objective):
    """Plain supervised training on the true labels: ``CE(y, softmax(z_s))``."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = validate.real("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)

    def forward(self, student_logits, batch):
        loss = F.cross_entropy(student_logits.float(), batch.y, label_smoothing=self.label_smoothing)
        return loss, {"ce": loss.detach()}

    def describe(self) -> dict:
        return {"objective": "CrossEntropy", "label_smoothing": self.label_smoothing}


class Distillation(Objective):
    r"""Hinton et al. (2015) knowledge distillation, with kdlab's alpha on the **soft** term:

    .. math:: L = \alpha \cdot T^2 \, KL(p_t^T \,\|\, p_s^T) + (1 - \alpha) \cdot CE(y, z_s)

    Args:
        teacher: the trained teacher (an ``nn.Module``), or a :class:`~kdlab.teacher.Teacher`
            to choose how its logits are served (precomputed ``logits=``, ``cache=``).
        temperature: T > 0, softens both distributions.
        alpha: weight of the soft term, in [0, 1]; ``1 - alpha`` weighs cross-entropy
            on the true labels.
        soft_loss: the soft term as a function ``(student_logits, teacher_logits, T)``;
            default :func:`kdlab.losses.kd_loss`. Notebook 03 trains a student with the
            learner's own ``my_kd_loss`` through it.

    The soft term is :func:`kdlab.losses.kd_loss`, the function notebook 03 builds, so a
    breakpoint there stops inside ``fit``. The value equals :func:`kdlab.losses.distillation_loss`.
    """

    def __init__(self, teacher: nn.Module | Teacher, temperature: float = 4.0, alpha: float = 0.9,
                 soft_loss: Callable | None = None):
        super().__init__()
        self.teacher = as_teacher(teacher)
        if soft_loss is not None and not callable(soft_loss):
            raise TypeError(f"soft_loss={soft_loss!r} is not callable; pass a function "
                            "(student_logits, teacher_logits, T) -> loss, or None for kdlab.losses.kd_loss.")
        self.soft_loss = soft_loss
        # Checked once here, so the per-batch loss skips its own argument checks (check=False).
        self.temperature = validate.positive("temperature", temperature)
        self.alpha = validate.probability("alpha", alpha)

    def forward(self, student_logits, batch):
        teacher_logits = self.teacher.logits(batch)  # (B, K), no gradient
        if self.soft_loss is None:
            soft = losses.kd_loss(student_logits, teacher_logits, self.temperature, check=False)  # T² KL(p_t‖p_s)
        else:
            soft = self.soft_loss(student_logits, teacher_logits, self.temperature)
        hard = F.cross_entropy(student_logits.float(), batch.y)  # CE(y, z_s)
        loss = self.alpha * soft + (1.0 - self.alpha) * hard
        return loss, {"kd": soft.detach(), "ce": hard.detach()}

    def describe(self) -> dict:
        return {"objective": "Distillation", "temperature": self.temperature, "alpha": self.alpha,
                "teacher_logits": self.teacher.mode,
                "soft_loss": getattr(self.soft_loss, "__name__", "custom") if self.soft_loss else "kd_loss"}


class TeacherHardLabels(Objective):
    """Train on the teacher's argmax predictions ("hard pseudo-labels") instead of the
    true labels: ``CE(argmax z_t, z_s)``. The true labels are ignored (only logged
    against, as ``pseudo_label_acc``)."""

    def __init__(self, teacher: nn.Module | Teacher):
        super().__init__()
        self.teacher = as_teacher(teacher)

    def forward(self, student_logits, batch):
        pseudo = self.teacher.logits(batch).argmax(dim=-1)  # (B,)
        loss = F.cross_entropy(student_logits.float(), pseudo)
        agree = (pseudo == batch.y).float().mean()
        return loss, {"ce_pseudo": loss.detach(), "pseudo_label_acc": agree.detach()}

    def describe(self) -> dict:
        return {"objective": "TeacherHardLabels", "teacher_logits": self.teacher.mode}
