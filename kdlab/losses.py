"""Distillation losses as plain functions, each with its formula and paper.

Convention used everywhere in kdlab (other projects differ, so check before
comparing): ``alpha`` weights the **soft** (distillation) term,

    L = alpha * KD + (1 - alpha) * CE(y, z_s)

torchdistill and the Keras example also weight the soft term with alpha; the
PyTorch tutorial uses separate ``soft_target_loss_weight`` / ``ce_loss_weight``;
some papers and repositories put alpha on the hard term instead.

Notation: z_s, z_t are student and teacher logits (B, K); T is the temperature;
p^T = softmax(z / T). All losses are computed in float32 even when the logits
come from a bf16 autocast region, because log-softmax of large logits at small
T loses the small probabilities in bf16.

Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
Network", NIPS Deep Learning Workshop 2014, arXiv:1503.02531.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import validate


def _check_temperature(temperature) -> float:
    return validate.positive("temperature", temperature)


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Temperature-softened probabilities, ``softmax(logits / T)`` over the last dim.

    .. math:: p_i^T = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}

    T = 1 is the ordinary softmax; larger T flattens the distribution and makes
    the small probabilities (the "dark knowledge") visible.
    """
    temperature = _check_temperature(temperature)
    return F.softmax(logits.float() / temperature, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
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
    """
    temperature = _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise validate.ParameterError(
            f"student_logits has shape {tuple(student_logits.shape)} but teacher_logits has shape "
            f"{tuple(teacher_logits.shape)}; they must match (batch, classes).")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    # Rounding can leave a KL of -1e-9 between identical distributions; the true value is >= 0.
    return kl.clamp_min(0.0) * (temperature * temperature)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    r"""Hinton et al.'s combined objective, with **alpha on the soft term**:

    .. math:: L = \alpha \cdot T^2 \, KL(p_t^T \,\|\, p_s^T) + (1 - \alpha) \cdot CE(y, \mathrm{softmax}(z_s))

    ``alpha = 1`` trains on soft targets only; ``alpha = 0`` is plain cross-entropy.
    Hinton et al. found a small weight on the hard term works best; kdlab's default
    is ``alpha = 0.9``.
    """
    alpha = validate.probability("alpha", alpha)
    loss = alpha * kd_loss(student_logits, teacher_logits, temperature) if alpha > 0 else 0.0
    if alpha < 1:
        loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits.float(), targets)
    return loss if isinstance(loss, torch.Tensor) else student_logits.float().sum() * 0.0


class _DistillationTerms(torch.autograd.Function):
    r""":func:`distillation_loss` with its gradient written out (one autograd node).

    The forward pass is the same arithmetic as :func:`kd_loss` plus cross-entropy, and
    it also computes the closed-form gradient, which the backward pass only scales:

    .. math:: \frac{\partial L}{\partial z_s} = \frac{\alpha T}{B} (p_s^T - p_t^T)
              + \frac{1 - \alpha}{B} (p_s - \mathrm{onehot}(y))

    The first term is Hinton et al.'s Eq. 2, ``(q_i - p_i) / T``, times the T^2 factor.
    Why by hand: for a (128, 10) batch on a CPU each small op costs more in dispatch than
    in arithmetic, so differentiating a dozen of them one by one cost 3.7x a cross-entropy
    step, this node 2.6x (docs/BENCHMARKS.md, section 2).
    """

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, targets, temperature, alpha):
        s = student_logits.float()
        batch = s.shape[0]
        log_p_student = torch.log_softmax(s / temperature, dim=-1)
        log_p_teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
        p_teacher = log_p_teacher.exp()
        # sum_b sum_i p_t (log p_t - log p_s^T) as one dot product over the (B, K) entries.
        kd = torch.dot(p_teacher.view(-1), (log_p_teacher - log_p_student).view(-1))
        kd = kd.clamp_min_(0.0).mul_(temperature * temperature / batch)  # rounding can leave -1e-9
        log_p = torch.log_softmax(s, dim=-1)
        ce = F.nll_loss(log_p, targets)
        if ctx.needs_input_grad[0]:
            grad = log_p_student.exp_().sub_(p_teacher).mul_(alpha * temperature / batch)
            if alpha < 1.0:
                p = log_p.exp_()
                p.scatter_add_(1, targets[:, None], torch.full((batch, 1), -1.0, dtype=p.dtype, device=p.device))
                grad.add_(p, alpha=(1.0 - alpha) / batch)
            ctx.save_for_backward(grad)
        ctx.dtype = student_logits.dtype
        ctx.mark_non_differentiable(kd, ce)
        return torch.lerp(ce, kd, alpha), kd, ce  # alpha * kd + (1 - alpha) * ce

    @staticmethod
    def backward(ctx, grad_loss, _grad_kd, _grad_ce):
        (grad,) = ctx.saved_tensors
        return (grad * grad_loss).to(ctx.dtype), None, None, None, None


def distillation_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                       temperature: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, kd, ce)``: :func:`distillation_loss` and its two terms (detached), in one
    autograd node with the closed-form gradient (see ``_DistillationTerms``). Same values
    and gradients as :func:`distillation_loss` up to float rounding, in 0.7x its time on
    the reference CPU; :class:`kdlab.objectives.Distillation` uses it."""
    temperature = _check_temperature(temperature)
    alpha = validate.probability("alpha", alpha)
    if student_logits.shape != teacher_logits.shape:
        raise validate.ParameterError(
            f"student_logits has shape {tuple(student_logits.shape)} but teacher_logits has shape "
            f"{tuple(teacher_logits.shape)}; they must match (batch, classes).")
    return _DistillationTerms.apply(student_logits, teacher_logits, targets, float(temperature), float(alpha))


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
