"""Model compression beside distillation: magnitude pruning, int8 quantization, measured size, Pareto fronts.

Three ways to make a trained network cheaper, compared in notebook 09:

* **Magnitude pruning** (Han et al. 2015): set the weights of smallest absolute value to zero.
  :func:`prune_global` ranks the weights of *all* Linear/Conv layers together
  (``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``), so layers with many
  small weights lose more of them. The result keeps PyTorch's pruning reparametrisation
  ``weight = weight_orig * weight_mask``: training it further (``kdlab.train.fit``) updates
  ``weight_orig`` but the pruned entries stay zero. :func:`make_permanent` folds the mask in.
* **Dynamic int8 quantization** (PyTorch's ``quantize_dynamic``): :func:`quantize_int8` stores
  every ``nn.Linear`` weight as int8 with one float scale per tensor and quantizes activations
  on the fly, from each batch's own range, so it needs no calibration data. It runs on the CPU
  only. (Jacob et al. 2018 is the reference for the *static*, integer-only scheme, where the
  activations' scales are fixed in advance; the kit does not implement it.) ``torch.ao.quantization.quantize_dynamic`` warns that it is
  deprecated in favour of ``torchao``; kdlab keeps it because torchao's eager CPU int8 paths
  measured 2-50x slower than it, at the same accuracy (docs/BENCHMARKS.md, section 5).
* **Distillation** into a smaller dense network (Hinton et al. 2015): see ``kdlab.train.fit``.

Costs are *measured*: :func:`saved_size` writes the ``state_dict`` to a file and stats it, and
``kdlab.metrics.latency`` times a forward pass. Unstructured zeros do not make a dense matrix
multiply faster, and they only make the file smaller once it is compressed or sparse-encoded.

Every function here returns a new model and leaves the caller's untouched unless it says so.

References: S. Han, J. Pool, J. Tran, W. Dally, *Learning both Weights and Connections for Efficient
Neural Networks*, NeurIPS 2015; B. Jacob et al., *Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference*, CVPR 2018.
"""

from __future__ import annotations

import copy
import gzip
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from . import validate
from .errors import ParameterError, ParameterTypeError
from .files import atomic_write

#: Layer types whose ``weight`` :func:`prune_global` and :func:`sparsity` consider.
PRUNABLE = (nn.Linear, nn.Conv2d)
#: Accepted values of ``saved_size(..., compressed=...)``.
COMPRESSIONS = (None, "gzip", "sparse")


def _validate_model(model, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ParameterTypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}.")
    return model


def is_pruned(model: nn.Module) -> bool:
    """True if some layer of ``model`` still carries a pruning mask (``weight_orig * weight_mask``)."""
    return any(isinstance(hook, prune.BasePruningMethod)
               for m in _validate_model(model).modules() for hook in m._forward_pre_hooks.values())


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that also works for pruned models.

    ``copy.deepcopy`` refuses a pruned module, whose ``weight`` is a computed (non-leaf) tensor;
    here that tensor is swapped for a detached copy while copying (the pruning hook recomputes it
    before every forward pass anyway) and put back afterwards, so ``model`` is left as it was.
    """
    _validate_model(model)
    swapped = []
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                name = hook._tensor_name
                current = getattr(m, name)
                swapped.append((m, name, current))
                setattr(m, name, current.detach())
    try:
        return copy.deepcopy(model)
    finally:
        for m, name, current in swapped:
            setattr(m, name, current)


def _prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def prune_global(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy of ``model`` with the fraction ``sparsity`` of its Linear/Conv weights set to zero.

    The weights of all ``nn.Linear`` and ``nn.Conv2d`` layers are ranked together by absolute
    value and the smallest ``round(sparsity * n)`` become zero (global L1 magnitude pruning,
    Han et al. 2015); biases are kept. The copy keeps the pruning masks, so fine-tuning it with
    ``kdlab.train.fit`` leaves the pruned weights at zero; call :func:`make_permanent` before
    saving or quantizing. ``model`` itself is not changed.

    Args:
        model: a trained model with at least one Linear or Conv2d layer.
        sparsity: fraction of those weights to remove, in [0, 1).
    """
    _validate_model(model)
    sparsity = validate.real("sparsity", sparsity, low=0.0, high=1.0, high_open=True)
    pruned = make_permanent(model)  # a copy; a model pruned before starts from its current zeros
    params = _prunable_weights(pruned)
    if not params:
        raise ParameterError(f"model ({type(model).__name__}) has no nn.Linear or nn.Conv2d layer to prune.")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    return pruned


def make_permanent(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold pruning masks into the weights (``torch.nn.utils.prune.remove``): zeros stay, the
    ``weight_orig``/``weight_mask`` pair becomes one plain ``weight`` again.

    Returns a copy unless ``inplace=True`` (then ``model`` itself is changed and returned).
    A model without masks comes back unchanged (as a copy).
    """
    _validate_model(model)
    if not isinstance(inplace, bool):
        raise ParameterTypeError(f"inplace must be True or False, got {inplace!r}.")
    out = model if inplace else clone(model)
    for m in out.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(m, hook._tensor_name)
    return out


def _effective_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights a forward pass uses: masked for pruned layers, dequantized for int8 layers."""
    out = []
    for m in model.modules():
        if isinstance(m, PRUNABLE):
            out.append(m.weight.detach())
        elif isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            out.append(m.weight().dequantize())
    return out


def sparsity(model: nn.Module) -> float:
    """Global fraction of zero entries among the Linear/Conv2d weights of ``model`` (biases and
    other parameters excluded, which is what :func:`prune_global` counts). Works on pruned
    models (the masked weight is counted) and on int8 models from :func:`quantize_int8`."""
    weights = _effective_weights(_validate_model(model))
    if not weights:
        raise ParameterError(f"model ({type(model).__name__}) has no Linear or Conv2d weights.")
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


def layer_sparsities(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights in each Linear/Conv2d layer (and int8 Linear layer), by module name.

    After global pruning the layers end up with different sparsities; a layer at (or near) 1.0
    has been cut off entirely, which no amount of fine-tuning can repair ("layer collapse")."""
    _validate_model(model)
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, PRUNABLE):
            w = m.weight.detach()
        elif isinstance(m, torch.ao.nn.quantized.dynamic.Linear):
            w = m.weight().dequantize()
        else:
            continue
        out[name] = float((w == 0).float().mean())
    if not out:
        raise ParameterError(f"model ({type(model).__name__}) has no Linear or Conv2d weights.")
    return out


def quantize_int8(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with every ``nn.Linear`` dynamically quantized to int8.

    Weights are stored as int8 with a per-tensor scale; activations are quantized per batch at
    run time (``torch.ao.quantization.quantize_dynamic``). Other layers (convolutions, batch norm)
    stay float32, so a CNN shrinks much less than an MLP. Pruning masks are made permanent
    first, so pruned zeros stay zero. The result runs on the CPU only and cannot be trained.

    torch 2.14 marks ``torch.ao.quantization`` as deprecated (it points to the ``torchao``
    package, not installed here) but it works. A notebook shows a ``UserWarning`` that the
    quantized tensor creation functions (``torch.quantize_per_tensor``) are deprecated; the
    ``DeprecationWarning`` of ``torch.ao.quantization`` itself is hidden by Python's default filters.
    """
    _validate_model(model)
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ParameterError(f"model ({type(model).__name__}) has no nn.Linear layer; dynamic int8 quantization "
                             "only converts Linear layers.")
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("x86", "fbgemm", "qnnpack", "onednn")):
        raise RuntimeError(f"this torch build has no int8 CPU engine (supported_engines={engines}).")
    float_model = make_permanent(model).to("cpu").eval()
    return torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)


def _sparse_encode(state: Mapping[str, object]) -> dict:
    """Each float tensor as a bitmask of its non-zeros plus their values, when that is smaller."""
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.is_quantized:
            dense = value.detach().cpu()
            flat = dense.reshape(-1)
            nonzero = flat != 0
            encoded_bytes = math.ceil(flat.numel() / 8) + int(nonzero.sum()) * flat.element_size()
            if encoded_bytes < flat.numel() * flat.element_size():
                bits = torch.from_numpy(np.packbits(nonzero.numpy()))
                out[key] = {"shape": list(dense.shape), "bitmask": bits, "values": flat[nonzero].clone()}
                continue
        out[key] = value.detach().cpu() if isinstance(value, torch.Tensor) else value
    return out


def sparse_decode(encoded: Mapping[str, object]) -> dict:
    """Invert the ``"sparse"`` encoding of :func:`saved_size` back to a plain ``state_dict``."""
    out = {}
    for key, value in encoded.items():
        if isinstance(value, dict) and {"shape", "bitmask", "values"} <= set(value):
            n = math.prod(value["shape"])
            mask = torch.from_numpy(np.unpackbits(value["bitmask"].numpy())[:n].astype(bool))
            flat = torch.zeros(n, dtype=value["values"].dtype)
            flat[mask] = value["values"]
            out[key] = flat.reshape(value["shape"])
        else:
            out[key] = value
    return out


def saved_state(model: nn.Module, compressed: str | None = None) -> dict:
    """What :func:`saved_size` writes: the ``state_dict`` (pruning masks folded in), sparse-encoded
    if ``compressed="sparse"``."""
    _validate_model(model)
    validate.choice("compressed", compressed, COMPRESSIONS)
    state = make_permanent(model).state_dict() if is_pruned(model) else model.state_dict()
    state = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    return _sparse_encode(state) if compressed == "sparse" else state


def saved_size(model: nn.Module, compressed: str | None = None, *, path: str | os.PathLike | None = None) -> int:
    """Bytes on disk of ``model``'s weights, measured by writing them with ``torch.save`` and
    reading the file size back (``os.stat``).

    A pruned model is measured as it would be shipped: masks folded in (:func:`make_permanent`
    on a copy), so the file holds one ``weight`` per layer, not ``weight_orig`` *and*
    ``weight_mask``.

    Args:
        model: any model, including pruned and int8 models.
        compressed: ``None`` for the plain ``torch.save`` file; ``"gzip"`` for that file
            gzip-compressed (level 6, gzip's default): runs of zeros compress, dense float weights hardly do;
            ``"sparse"`` for every float tensor stored as a bitmask of its non-zero entries
            (1 bit per weight) plus the non-zero values, whenever that is smaller than dense
            (it is once more than 1/32 of a float32 tensor is zero); int8 tensors stay as they are.
        path: keep the file here (a new file path: an existing file is never replaced, as with
            :func:`kdlab.checkpoint.save`); by default it goes to a temporary folder and is deleted
            after measuring.
    """
    if path is not None and os.path.exists(path):
        raise FileExistsError(f"path {os.fspath(path)!r} already exists; saved_size writes a new file there, so "
                              "choose another path (it never replaces an existing file).")
    state = saved_state(model, compressed)

    def write(fh):
        if compressed == "gzip":
            raw = io.BytesIO()
            torch.save(state, raw)
            fh.write(gzip.compress(raw.getvalue(), compresslevel=6, mtime=0))
        else:
            torch.save(state, fh)

    with tempfile.TemporaryDirectory() as tmp:
        target = atomic_write(path if path is not None else os.path.join(tmp, "weights.pt"), write, "wb")
        return os.stat(target).st_size


def _point_xy(point, index: int, cost: str, value: str) -> tuple[float, float]:
    if isinstance(point, Mapping):
        if cost not in point or value not in point:
            raise ParameterError(f"points[{index}] has keys {sorted(point)}; it needs {cost!r} and {value!r} "
                                 f"(pass cost=..., value=... to name others).")
        x, y = point[cost], point[value]
    elif isinstance(point, Sequence) and not isinstance(point, (str, bytes)) and len(point) == 2:
        x, y = point
    else:
        raise ParameterTypeError(f"points[{index}]={point!r} must be a (cost, value) pair or a mapping with "
                                 f"keys {cost!r} and {value!r}.")
    for what, v in (("cost", x), ("value", y)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(float(v)):
            raise ParameterError(f"points[{index}] has {what} {v!r}; it must be a finite number.")
    return float(x), float(y)


def pareto_front(points: Sequence, *, cost: str = "size", value: str = "accuracy", cost_tolerance: float = 0.0,
                 value_tolerance: float = 0.0, cost_rel_tolerance: float = 0.0) -> list:
    """The points that no other point beats on both axes, sorted by increasing cost.

    A point is *dominated* when another has a cost at most as large and a value at least as
    large, and is strictly better in one of the two (lower cost is better, higher value is
    better: e.g. size in bytes against test accuracy). Identical points do not dominate each
    other, so both stay. "Strictly better" means by more than float noise
    (:data:`kdlab.experiments.FLOAT_NOISE`, relative) plus the tolerance: the front never
    splits on 0.97033336 against 0.97033334.

    Args:
        points: ``(cost, value)`` pairs, or mappings with the keys ``cost`` and ``value``
            (e.g. result rows ``{"label": ..., "size": ..., "accuracy": ...}``).
        cost, value: the keys to read from mapping points.
        cost_tolerance, value_tolerance: differences up to these (in the axes' units) do not
            count, e.g. the seed spread of an accuracy.
        cost_rel_tolerance: cost differences up to this fraction of the larger cost do not count
            either, e.g. :data:`kdlab.experiments.TIMING_NOISE` for latencies.

    Returns:
        the non-dominated points themselves (the same objects), cheapest first.
    """
    from .experiments import FLOAT_NOISE

    if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Sequence):
        raise ParameterTypeError(f"points must be a list of (cost, value) pairs or of mappings, "
                                 f"got {type(points).__name__}.")
    ct, cr, vt = (validate.real(name, tol, low=0.0) for name, tol in (
        ("cost_tolerance", cost_tolerance), ("cost_rel_tolerance", cost_rel_tolerance),
        ("value_tolerance", value_tolerance)))
    xy = [_point_xy(p, i, cost, value) for i, p in enumerate(points)]

    def apart(u: float, v: float, tol: float, rel: float = 0.0) -> float:  # how far u lies beyond v, noise removed
        return u - v - tol - max(FLOAT_NOISE, rel) * max(abs(u), abs(v))

    front = []
    for i, (xi, yi) in enumerate(xy):
        dominated = any(apart(xj, xi, ct, cr) <= 0 and apart(yi, yj, vt) <= 0
                        and (apart(xi, xj, ct, cr) > 0 or apart(yj, yi, vt) > 0)
                        for xj, yj in xy)
        if not dominated:
            front.append(i)
    front.sort(key=lambda i: (xy[i][0], -xy[i][1]))
    return [points[i] for i in front]
