"""Distillation losses as plain functions, each with its formula and paper.

Convention used everywhere in kdlab: ``alpha`` weights the **soft** (distillation) term,

    L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, z_s)

Other projects differ, so check before comparing numbers:

* torchdistill's ``KDLoss`` puts alpha on the **hard** term: ``alpha * CE + beta * T^2 * KL``;
* the Keras example does too: ``alpha * student_loss + (1 - alpha) * distillation_loss``;
* the PyTorch tutorial uses two separate weights, ``soft_target_loss_weight`` and ``ce_loss_weight``.

Notation: z_s, z_t are student and teacher logits (B, K); y are labels (B,); T is the
temperature; p^T = softmax(z / T). All losses are computed in float32 even when the
logits come from a bf16 autocast region, because log-softmax of large logits at small
T loses the small probabilities in bf16.

Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
Network", NIPS Deep Learning Workshop 2014, arXiv:1503.02531.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import validate


def _validate_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise validate.ParameterTypeError(f"{name} must be a tensor of shape (batch, classes), got {type(logits).__name__}.")
    if logits.dim() != 2:
        raise validate.ParameterError(f"{name} has shape {tuple(logits.shape)}; expected logits of shape "
                                      "(batch, classes).")


def _validate_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    _validate_logits("student_logits", student_logits)
    _validate_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        raise validate.ParameterError(
            f"student_logits has shape {tuple(student_logits.shape)} but teacher_logits has shape "
            f"{tuple(teacher_logits.shape)}; they must match (batch, classes).")


def _validate_targets(targets: torch.Tensor, logits: torch.Tensor) -> None:
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.long or targets.shape != logits.shape[:1]:
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise validate.ParameterError(f"targets must be int64 class labels of shape ({logits.shape[0]},), got {shape}"
                                      + (f" {targets.dtype}" if isinstance(targets, torch.Tensor) else "") + ".")
    k = logits.shape[1]
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= k):
        raise validate.ParameterError(f"targets hold labels from {int(targets.min())} to {int(targets.max())}, "
                                      f"outside the {k} classes of the logits; accepted: 0 to {k - 1}.")


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Temperature-softened probabilities, ``softmax(logits / T)`` over the last dim.

    .. math:: p_i^T = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}

    T = 1 is the ordinary softmax; larger T flattens the distribution and makes
    the small probabilities (the "dark knowledge") visible.
    """
    temperature = validate.positive("temperature", temperature)
    return F.softmax(logits.float() / temperature, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, *,
            check: bool = True) -> torch.Tensor:
    r"""Hinton et al.'s soft-target loss: ``T^2 * KL(p_teacher^T || p_student^T)``, averaged over the batch.

    .. math:: L_{KD} = T^2 \cdot \frac{1}{B} \sum_b \sum_i p^T_{t,bi} (\log p^T_{t,bi} - \log p^T_{s,bi})

    * The KL runs from teacher to student: the teacher's distribution is the target.
      (``F.kl_div(input, target)`` computes KL(target || input) and wants the
      *student's log-probabilities* as ``input``.)
    * ``batchmean`` divides by the batch size B, which gives the true KL per example;
      ``reduction="mean"`` would also divide by the number of classes K.
    * The gradient of the KL with respect to z_s scales as 1/T^2 (Hinton et al.,
      Sec. 2), so multiplying by T^2 keeps the soft term's gradient about the same
      size whatever T is, and alpha keeps its meaning across temperatures.
    * The loss is 0 when the student's logits equal the teacher's, and finite for
      logits up to about ±1e4 at T from 0.05 to 100 (log-softmax is computed directly).

    ``check=False`` skips the argument checks, for callers that made them once
    (:class:`kdlab.objectives.Distillation` does, when it is built).
    """
    if check:
        temperature = validate.positive("temperature", temperature)
        _validate_pair(student_logits, teacher_logits)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, K)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, K)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    # Rounding can leave a KL of -1e-9 between identical distributions; the true value is >= 0.
    return kl.clamp_min(0.0) * (temperature * temperature)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    r"""Hinton et al.'s combined objective, with **alpha on the soft term**:

    .. math:: L = \alpha \cdot T^2 \, KL(p_t^T \,\|\, p_s^T) + (1 - \alpha) \cdot CE(y, \mathrm{softmax}(z_s))

    ``alpha = 1`` trains on soft targets only; ``alpha = 0`` is plain cross-entropy.
    Hinton et al. found a small weight on the hard term works best; kdlab's default
    is ``alpha = 0.9``. :class:`kdlab.objectives.Distillation` trains with this loss.
    """
    temperature = validate.positive("temperature", temperature)
    alpha = validate.probability("alpha", alpha)
    _validate_pair(student_logits, teacher_logits)
    _validate_targets(targets, student_logits)
    soft = kd_loss(student_logits, teacher_logits, temperature, check=False)
    hard = F.cross_entropy(student_logits.float(), targets)
    return alpha * soft + (1.0 - alpha) * hard


def soft_cross_entropy(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    r"""Cross-entropy against a probability vector, ``-sum_i q_i log p_i``, averaged over the batch.

    It equals KL(q || p) plus the (constant) entropy of q, so it has the same
    gradient as the KL; it is the form used for label smoothing and pseudo-labels.
    """
    return -(target_probs.float() * F.log_softmax(student_logits.float(), dim=-1)).sum(-1).mean()


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    r"""Shannon entropy in bits, ``-sum_i p_i log2 p_i``, with 0 log 0 = 0."""
    probs = probs.float()
    return -(probs * torch.log2(probs.clamp_min(1e-30))).sum(dim)
