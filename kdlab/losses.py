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

Sequences: a language model's logits are (B, L, V), one distribution per position. Every
loss here accepts (..., K) logits and averages over every position, as if each position
were one example of the batch; ``mask`` (the shape of the logits without K, True where a
position counts) leaves padding out, and targets equal to :data:`IGNORE_INDEX` are not
scored. On (B, L, V) logits a loss equals the same loss on the (B*L, V) rows.

Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
Network", NIPS Deep Learning Workshop 2014, arXiv:1503.02531.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import validate

IGNORE_INDEX = -100  # the target of a padded position: not scored (F.cross_entropy's default ignore_index)


def _validate_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise validate.ParameterTypeError(f"{name} must be a tensor of shape (batch, classes), got {type(logits).__name__}.")
    if logits.dim() < 2:
        raise validate.ParameterError(f"{name} has shape {tuple(logits.shape)}; expected logits of shape "
                                      "(batch, classes), or (batch, length, classes) for sequences.")


def _validate_mask(mask: torch.Tensor | None, logits: torch.Tensor) -> None:
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != logits.shape[:-1]:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise validate.ParameterError(f"mask must be a bool tensor of shape {tuple(logits.shape[:-1])} (the logits' "
                                      f"shape without the classes), True where a position counts; got {got}.")


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean of per-position ``values`` over the positions where ``mask`` is True (all of them
    without a mask): :math:`\sum_p m_p v_p / \sum_p m_p`. No position left gives 0, not NaN."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _validate_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    _validate_logits("student_logits", student_logits)
    _validate_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        raise validate.ParameterError(
            f"student_logits has shape {tuple(student_logits.shape)} but teacher_logits has shape "
            f"{tuple(teacher_logits.shape)}; they must match (batch, classes).")


def _validate_targets(targets: torch.Tensor, logits: torch.Tensor) -> None:
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.long or targets.shape != logits.shape[:-1]:
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise validate.ParameterError(f"targets must be int64 class labels of shape {tuple(logits.shape[:-1])}, got "
                                      f"{shape}" + (f" {targets.dtype}" if isinstance(targets, torch.Tensor) else "")
                                      + ".")
    k = logits.shape[-1]
    scored = targets[targets != IGNORE_INDEX] if logits.dim() > 2 else targets  # padding of sequences is not scored
    if len(scored) and (int(scored.min()) < 0 or int(scored.max()) >= k):
        raise validate.ParameterError(f"targets hold labels from {int(scored.min())} to {int(scored.max())}, "
                                      f"outside the {k} classes of the logits; accepted: 0 to {k - 1}"
                                      + (f" ({IGNORE_INDEX} for padding)." if logits.dim() > 2 else "."))


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Temperature-softened probabilities, ``softmax(logits / T)`` over the last dim.

    .. math:: p_i^T = \frac{\exp(z_i / T)}{\sum_j \exp(z_j / T)}

    T = 1 is the ordinary softmax; larger T flattens the distribution and makes
    the small probabilities (the "dark knowledge") visible.
    """
    temperature = validate.positive("temperature", temperature)
    return F.softmax(logits.float() / temperature, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, *,
            mask: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
    r"""Hinton et al.'s soft-target loss: ``T^2 * KL(p_teacher^T || p_student^T)``, averaged over the batch.

    .. math:: L_{KD} = T^2 \cdot \frac{1}{B} \sum_b \sum_i p^T_{t,bi} (\log p^T_{t,bi} - \log p^T_{s,bi})

    On sequences, (B, L, V) logits, b runs over every position of every sequence where
    ``mask`` is True (all of them without a mask), and B is their number: the token-level
    forward KL of language-model distillation (Kim & Rush 2016, "word-level" KD).

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
        _validate_mask(mask, student_logits)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, K) or (B, L, K)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if mask is None:  # batchmean divides by the first dimension: one row per position
        kl = F.kl_div(log_p_student.flatten(0, -2), log_p_teacher.flatten(0, -2), reduction="batchmean",
                      log_target=True)
    else:
        per_position = F.kl_div(log_p_student, log_p_teacher, reduction="none", log_target=True).sum(-1)
        kl = masked_mean(per_position, mask)
    # Rounding can leave a KL of -1e-9 between identical distributions; the true value is >= 0.
    return kl.clamp_min(0.0) * (temperature * temperature)


def reverse_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, *,
                    mask: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
    r"""The reverse KL, ``T^2 * KL(p_student^T || p_teacher^T)``, averaged over the batch (or the
    positions where ``mask`` is True):

    .. math:: L_{RKL} = T^2 \cdot \frac{1}{B} \sum_b \sum_i p^T_{s,bi} (\log p^T_{s,bi} - \log p^T_{t,bi})

    The student's distribution weighs the log-ratio, so the loss is small wherever the
    student puts no mass: it is **mode-seeking**. A student too small to cover every
    continuation the teacher allows concentrates on the likely ones, where the forward KL
    of :func:`kd_loss` (**mode-covering**) spreads it over all of them at the cost of
    mass in between. MiniLLM (Gu et al., "MiniLLM: Knowledge Distillation of Large
    Language Models", ICLR 2024, arXiv:2306.08543) distils language models with it; GKD
    (Agarwal et al., ICLR 2024, arXiv:2306.13649) compares both directions.
    T^2 as in :func:`kd_loss`, so alpha keeps its meaning; it is 0 when the two agree.
    """
    if check:
        temperature = validate.positive("temperature", temperature)
        _validate_pair(student_logits, teacher_logits)
        _validate_mask(mask, student_logits)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (..., K)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_position = (log_p_student.exp() * (log_p_student - log_p_teacher)).sum(-1)  # (...,)
    return masked_mean(per_position, mask).clamp_min(0.0) * (temperature * temperature)


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
    mask = targets != IGNORE_INDEX if student_logits.dim() > 2 else None  # sequences: padding is not scored
    soft = kd_loss(student_logits, teacher_logits, temperature, mask=mask, check=False)
    hard = F.cross_entropy(student_logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX)
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


# --- beyond logits: features, relations, decoupled KD (notebook 11) ------------------------------
#
# Every loss below treats the teacher's side as a fixed target: it is detached, so no gradient
# reaches the teacher. Weights (beta, the RKD weights) are the callers'; the objectives in
# kdlab.objectives apply them.

def _validate_feature_maps(name: str, maps) -> list[torch.Tensor]:
    """``maps`` as a list of (B, C, H, W) tensors (one tensor counts as a list of one)."""
    items = [maps] if isinstance(maps, torch.Tensor) else maps
    if not isinstance(items, (list, tuple)) or not items:
        raise validate.ParameterTypeError(f"{name} must be a (B, C, H, W) tensor or a non-empty list of them, "
                                          f"got {type(maps).__name__}.")
    for i, x in enumerate(items):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise validate.ParameterError(f"{name}[{i}] is {got}; expected a feature map of shape (B, C, H, W).")
    return list(items)


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    r"""Zagoruyko & Komodakis's spatial attention map: where a layer's activations are large.

    .. math:: a(x) = \frac{q}{\|q\|_2}, \qquad q_{hw} = \frac{1}{C} \sum_c |x_{chw}|^p

    ``features`` is (B, C, H, W); the result is (B, H·W), one unit-length row per example.
    The paper writes |x|^p; their reference code writes ``x.pow(2)``, the same for its p = 2 and
    for post-ReLU features. Averaging or summing over channels gives the same map after the
    normalisation; a larger p puts more weight on the most active locations.

    Reference: S. Zagoruyko, N. Komodakis, "Paying More Attention to Attention: Improving the
    Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017, arXiv:1612.03928.
    """
    (features,) = _validate_feature_maps("features", features)
    p = validate.positive("p", p)
    q = features.float().abs().pow(p).mean(dim=1).flatten(1)  # (B, H*W)
    return F.normalize(q, p=2.0, dim=1)


def attention_transfer_loss(student_features, teacher_features, p: float = 2.0) -> torch.Tensor:
    r"""Attention transfer (AT): match the student's attention maps to the teacher's, layer pair by pair.

    .. math:: L_{AT} = \sum_{j} \frac{1}{B \, H_j W_j} \sum_b \| a(s_{j,b}) - a(t_{j,b}) \|_2^2

    with :func:`attention_map` ``a``; ``student_features`` and ``teacher_features`` are lists of
    (B, C, H, W) maps (or one map each). Pair j must agree in batch and spatial size, not in
    channels: the channel mean is what makes a thin student comparable with a wide teacher.
    The caller applies the weight β (the authors' code trains ``CE + β/2 · L_AT`` with β = 1000;
    mdistiller uses ``CE + 1000 · L_AT``).

    Reference: Zagoruyko & Komodakis, ICLR 2017 (see :func:`attention_map`).
    """
    students = _validate_feature_maps("student_features", student_features)
    teachers = _validate_feature_maps("teacher_features", teacher_features)
    p = validate.positive("p", p)
    if len(students) != len(teachers):
        raise validate.ParameterError(f"student_features has {len(students)} maps but teacher_features has "
                                      f"{len(teachers)}; pass one teacher map per student map.")
    total = torch.zeros((), device=students[0].device)
    for j, (s, t) in enumerate(zip(students, teachers)):
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise validate.ParameterError(
                f"pair {j}: student map {tuple(s.shape)} and teacher map {tuple(t.shape)} differ in batch or spatial "
                "size; attention transfer compares (B, H, W) maps, so B, H and W must match (C may differ).")
        total = total + (attention_map(s, p) - attention_map(t.detach(), p)).pow(2).mean()
    return total


def hint_loss(regressed_student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    r"""FitNets hint loss: the mean squared error between the regressed student feature and the teacher's hint.

    .. math:: L_{HT} = \frac{1}{N} \sum_i \big( r(v)_i - u_i \big)^2

    ``u`` is the teacher's feature at its *hint* layer and ``r(v)`` a learned regressor (kdlab: a
    3×3 convolution, BatchNorm and ReLU, as in mdistiller) applied to the student's *guided*
    layer, so a thin student can match a wide teacher. The paper writes ½‖u − r(v)‖² summed over
    the units; the mean used here (as in mdistiller and RepDistiller) differs by a constant factor
    that the caller's weight absorbs. The shapes must agree exactly.

    Reference: A. Romero, N. Ballas, S. E. Kahou, A. Chassang, C. Gatta, Y. Bengio, "FitNets: Hints
    for Thin Deep Nets", ICLR 2015, arXiv:1412.6550.
    """
    for name, x in (("regressed_student_features", regressed_student_features), ("teacher_features", teacher_features)):
        if not isinstance(x, torch.Tensor):
            raise validate.ParameterTypeError(f"{name} must be a tensor, got {type(x).__name__}.")
    if regressed_student_features.shape != teacher_features.shape:
        raise validate.ParameterError(
            f"regressed_student_features has shape {tuple(regressed_student_features.shape)} but teacher_features has "
            f"{tuple(teacher_features.shape)}; the regressor must map the student's feature to the teacher's shape.")
    return F.mse_loss(regressed_student_features.float(), teacher_features.detach().float())


def _pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``e`` (B, D): (B, B), with an exact 0 diagonal.
    Clamped before the square root so that equal rows have a gradient (0) rather than NaN."""
    diff = e[:, None, :] - e[None, :, :]  # (B, B, D)
    d = diff.pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return d * (1.0 - torch.eye(len(e), device=e.device, dtype=d.dtype))


def _angle_cosines(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at vertex j of every triplet (i, j, k): <e_i - e_j, e_k - e_j> / (|.| |.|), (B, B, B)."""
    unit = F.normalize(e[None, :, :] - e[:, None, :], p=2.0, dim=2)  # unit[j, i] = (e_i - e_j) / |e_i - e_j|
    return unit @ unit.transpose(1, 2)  # [j, i, k]


def rkd_loss(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor, distance_weight: float = 25.0,
             angle_weight: float = 50.0) -> torch.Tensor:
    r"""Relational KD (RKD): match how the examples of a batch lie relative to each other, not where.

    .. math::

        L_{RKD} = \lambda_D \, \overline{\ell_\delta}\Big(\frac{\|s_i - s_j\|}{\mu_s}, \frac{\|t_i - t_j\|}{\mu_t}\Big)
                + \lambda_A \, \overline{\ell_\delta}\big(\cos\angle s_i s_j s_k, \cos\angle t_i t_j t_k\big)

    over all pairs (i, j) and triplets (i, j, k) of the batch, with ℓ_δ the smooth-L1 (Huber, δ = 1)
    loss averaged over its entries, and μ the mean of the nonzero pairwise distances, which
    makes the distance term independent of each network's scale. Embeddings are (B, D_s) and
    (B, D_t); the dimensions may differ (larger inputs are flattened per example). The
    teacher's side is not differentiated. λ_D = 25 and λ_A = 50 are the authors' weights.
    The batch needs at least two distinct embeddings.

    Reference: W. Park, D. Kim, Y. Lu, M. Cho, "Relational Knowledge Distillation", CVPR 2019,
    arXiv:1904.05068.
    """
    for name, x in (("student_embeddings", student_embeddings), ("teacher_embeddings", teacher_embeddings)):
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise validate.ParameterError(f"{name} is {got}; expected embeddings of shape (batch, features).")
    if student_embeddings.shape[0] != teacher_embeddings.shape[0] or student_embeddings.shape[0] < 2:
        raise validate.ParameterError(
            f"student_embeddings has {student_embeddings.shape[0]} rows and teacher_embeddings "
            f"{teacher_embeddings.shape[0]}; RKD compares pairs of examples, so both need the same batch of at "
            "least 2.")
    distance_weight = validate.real("distance_weight", distance_weight, low=0.0)
    angle_weight = validate.real("angle_weight", angle_weight, low=0.0)
    s = student_embeddings.float().flatten(1)
    with torch.no_grad():
        t = teacher_embeddings.float().flatten(1)
        t_d = _pairwise_distances(t)
        t_d = t_d / t_d[t_d > 0].mean()
        t_angle = _angle_cosines(t)
    s_d = _pairwise_distances(s)
    s_d = s_d / s_d[s_d > 0].mean()
    distance = F.smooth_l1_loss(s_d, t_d)
    angle = F.smooth_l1_loss(_angle_cosines(s), t_angle)
    return distance_weight * distance + angle_weight * angle


def decoupled_kd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                       temperature: float = 4.0, *, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two parts of classic KD that Zhao et al. decouple, per example and T²-scaled: ``(tckd, nckd)``, each (B,).

    With b = (p_y, 1 − p_y) the binary "target class or not" distribution and p̂ the
    distribution over the K − 1 *other* classes (the softmax of the logits with the target's
    removed), both at temperature T:

    .. math::

        \mathrm{TCKD} = T^2 \, KL(b_t \,\|\, b_s), \qquad \mathrm{NCKD} = T^2 \, KL(\hat p_t \,\|\, \hat p_s),

        T^2 \, KL(p_t \,\|\, p_s) = \mathrm{TCKD} + (1 - p_{t,y}) \, \mathrm{NCKD} \quad \text{(per example)}

    so classic KD weighs the non-target knowledge by ``1 − p_{t,y}``: the more confident the
    teacher, the less of it reaches the student. Computed in log space (no log of a sum of
    probabilities), so it stays finite for very confident teachers. :func:`dkd_loss` weighs the
    two freely.

    ``check=False`` skips the check that every label is one of the K classes, which reads the
    labels back from the device, for callers whose labels were checked once
    (:class:`kdlab.objectives.DecoupledDistillation`: ``fit`` checks the data).

    Reference: B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang, "Decoupled Knowledge Distillation",
    CVPR 2022, arXiv:2203.08679.
    """
    temperature = validate.positive("temperature", temperature)
    _validate_pair(student_logits, teacher_logits)
    if student_logits.dim() != 2:
        raise validate.ParameterError(f"student_logits has shape {tuple(student_logits.shape)}; decoupled KD takes "
                                      "(batch, classes) logits (flatten sequence positions into the batch first).")
    if check:  # int(min), int(max): two device syncs, too many for every training step
        _validate_targets(targets, student_logits)
    b, k = student_logits.shape
    if k < 2:
        raise validate.ParameterError(f"the logits have {k} class; decoupled KD needs at least 2.")
    target_mask = F.one_hot(targets, k).bool()  # (B, K)

    def parts(logits):
        z = logits.float() / temperature
        log_p = F.log_softmax(z, dim=1)  # (B, K)
        log_b = torch.stack([log_p[target_mask], torch.logsumexp(log_p.masked_fill(target_mask, float("-inf")), 1)],
                            dim=1)  # (B, 2): log p_y, log(1 - p_y)
        log_hat = F.log_softmax(z[~target_mask].view(b, k - 1), dim=1)  # (B, K-1): the other classes
        return log_b, log_hat

    s_b, s_hat = parts(student_logits)
    with torch.no_grad():
        t_b, t_hat = parts(teacher_logits)
    tckd = (t_b.exp() * (t_b - s_b)).sum(1)  # KL(b_t || b_s), (B,)
    nckd = (t_hat.exp() * (t_hat - s_hat)).sum(1)  # KL(p^_t || p^_s), (B,)
    return tckd * temperature**2, nckd * temperature**2


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, alpha: float = 1.0,
             beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    r"""Decoupled KD (DKD): target-class and non-target-class KD with weights of their own, batch-averaged.

    .. math:: L_{DKD} = \alpha \cdot \overline{\mathrm{TCKD}} + \beta \cdot \overline{\mathrm{NCKD}}

    with the T²-scaled terms of :func:`decoupled_kd_terms`. Classic KD is TCKD + (1 − p_{t,y}) NCKD;
    DKD replaces the teacher-dependent weight of NCKD by a constant β, so the non-target
    "dark knowledge" is not suppressed on the examples the teacher is sure about. As in the
    authors' code, the non-target distributions leave out the target logit (they subtract 1000
    from it; kdlab removes it), and the defaults are theirs for CIFAR-100 (α = 1, β = 8, T = 4);
    they add CE on the labels, and ramp the DKD term up over the first 20 epochs. Note the
    names: DKD's α and β are not kdlab's ``alpha`` (the soft term's share in
    :func:`distillation_loss`).

    Reference: Zhao et al., CVPR 2022 (see :func:`decoupled_kd_terms`).
    """
    alpha = validate.real("alpha", alpha, low=0.0)
    beta = validate.real("beta", beta, low=0.0)
    tckd, nckd = decoupled_kd_terms(student_logits, teacher_logits, targets, temperature)
    return alpha * tckd.mean() + beta * nckd.mean()
