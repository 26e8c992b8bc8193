"""Start a student from the teacher's weights: a narrower copy built from the teacher's most important units.

A student need not start from random weights. DistilBERT (Sanh et al. 2019) starts
its 6-layer student from every other layer of the 12-layer BERT teacher; pruning
methods (Li et al. 2017, "Pruning Filters for Efficient ConvNets"; Liu et al. 2017,
"Network Slimming") keep a network's most important filters and drop the rest.
This module does the latter for the kit's CNN teacher (and MLPs):

    scores = importance(teacher, method="bn")           # {layer name: (units,) scores}
    student = narrow_copy(teacher, keep=0.5)            # half the channels and hidden units
    recalibrate_bn(student, ds.train)                   # optional: BN statistics for the narrower net

The student is built with :func:`kdlab.models.create`, so it is an ordinary kit model
(``kdlab_spec``, checkpoints, ``fit``). Every conv layer keeps the ``round(keep * c)``
output channels with the highest scores (in their original order); the next layer
keeps the matching input channels, BatchNorm keeps the matching affine parameters
and running statistics, and the first dense layer keeps the flattened features of
the kept channels. At ``keep=1.0`` the copy computes exactly the teacher's logits.

Importance scores (per output unit of a layer):
    ``"l1"``: L1 norm of the unit's incoming weights (its filter), Li et al. 2017.
    ``"bn"``: |gamma| of the BatchNorm after the conv (Liu et al. 2017); for layers
    without BatchNorm (the dense hidden layer, MLP layers) the L1 norm is used.
    ``"random"``: random scores (a control: is the ranking worth anything?).

References:
    V. Sanh, L. Debut, J. Chaumond, T. Wolf. DistilBERT, a distilled version of BERT. 2019. arXiv:1910.01108.
    H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf. Pruning Filters for Efficient ConvNets. ICLR 2017.
    Z. Liu, J. Li, Z. Shen, G. Huang, S. Yan, C. Zhang. Learning Efficient Convolutional Networks through
    Network Slimming. ICCV 2017.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from . import models, validate
from .data import Split
from .errors import ParameterError, ParameterTypeError

METHODS = ("l1", "bn", "random")


def _validate_teacher(teacher) -> str:
    """The teacher's kit model name (``"cnn"`` or ``"mlp"``), or a clear error."""
    if not isinstance(teacher, nn.Module):
        raise ParameterTypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}.")
    spec = getattr(teacher, "kdlab_spec", None)
    if isinstance(teacher, models.CNN) and spec is not None and spec.get("name") == "cnn":
        return "cnn"
    if isinstance(teacher, models.MLP) and spec is not None and spec.get("name") == "mlp":
        return "mlp"
    raise ParameterTypeError(f"teacher must be a kit CNN or MLP built with kdlab.models.create('cnn'|'mlp', ...) "
                             f"(or loaded with kdlab.checkpoint.load); got {type(teacher).__name__}"
                             f"{'' if spec is None else ' with spec ' + repr(spec.get('name'))}.")


def _layers(teacher: nn.Module, kind: str) -> list[tuple[str, nn.Module, nn.BatchNorm2d | None]]:
    """The prunable layers in order, ``(name, layer, batchnorm or None)``; the output layer is excluded."""
    if kind == "mlp":
        return [(f"hidden{i}", layer, None) for i, layer in enumerate(teacher.hidden_layers)]
    convs = [m for m in teacher.features if isinstance(m, nn.Conv2d)]
    bns = [m for m in teacher.features if isinstance(m, nn.BatchNorm2d)]
    out = [(f"conv{i}", conv, bn) for i, (conv, bn) in enumerate(zip(convs, bns))]
    return out + [("fc", teacher.head[1], None)]


def l1_scores(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output unit's incoming weights: ``(out, in[, kh, kw]) -> (out,)``."""
    return weight.detach().abs().flatten(1).sum(1)


def importance(teacher: nn.Module, method: str = "bn", *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Importance score of every output unit of every hidden layer of ``teacher``.

    Args:
        teacher: a kit CNN or MLP (from :func:`kdlab.models.create` or a checkpoint).
        method: ``"l1"`` (L1 norm of each filter / weight row), ``"bn"`` (|BatchNorm gamma|
            where a BatchNorm follows, else L1) or ``"random"`` (uniform scores from ``seed``).
        seed: only used by ``"random"``.

    Returns:
        ``{layer name: scores (units,)}`` on the CPU, in layer order: ``conv0 .. conv3, fc``
        for the CNN, ``hidden0 ..`` for an MLP. Higher means more important.
    """
    kind = _validate_teacher(teacher)
    validate.choice("method", method, METHODS)
    gen = torch.Generator().manual_seed(validate.integer("seed", seed, low=0))
    scores = {}
    for name, layer, bn in _layers(teacher, kind):
        if method == "random":
            scores[name] = torch.rand(layer.weight.shape[0], generator=gen)
        elif method == "bn" and bn is not None:
            scores[name] = bn.weight.detach().abs().float().cpu()
        else:
            scores[name] = l1_scores(layer.weight).float().cpu()
    return scores


def top_units(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` highest ``scores``, sorted ascending (the units keep their original order)."""
    n = validate.integer("n", n, low=1)
    if n > len(scores):
        raise ParameterError(f"n={n} is more than the {len(scores)} units there are.")
    return torch.topk(scores, n).indices.sort().values


def slice_weight(weight: torch.Tensor, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> torch.Tensor:
    """Keep the rows ``out_idx`` (output units) and columns ``in_idx`` (input units) of a conv
    ``(out, in, kh, kw)`` or linear ``(out, in)`` weight; ``None`` keeps all of that dimension."""
    w = weight.detach()
    if out_idx is not None:
        w = w.index_select(0, out_idx.to(w.device))
    if in_idx is not None:
        w = w.index_select(1, in_idx.to(w.device))
    return w.clone()


def _n_kept(keep: float, units: int) -> int:
    return max(1, int(round(keep * units)))


def _validate_keep(keep) -> float:
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise ParameterTypeError(f"keep must be a number in (0, 1], the fraction of units to keep; got {keep!r}.")
    return validate.real("keep", keep, low=0.0, high=1.0, low_open=True)


@torch.no_grad()
def narrow_copy(teacher: nn.Module, keep: float = 0.5, *, method: str = "bn", seed: int = 0) -> nn.Module:
    """A narrower copy of ``teacher`` that keeps its most important units, with their weights.

    Every hidden layer keeps ``max(1, round(keep * width))`` units, ranked by
    :func:`importance`; ``keep=1.0`` reproduces the teacher exactly (same logits).

    Args:
        teacher: a kit CNN or MLP. It is not modified.
        keep: fraction of units kept in every hidden layer, in (0, 1].
        method: the importance ranking: ``"bn"``, ``"l1"`` or ``"random"`` (see :func:`importance`).
        seed: the seed of ``"random"`` scores.

    Returns:
        A new model built with :func:`kdlab.models.create` (same class, dropout and classes as
        the teacher), on the teacher's device, in eval mode. BatchNorm running statistics are
        copied from the teacher; see :func:`recalibrate_bn` to re-estimate them.
    """
    kind = _validate_teacher(teacher)
    keep = _validate_keep(keep)
    scores = importance(teacher, method, seed=seed)
    spec = teacher.kdlab_spec
    kept = {name: top_units(s, _n_kept(keep, len(s))) for name, s in scores.items()}
    device = next(teacher.parameters()).device
    kwargs = dict(spec["kwargs"])
    if kind == "cnn":
        convs = [n for n in kept if n.startswith("conv")]
        # Both convs of a stage share the stage's width: each conv keeps its own best channels.
        widths = [len(kept[n]) for n in convs]
        if widths[0::2] != widths[1::2]:  # pragma: no cover - same width and same keep give the same count
            raise ParameterError("the two convs of a stage must keep the same number of channels.")
        kwargs.update(channels=tuple(widths[0::2]), fc=len(kept["fc"]))
    else:
        kwargs.update(hidden=tuple(len(kept[n]) for n in kept))
    student = models.create(kind, num_classes=spec["num_classes"], input_shape=spec["input_shape"], **kwargs)
    student.to(device)

    teacher_layers = _layers(teacher, kind)
    student_layers = _layers(student, kind)
    in_idx = None  # the first layer keeps every input channel (the image's)
    for (name, t_layer, t_bn), (_, s_layer, s_bn) in zip(teacher_layers, student_layers):
        out_idx = kept[name]
        if name == "fc":
            # Flatten orders the features channel-major: channel c owns features c*hw .. c*hw + hw - 1.
            c_last = teacher_layers[-2][1].out_channels
            hw = t_layer.in_features // c_last
            in_idx = (in_idx[:, None] * hw + torch.arange(hw)).flatten()
        s_layer.weight.copy_(slice_weight(t_layer.weight, out_idx, in_idx))
        if t_layer.bias is not None:
            s_layer.bias.copy_(t_layer.bias.detach()[out_idx.to(device)])
        if t_bn is not None:
            idx = out_idx.to(device)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(s_bn, attr).copy_(getattr(t_bn, attr).detach()[idx])
            s_bn.num_batches_tracked.copy_(t_bn.num_batches_tracked)
        in_idx = out_idx
    t_out = teacher.head[-1] if kind == "cnn" else teacher.output_layer
    s_out = student.head[-1] if kind == "cnn" else student.output_layer
    s_out.weight.copy_(slice_weight(t_out.weight, None, in_idx))
    s_out.bias.copy_(t_out.bias.detach())
    return student.eval()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, split: Split, *, batch_size: int = 256, max_batches: int | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance on ``split`` (no labels, no
    gradient, no weight changes): the copied statistics describe the teacher's wider layers,
    not the narrower student's. Returns ``model`` in eval mode."""
    if not isinstance(split, Split):
        raise ParameterTypeError(f"split must be a kdlab Split (e.g. ds.train), got {type(split).__name__}.")
    batch_size = validate.integer("batch_size", batch_size, low=2)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(split) < 2:
        return model.eval()
    device = next(model.parameters()).device
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all the batches seen
    model.train()
    try:
        for i, batch in enumerate(split.to(device).batches(batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            if len(batch.x) > 1:  # BatchNorm in training mode needs two or more images
                model(batch.x)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
    return model.eval()


def kept_fraction(student: nn.Module, teacher: nn.Module) -> float:
    """Parameters of ``student`` as a fraction of ``teacher``'s (BatchNorm affine parameters included)."""
    return models.count_params(student) / models.count_params(teacher)
