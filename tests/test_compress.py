"""Tests for kdlab.compress (pruning, int8 quantization, measured size, Pareto fronts) and the
notebook 09 exercise checks."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import torch
from torch import nn

import kdlab
from kdlab import compress
from kdlab.errors import ParameterError, ParameterTypeError


def _mlp(hidden=(64, 32), seed=0):
    return kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=hidden, seed=seed)


def _weights(model):
    return [m.weight.detach() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


# --- pruning -----------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_prune_global_hits_the_requested_sparsity_exactly(amount):
    model = _mlp()
    n = sum(w.numel() for w in _weights(model))
    pruned = compress.prune_global(model, amount)
    zeros = sum(int((w == 0).sum()) for w in _weights(pruned))
    assert zeros == round(amount * n)
    assert compress.sparsity(pruned) == pytest.approx(round(amount * n) / n, abs=0)
    assert compress.is_pruned(pruned)


def test_prune_global_removes_the_smallest_weights_globally_and_keeps_biases():
    model = _mlp()
    pruned = compress.prune_global(model, 0.7)
    kept = torch.cat([w[w != 0].abs() for w in _weights(pruned)])
    removed = torch.cat([o[p == 0].abs() for o, p in zip(_weights(model), _weights(pruned))])
    assert removed.max() <= kept.min()
    # global, not per layer: the layers end up with different sparsities
    per_layer = [float((w == 0).float().mean()) for w in _weights(pruned)]
    assert max(per_layer) - min(per_layer) > 0.01
    assert list(compress.layer_sparsities(pruned).values()) == per_layer
    assert list(compress.layer_sparsities(pruned)) == ["net.1", "net.3", "net.5"]
    for a, b in zip(model.modules(), pruned.modules()):
        if isinstance(a, nn.Linear):
            assert torch.equal(a.bias, b.bias)


def test_prune_global_leaves_the_callers_model_alone():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compress.prune_global(model, 0.8)
    assert not compress.is_pruned(model)
    assert compress.sparsity(model) == 0.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fine_tuning_with_fit_keeps_pruned_weights_at_zero_and_changes_the_rest():
    ds = kdlab.data.load("digits", seed=0)
    model = kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape, hidden=(32,), seed=0)
    pruned = compress.prune_global(model, 0.8)
    zero_before = [w == 0 for w in _weights(pruned)]
    snapshot = [w.clone() for w in _weights(pruned)]
    kdlab.train.fit(pruned, ds, epochs=2, lr=0.01, progress=False, device="cpu")
    after = _weights(pruned)
    for mask, w in zip(zero_before, after):
        assert torch.all(w[mask] == 0)
    assert any(not torch.equal(a, b) for a, b in zip(snapshot, after))
    permanent = compress.make_permanent(pruned)
    assert not compress.is_pruned(permanent) and compress.is_pruned(pruned)
    assert compress.sparsity(permanent) == compress.sparsity(pruned)
    assert {n for n, _ in permanent.named_parameters()} == {n for n, _ in model.named_parameters()}
    x = ds.test.inputs()[:16] if callable(getattr(ds.test, "inputs", None)) else None
    if x is not None:
        torch.testing.assert_close(permanent.eval()(x.cpu()), pruned.eval()(x.cpu()))


def test_make_permanent_inplace_and_clone():
    pruned = compress.prune_global(_mlp(), 0.5)
    copy_ = compress.clone(pruned)
    assert compress.is_pruned(copy_)
    same = compress.make_permanent(pruned, inplace=True)
    assert same is pruned and not compress.is_pruned(pruned)
    assert compress.is_pruned(copy_)  # the clone is independent


def test_pruning_bad_input_errors_name_the_parameter():
    with pytest.raises(ParameterError, match=r"sparsity=1\.0 is outside the accepted range \[0\.0, 1\.0\)"):
        compress.prune_global(_mlp(), 1.0)
    with pytest.raises(ParameterError, match="sparsity=-0.1"):
        compress.prune_global(_mlp(), -0.1)
    with pytest.raises(ParameterTypeError, match="sparsity must be a real number"):
        compress.prune_global(_mlp(), "0.5")
    with pytest.raises(ParameterTypeError, match="model must be a torch.nn.Module"):
        compress.prune_global("not a model", 0.5)
    with pytest.raises(ParameterError, match="no nn.Linear or nn.Conv2d"):
        compress.prune_global(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ParameterTypeError, match="inplace must be True or False"):
        compress.make_permanent(_mlp(), inplace="yes")


def test_cnn_teacher_can_be_pruned_too():
    cnn = kdlab.models.create("cnn", num_classes=10, input_shape=(1, 8, 8), seed=0)
    pruned = compress.prune_global(cnn, 0.5)
    n = sum(w.numel() for w in _weights(cnn))
    assert sum(int((w == 0).sum()) for w in _weights(pruned)) == round(0.5 * n)


# --- quantization ------------------------------------------------------------------------------

def test_quantized_output_close_to_float_and_smaller():
    model = _mlp(hidden=(128, 128))
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    q = compress.quantize_int8(model)
    assert not any(isinstance(m, nn.Linear) for m in q.modules())  # all converted
    with torch.no_grad():
        ref, out = model.eval()(x), q(x)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() > 0.9
    assert not torch.equal(out, ref)  # it really is quantized
    assert compress.saved_size(q) < 0.35 * compress.saved_size(model)
    assert isinstance(next(model.modules()).net[1], nn.Linear)  # the caller's model is still float


def test_quantize_pruned_model_keeps_zeros():
    pruned = compress.prune_global(_mlp(hidden=(128,)), 0.9)
    q = compress.quantize_int8(pruned)
    assert compress.sparsity(q) >= 0.9 - 1e-3
    assert compress.is_pruned(pruned)


def test_quantize_bad_input():
    with pytest.raises(ParameterError, match="no nn.Linear layer"):
        compress.quantize_int8(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ParameterTypeError):
        compress.quantize_int8(None)


# --- measured size -----------------------------------------------------------------------------

def test_saved_size_is_the_real_file_size(tmp_path):
    model = _mlp()
    path = tmp_path / "w.pt"
    size = compress.saved_size(model, path=path)
    assert size == os.stat(path).st_size
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    assert abs(size - buf.getbuffer().nbytes) < 0.02 * size  # the same tensors (archive names differ)
    n_params = kdlab.models.count_params(model)
    assert 4 * n_params < size < 4 * n_params + 10_000  # float32 plus a small pickle overhead
    plain_bytes = path.read_bytes()
    gz_path = tmp_path / "gz" / "w.pt"
    gz_path.parent.mkdir()
    gz = compress.saved_size(model, "gzip", path=gz_path)
    assert gz == os.stat(gz_path).st_size == len(gzip.compress(plain_bytes, compresslevel=6, mtime=0))
    assert gzip.decompress(gz_path.read_bytes()) == plain_bytes
    with pytest.raises(FileExistsError, match="already exists"):  # a file the user has is never replaced
        compress.saved_size(model, "gzip", path=path)
    assert path.read_bytes() == plain_bytes


def test_pruning_shrinks_only_compressed_sizes():
    model = _mlp(hidden=(256, 256))
    pruned = compress.prune_global(model, 0.9)
    plain, pruned_plain = compress.saved_size(model), compress.saved_size(pruned)
    assert abs(pruned_plain - plain) < 200  # zeros still take 4 bytes each; masks are not saved
    assert compress.saved_size(pruned, "gzip") < 0.35 * compress.saved_size(model, "gzip")
    n = sum(w.numel() for w in _weights(model))
    sparse = compress.saved_size(pruned, "sparse")
    assert sparse < 0.2 * plain
    assert sparse > n / 8 + 4 * round(0.1 * n)  # bitmask + the non-zero values cannot be beaten
    assert compress.saved_size(model, "sparse") == plain  # dense tensors are left dense


def test_sparse_encoding_round_trips():
    pruned = compress.prune_global(_mlp(), 0.75)
    decoded = compress.sparse_decode(compress.saved_state(pruned, "sparse"))
    reference = compress.make_permanent(pruned).state_dict()
    assert set(decoded) == set(reference)
    for k in reference:
        assert torch.equal(decoded[k], reference[k])


def test_saved_size_bad_compressed():
    with pytest.raises(ParameterError, match="compressed='zip' is not one of the accepted values"):
        compress.saved_size(_mlp(), "zip")


# --- Pareto front ------------------------------------------------------------------------------

def test_pareto_front_hand_examples():
    pts = [(10, 0.9), (5, 0.8), (20, 0.95), (15, 0.85), (5, 0.7), (30, 0.95), (1, 0.1)]
    assert compress.pareto_front(pts) == [(1, 0.1), (5, 0.8), (10, 0.9), (20, 0.95)]
    assert compress.pareto_front([]) == []
    assert compress.pareto_front([(3, 0.5)]) == [(3, 0.5)]
    assert compress.pareto_front([(2, 0.5), (2, 0.5)]) == [(2, 0.5), (2, 0.5)]  # ties do not dominate
    assert compress.pareto_front([(1, 0.9), (2, 0.5), (3, 0.1)]) == [(1, 0.9)]


def test_pareto_front_on_rows_with_named_keys():
    rows = [{"label": "a", "bytes": 100, "acc": 0.9}, {"label": "b", "bytes": 50, "acc": 0.95},
            {"label": "c", "bytes": 10, "acc": 0.5}]
    front = compress.pareto_front(rows, cost="bytes", value="acc")
    assert [r["label"] for r in front] == ["c", "b"]
    assert front[0] is rows[2]


def test_pareto_front_bad_input():
    with pytest.raises(ParameterError, match=r"points\[1\] has value nan"):
        compress.pareto_front([(1, 0.5), (2, float("nan"))])
    with pytest.raises(ParameterTypeError, match=r"points\[0\]"):
        compress.pareto_front([(1, 2, 3)])
    with pytest.raises(ParameterError, match="needs 'size' and 'accuracy'"):
        compress.pareto_front([{"bytes": 1, "accuracy": 0.5}])
    with pytest.raises(ParameterTypeError, match="points must be a list"):
        compress.pareto_front(5)
    # The tolerances are checked as every real parameter is (kdlab.validate.real): type, then range.
    with pytest.raises(ParameterTypeError, match="cost_tolerance must be a real number, got '0.1'"):
        compress.pareto_front([(1, 0.5)], cost_tolerance="0.1")
    with pytest.raises(ParameterTypeError, match="value_tolerance must be a real number, got True"):
        compress.pareto_front([(1, 0.5)], value_tolerance=True)
    with pytest.raises(ParameterError, match=r"cost_rel_tolerance=-0.1 is outside the accepted range \[0.0, inf\]"):
        compress.pareto_front([(1, 0.5)], cost_rel_tolerance=-0.1)
    with pytest.raises(ParameterError, match="value_tolerance=inf is not finite"):
        compress.pareto_front([(1, 0.5)], value_tolerance=float("inf"))


def test_sparsity_bad_input():
    with pytest.raises(ParameterError, match="no Linear or Conv2d weights"):
        compress.sparsity(nn.ReLU())


# --- exercise checks ---------------------------------------------------------------------------

def _global_sparsity(model):
    ws = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def test_check_global_sparsity_feedback(capsys):
    assert kdlab.checks.check_global_sparsity(_global_sparsity)
    fb = kdlab.checks.check_global_sparsity(lambda m: 1 - _global_sparsity(m))
    assert not fb and "NON-zero" in fb.message
    fb = kdlab.checks.check_global_sparsity(lambda m: 100 * _global_sparsity(m))
    assert not fb and "percentage" in fb.message

    def per_layer(model):
        ws = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
        return sum(float((w == 0).float().mean()) for w in ws) / len(ws)
    fb = kdlab.checks.check_global_sparsity(per_layer)
    assert not fb and "averaged the layers" in fb.message

    def with_bias(model):
        ps = [p for m in model.modules() if isinstance(m, nn.Linear) for p in (m.weight, m.bias)]
        return sum(int((p == 0).sum()) for p in ps) / sum(p.numel() for p in ps)
    fb = kdlab.checks.check_global_sparsity(with_bias)
    assert not fb and "biases" in fb.message

    def reads_orig(model):
        ws = [getattr(m, "weight_orig", m.weight) for m in model.modules() if isinstance(m, nn.Linear)]
        return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    fb = kdlab.checks.check_global_sparsity(reads_orig)
    assert not fb and "weight_orig" in fb.message

    def todo(model):
        raise NotImplementedError
    fb = kdlab.checks.check_global_sparsity(todo)
    assert not fb and not fb.done
    assert not kdlab.checks.check_global_sparsity(None).done
    capsys.readouterr()


def _front(points):
    return sorted([p for p in points if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)])


def test_check_pareto_front_feedback(capsys):
    assert kdlab.checks.check_pareto_front(_front)
    fb = kdlab.checks.check_pareto_front(lambda pts: list(reversed(_front(pts))))
    assert not fb and "order" in fb.message
    fb = kdlab.checks.check_pareto_front(lambda pts: sorted(pts))
    assert not fb and "dominated" in fb.message
    fb = kdlab.checks.check_pareto_front(lambda pts: _front(pts)[1:])
    assert not fb and "missed" in fb.message

    def larger_is_better(points):
        return sorted(p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points))
    fb = kdlab.checks.check_pareto_front(larger_is_better)
    assert not fb and "LARGER" in fb.message

    def strict_only(points):  # forgets that equal size with higher accuracy also dominates
        return sorted(p for p in points if not any(q[0] < p[0] and q[1] > p[1] for q in points))
    fb = kdlab.checks.check_pareto_front(strict_only)
    assert not fb and "dominated" in fb.message
    fb = kdlab.checks.check_pareto_front(lambda pts: None)
    assert not fb and "list of (size, accuracy) pairs" in fb.message
    assert not kdlab.checks.check_pareto_front(None).done
    capsys.readouterr()
