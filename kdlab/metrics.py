"""Evaluation: accuracy, macro-F1, NLL, calibration, fidelity, and confidence intervals.

References:
    C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (ECE,
    reliability diagrams; 15 equal-width confidence bins).
    S. Stanton et al., "Does Knowledge Distillation Really Work?", NeurIPS 2021
    (fidelity: top-1 agreement with the teacher and KL to the teacher).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import devices
from .data import Split
from .errors import ParameterError
from .errors import IncompatibleModelError
from .inference import predict_logits
from .losses import IGNORE_INDEX


def _model_device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return devices.resolve(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def f1_macro(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2·precision·recall / (precision + recall)."""
    cm = confusion_matrix(pred, target, num_classes).double()
    tp = cm.diag()
    precision = tp / cm.sum(0).clamp_min(1)
    recall = tp / cm.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return float(f1.mean())


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[i, j]`` = number of examples of true class i predicted as j (int64, on CPU)."""
    idx = target.cpu().long() * num_classes + pred.cpu().long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def most_confused_pairs(cm: torch.Tensor | np.ndarray, k: int = 5, class_names: Sequence[str] | None = None
                        ) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal counts as ``(true, predicted, count)``, largest first."""
    cm = torch.as_tensor(cm).clone()
    cm.fill_diagonal_(0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    values, flat = cm.flatten().sort(descending=True)
    out = []
    for v, f in zip(values.tolist(), flat.tolist()):
        if v <= 0 or len(out) == k:
            break
        out.append((names[f // cm.shape[0]], names[f % cm.shape[0]], int(v)))
    return out


def reliability(probs: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> dict:
    """Per-bin confidence, accuracy and count for a reliability diagram, and the ECE:

    .. math:: ECE = \\sum_b \\frac{|B_b|}{N} \\, |acc(B_b) - conf(B_b)|
    """
    conf, pred = probs.max(dim=1)
    correct = (pred == target).float()
    edges = torch.linspace(0, 1, n_bins + 1, device=probs.device)
    bin_idx = torch.bucketize(conf, edges[1:-1], right=True)  # 0..n_bins-1; conf in (e_b, e_b+1]
    count = torch.bincount(bin_idx, minlength=n_bins).float()
    conf_sum = torch.bincount(bin_idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(bin_idx, weights=correct, minlength=n_bins)
    safe = count.clamp_min(1)
    ece = float(((acc_sum - conf_sum).abs() / max(1, len(target))).sum())
    return {"edges": edges.cpu().numpy(), "confidence": (conf_sum / safe).cpu().numpy(),
            "accuracy": (acc_sum / safe).cpu().numpy(), "count": count.cpu().numpy(), "ece": ece}


def evaluate(model: nn.Module, split: Split, *, teacher: nn.Module | None = None, device=None,
             batch_size: int | None = None, n_bins: int = 15, logits: torch.Tensor | None = None,
             teacher_logits: torch.Tensor | None = None) -> dict:
    """Metrics of ``model`` on ``split`` (e.g. ``ds.test``).

    Returns a dict with ``accuracy``, ``error_count``, ``f1_macro``, ``nll`` (mean
    negative log-likelihood, nats), ``ece`` (15 bins) and ``n``; with ``teacher`` (or
    ``teacher_logits``), also ``agreement`` (top-1 agreement) and ``kl_to_teacher``
    (mean KL(p_t || p_s) at T = 1, nats). Pass precomputed ``logits`` to skip the
    model's forward pass, and ``teacher_logits`` (``predict_logits(teacher, split)``)
    to skip the teacher's, e.g. when many students are scored against one teacher.
    ``batch_size=None`` picks :func:`kdlab.inference.eval_batch_size`.

    On a text split (:mod:`kdlab.text`) the logits are ``(N, L, V)`` and every position that
    is not padding counts as one example: ``accuracy`` is next-character accuracy, ``nll``
    is in nats per character (divide by ln 2 for bits per character) and ``n`` counts characters.
    """
    device = _model_device(model, device)
    if logits is None:
        logits = predict_logits(model.to(device), split, batch_size=batch_size, device=device)
    for name, given in (("logits", logits), ("teacher_logits", teacher_logits)):
        if given is not None and (given.dim() != split.y.dim() + 1 or given.shape[0] != len(split)):
            # A text split's targets are (examples, length), so its logits carry a vocabulary axis too.
            shape = "(examples, length, vocabulary)" if split.y.dim() == 2 else "(examples, classes)"
            raise ParameterError(f"{name} has shape {tuple(given.shape)}; it must be {shape} with one "
                                 f"row per example of the split ({len(split)} rows).")
    y = split.y.to(logits.device)
    if logits.dim() == 3:  # text: keep the positions that are not padding, one row each
        if teacher_logits is None and teacher is not None:
            teacher_logits = predict_logits(teacher.to(device), split, batch_size=batch_size, device=device)
        scored = y != IGNORE_INDEX
        logits, y = logits[scored], y[scored]
        teacher_logits = teacher_logits.to(scored.device)[scored] if teacher_logits is not None else None
    num_classes = logits.shape[1]
    if len(y) and int(y.max()) >= num_classes:
        raise IncompatibleModelError(f"the model outputs {num_classes} logits but split {split.name!r} has label "
                                     f"{int(y.max())}; build it with num_classes=ds.num_classes.")
    if teacher_logits is not None and teacher_logits.shape[1] != num_classes:
        raise IncompatibleModelError(f"teacher_logits have {teacher_logits.shape[1]} classes but the model outputs "
                                     f"{num_classes}; both must be built for the same classes.")
    probs = logits.softmax(dim=1)
    pred = logits.argmax(dim=1)
    out = {"accuracy": float((pred == y).float().mean()), "error_count": int((pred != y).sum()),
           "f1_macro": f1_macro(pred, y, num_classes), "nll": float(F.cross_entropy(logits, y)),
           "ece": reliability(probs, y, n_bins)["ece"], "n": int(len(y))}
    if teacher_logits is not None:
        t_logits = teacher_logits.to(logits.device, torch.float32)
    elif teacher is not None:
        t_logits = predict_logits(teacher.to(device), split, batch_size=batch_size, device=device)
        if t_logits.shape[1] != num_classes:
            raise IncompatibleModelError(f"the teacher outputs {t_logits.shape[1]} logits but the model outputs "
                                         f"{num_classes}; both must be built for the same classes.")
    if teacher is not None or teacher_logits is not None:
        out["agreement"] = float((t_logits.argmax(1) == pred).float().mean())
        out["kl_to_teacher"] = float(F.kl_div(logits.log_softmax(1), t_logits.log_softmax(1),
                                              reduction="batchmean", log_target=True))
    return out


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval.

    With n seeds the interval is mean ± t_{(1+c)/2, n-1} · s / sqrt(n). One value
    gives a half-width of ``nan`` (no spread can be estimated from one run).
    """
    from scipy import stats

    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("values is empty; mean_ci needs at least one value.")
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan")
    sem = float(arr.std(ddof=1) / math.sqrt(arr.size))
    return mean, float(stats.t.ppf((1 + confidence) / 2, arr.size - 1) * sem)


def paired_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean of the per-seed differences ``a[i] - b[i]`` and the half-width of its CI.

    Use it when run ``i`` of both methods shares seed ``i`` (same initial weights and
    batches): the seed-to-seed spread that both share cancels in the difference, so this
    interval is usually much narrower than comparing two separate intervals.
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"paired_ci needs one value per seed on both sides; got {len(a)} and {len(b)} values.")
    return mean_ci([x - y for x, y in zip(a, b)], confidence)


def format_ci(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"97.31 ± 0.24"`` for a list of per-seed values (times ``scale``)."""
    mean, half = mean_ci([v * scale for v in values])
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if not math.isnan(half) else f"{mean:.{digits}f}"


def latency(model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 256, repeats: int = 20,
            warmup: int = 3, device="cpu") -> float:
    """Median seconds for one inference batch of ``batch_size`` (eval mode, no grad)."""
    device = devices.resolve(device)
    model = model.to(device).eval()
    x = torch.randn(batch_size, *input_shape, device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return float(np.median(times))
