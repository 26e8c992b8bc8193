"""Data splits, the training loop and checkpoints: the behaviour the notebooks rely on."""

import numpy as np
import pytest
import torch
from torch import nn

import kdlab
from kdlab import objectives


def tiny_mlp(ds, seed=0, hidden=(32,)):
    return kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape, hidden=hidden, seed=seed)


# --- data -------------------------------------------------------------------------------

def test_mnist5k_split_sizes_and_fixed_stratified_test(mnist5k):
    other = kdlab.data.load("mnist-5k", seed=1)
    assert (len(mnist5k.train), len(mnist5k.val), len(mnist5k.test)) == (3600, 400, 1000)
    assert torch.equal(mnist5k.test.x, other.test.x) and torch.equal(mnist5k.test.y, other.test.y)
    assert not torch.equal(mnist5k.val.x, other.val.x)
    assert torch.bincount(mnist5k.test.y).tolist() == [100] * 10
    assert torch.bincount(mnist5k.val.y).tolist() == [40] * 10


def test_digits_read_directly_equal_scikit_learns_loader(monkeypatch):
    from sklearn.datasets import load_digits

    reference = load_digits()
    expected = np.rint(reference.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    assert kdlab.data._digits_file() is not None  # the fast path is the one taken here
    x, y, _ = kdlab.data._digits_arrays()
    assert np.array_equal(x, expected) and np.array_equal(y, reference.target)
    # A scikit-learn that keeps the file elsewhere falls back to its loader, with the same arrays.
    monkeypatch.setattr(kdlab.data, "_digits_file", lambda: None)
    x2, y2, _ = kdlab.data._digits_arrays()
    assert np.array_equal(x2, expected) and np.array_equal(y2, reference.target)


def test_normalisation_uses_train_statistics(mnist5k):
    pixels = mnist5k.train.x.float() / 255
    assert mnist5k.train.mean.item() == pytest.approx(pixels.mean().item(), rel=1e-4)
    assert mnist5k.test.mean is mnist5k.train.mean
    x = mnist5k.train.inputs()
    assert x.mean().item() == pytest.approx(0.0, abs=1e-3) and x.std().item() == pytest.approx(1.0, abs=1e-2)


def test_shuffled_batches_cover_every_index_once_and_line_up(digits):
    g = torch.Generator().manual_seed(0)
    seen = []
    for batch in digits.train.batches(100, shuffle=True, generator=g):
        assert isinstance(batch, kdlab.data.Batch)
        torch.testing.assert_close(batch.x, digits.train.inputs(batch.idx))
        assert torch.equal(batch.y, digits.train.y[batch.idx])
        assert torch.equal(batch.aug, torch.zeros_like(batch.idx))  # no augmentation asked for
        seen.append(batch.idx)
    seen = torch.cat(seen)
    assert sorted(seen.tolist()) == list(range(len(digits.train)))
    assert seen.tolist() != list(range(len(digits.train)))


def test_random_shift_is_a_translation():
    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 3, 4] = 255
    out = kdlab.data.random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    rows, cols = (out[:, 0] == 255).nonzero()[:, 1], (out[:, 0] == 255).nonzero()[:, 2]
    assert (out[:, 0] == 255).sum(dim=(1, 2)).tolist() == [1] * 64  # one bright pixel, moved, never lost
    assert set((rows - 3).tolist()) <= set(range(-2, 3)) and set((cols - 4).tolist()) <= set(range(-2, 3))
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5  # per-image offsets differ


def test_crop_flip_views_are_shifted_or_mirrored_copies():
    x = torch.arange(3 * 32 * 32, dtype=torch.float32).remainder(251).to(torch.uint8).view(1, 3, 32, 32).repeat(400, 1, 1, 1)
    split = kdlab.data.Split(x, torch.zeros(400, dtype=torch.long), torch.zeros(3), torch.ones(3),
                             augmentation="crop_flip", max_shift=4)
    assert split.num_augmentations == 81 * 2
    out, aug = split.apply_augmentation(x, torch.Generator().manual_seed(0))
    flipped = aug >= 81
    assert 100 < int(flipped.sum()) < 300
    # Re-applying the recorded augmentations reproduces the batch exactly.
    again, same = split.apply_augmentation(x, aug=aug)
    assert torch.equal(out, again) and torch.equal(same, aug)
    centre = torch.full((400,), 40)  # offset (4, 4): no shift
    plain, _ = split.apply_augmentation(x, aug=centre)
    mirrored, _ = split.apply_augmentation(x, aug=centre + 81)
    assert torch.equal(plain, x) and torch.equal(mirrored, x.flip(-1))


def test_augmented_batches_record_the_augmentation_each_image_got(digits):
    split = digits.train
    assert split.augmentation == "shift" and split.num_augmentations == 9  # 1-pixel shifts of 8x8 digits
    g = torch.Generator().manual_seed(0)
    batches = list(split.batches(500, shuffle=True, augment=True, generator=g))
    for batch in batches:
        shifted, _ = split.apply_augmentation(split.x[batch.idx], aug=batch.aug)
        torch.testing.assert_close(batch.x, split.normalize(shifted))
    augs = torch.cat([b.aug for b in batches])
    assert set(augs.tolist()) == set(range(9))


def test_subset_by_mask_and_indices(digits):
    mask = digits.train.y == 3
    by_mask = digits.train.subset(mask)
    assert (by_mask.y == 3).all() and len(by_mask) == int(mask.sum())
    assert len(digits.train.subset([0, 5, 7])) == 3
    assert len(digits.with_train(by_mask).train) == len(by_mask)


# --- the training loop ------------------------------------------------------------------

class RecordingObjective(objectives.Objective):
    """Distillation that records whether each batch's teacher logits match teacher(batch.x)."""

    def __init__(self, teacher):
        super().__init__()
        self.teacher = objectives.as_teacher(teacher)
        self.max_error = 0.0
        self.calls = 0

    def forward(self, student_logits, batch):
        teacher_logits = self.teacher.logits(batch)
        with torch.no_grad():
            direct = self.teacher.model(batch.x)
        self.max_error = max(self.max_error, (direct - teacher_logits).abs().max().item())
        self.calls += 1
        return kdlab.losses.kd_loss(student_logits, teacher_logits, 2.0), {}


@pytest.mark.parametrize("augment,cache,mode", [(False, None, "cached"), (True, True, "cached per augmentation"),
                                                (True, False, "online"), (True, "given", "given")])
def test_teacher_logits_stay_aligned_with_shuffled_and_augmented_batches(digits, augment, cache, mode):
    # A teacher whose logits identify the input: any misalignment shows up as a large error.
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    if cache == "given":
        given = kdlab.inference.predict_augmented_logits(teacher, digits.train)  # (N, A, K)
        teacher = kdlab.teacher.Teacher(teacher, logits=given)
    else:
        teacher = kdlab.teacher.Teacher(teacher, cache=cache)
    objective = RecordingObjective(teacher)
    history = kdlab.train.fit(tiny_mlp(digits), digits, objective=objective, epochs=2, batch_size=64,
                              augment=augment, progress=False)
    assert teacher.mode == mode and history.config["objective"] == "RecordingObjective"
    assert objective.calls == 2 * int(np.ceil(len(digits.train) / 64))
    assert objective.max_error < 1e-4


def test_fit_learns_and_reports_history(digits):
    model = tiny_mlp(digits)
    history = kdlab.train.fit(model, digits, epochs=3, lr=3e-3, batch_size=64, progress=False)
    assert len(history) == 3 and history["train_loss"][-1] < history["train_loss"][0]
    for key in ("train_loss", "train_acc", "val_acc", "seconds", "samples_per_s"):
        assert all(np.isfinite(history[key])), key
    assert kdlab.metrics.evaluate(model, digits.test)["accuracy"] > 0.8


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_fit_uses_the_fused_optimizer_step_and_it_matches_the_default_one(digits, optimizer, monkeypatch):
    # The fused step is an implementation detail: the same update rule as torch's
    # default step, so the trained weights agree up to float rounding.
    config = kdlab.train.TrainConfig(optimizer=optimizer)
    fused_model = tiny_mlp(digits)
    history = kdlab.train.fit(fused_model, digits, epochs=2, batch_size=64, lr=1e-2, progress=False, config=config)
    assert history.config["fused_optimizer"] is True and history.config["optimizer"] == optimizer
    # A torch build without the fused kernel: make_optimizer falls back to the default step.
    cls = {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer]

    class NoFusedKernel(cls):
        def __init__(self, *args, fused=None, **kwargs):
            if fused:
                raise RuntimeError("fused kernel not built")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch.optim, cls.__name__, NoFusedKernel)
    default_model = tiny_mlp(digits)
    history = kdlab.train.fit(default_model, digits, epochs=2, batch_size=64, lr=1e-2, progress=False, config=config)
    assert history.config["fused_optimizer"] is False
    for a, b in zip(fused_model.parameters(), default_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fit_flushes_denormals_while_training_on_cpu_and_restores_the_setting(digits):
    seen = []
    assert not kdlab.devices.denormals_flushed()  # importing kdlab leaves this thread's floats alone
    kdlab.train.fit(tiny_mlp(digits), digits, epochs=2, device="cpu", progress=False,
                    config=kdlab.train.TrainConfig(callback=lambda r: seen.append(kdlab.devices.denormals_flushed())))
    assert seen == [True, True]
    assert not kdlab.devices.denormals_flushed()
    torch.set_flush_denormal(True)  # and one who has it on keeps it on
    try:
        kdlab.train.fit(tiny_mlp(digits), digits, epochs=1, device="cpu", progress=False)
        assert kdlab.devices.denormals_flushed()
    finally:
        torch.set_flush_denormal(False)


def _big_denormal_product_is_flushed() -> bool:
    # 4M elements: large enough that torch splits the multiplication over its worker threads,
    # where the slow-down the flush prevents happened (each thread has its own FTZ/DAZ flags).
    return bool((torch.full((1 << 22,), 1e-39) * 1.0).eq(0).all())


def test_fit_flushes_denormals_in_the_worker_threads_too_and_restores_them(digits):
    class Probing(objectives.CrossEntropy):
        def __init__(self):
            super().__init__()
            self.flushed = []

        def forward(self, student_logits, batch):
            self.flushed.append(_big_denormal_product_is_flushed())
            return super().forward(student_logits, batch)

    assert not _big_denormal_product_is_flushed()  # importing kdlab left the worker threads alone
    in_callback = []
    objective = Probing()
    kdlab.train.fit(tiny_mlp(digits), digits, objective=objective, epochs=2, batch_size=512, device="cpu",
                    progress=False, config=kdlab.train.TrainConfig(
                        callback=lambda r: in_callback.append(_big_denormal_product_is_flushed())))
    assert objective.flushed and all(objective.flushed) and in_callback == [True, True]
    assert not _big_denormal_product_is_flushed()  # the caller's setting is back, in every thread


def test_importing_kdlab_leaves_denormals_alone():
    import os
    import subprocess
    import sys

    code = ("import torch, kdlab; print(kdlab.devices.denormals_flushed(), "
            "bool((torch.full((1 << 22,), 1e-39) * 1.0).eq(0).all()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "KDLAB_KEEP_DENORMALS": ""})
    assert out.stdout.strip() == "False False", (out.stdout, out.stderr)
    assert not hasattr(kdlab.devices, "flush_denormals_in_workers")


def test_any_module_can_be_student_and_teacher_and_the_teacher_stays_frozen(digits):
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    kdlab.train.fit(teacher, digits, epochs=1, progress=False)
    teacher.zero_grad(set_to_none=True)  # forget the gradients of its own training
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    history = kdlab.train.fit(student, digits, teacher=teacher, temperature=3.0, alpha=0.7, epochs=2,
                              progress=False)
    assert history.config["objective"] == "Distillation"
    assert history.config["temperature"] == 3.0 and history.config["alpha"] == 0.7
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert {"kd", "ce"} <= set(history.records[0])


def test_same_seed_same_numbers_on_cpu(digits):
    def run(seed):
        model = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(32,),
                                    dropout=0.2, seed=seed)
        history = kdlab.train.fit(model, digits, epochs=2, augment=True, seed=seed, progress=False)
        return [(r["train_loss"], r["val_acc"]) for r in history.records], model.state_dict()

    torch.manual_seed(1)
    h1, w1 = run(0)
    torch.manual_seed(2)  # the caller's random state does not reach the dropout masks: fit seeds them
    state = torch.get_rng_state()
    h2, w2 = run(0)
    assert torch.equal(torch.get_rng_state(), state), "fit gives the caller's CPU random state back"
    h3, _ = run(1)
    assert h1 == h2 and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1 != h3


def test_objective_extension_point(digits):
    class Counting(objectives.CrossEntropy):
        def __init__(self):
            super().__init__()
            self.aux_calls = 0

        def after_step(self, student_logits, batch):
            assert isinstance(batch, kdlab.data.Batch) and not student_logits.requires_grad
            self.aux_calls += 1
            return {"aux": torch.tensor(1.0)}

    objective = Counting()
    history = kdlab.train.fit(tiny_mlp(digits), digits, objective=objective, epochs=1, batch_size=256,
                              progress=False)
    assert objective.aux_calls == int(np.ceil(len(digits.train) / 256))
    assert history.records[0]["aux"] == pytest.approx(1.0)


def test_lr_schedules():
    from kdlab.train import TrainConfig, _lr_at

    cosine, warm = TrainConfig(schedule="cosine"), TrainConfig(schedule="cosine", warmup_epochs=1.0)
    assert _lr_at(0, 100, 1.0, cosine, 10) == pytest.approx(1.0)
    assert _lr_at(50, 100, 1.0, cosine, 10) == pytest.approx(0.5)
    assert _lr_at(9, 100, 1.0, warm, 10) == pytest.approx(1.0)  # one epoch of 10 steps warms up
    assert _lr_at(0, 100, 1.0, warm, 10) == pytest.approx(0.1)
    assert _lr_at(0, 100, 1.0, TrainConfig(schedule="cosine", warmup_epochs=0.5), 10) == pytest.approx(0.2)
    assert _lr_at(99, 100, 1.0, TrainConfig(schedule="constant"), 10) == 1.0
    onecycle = TrainConfig(schedule="onecycle")
    assert max(_lr_at(s, 100, 1.0, onecycle, 10) for s in range(100)) == pytest.approx(1.0)


def test_auto_device_honours_environment(monkeypatch):
    monkeypatch.setenv("KDLAB_DEVICE", "cpu")
    assert kdlab.devices.resolve("auto").type == "cpu"


# --- models, metrics, checkpoints -------------------------------------------------------

def test_model_parameter_counts_and_shapes():
    mlp = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=(800, 800))
    assert kdlab.models.count_params(mlp) == 1_276_810  # 784*800+800 + 800*800+800 + 800*10+10
    resnet20 = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), depth=20)
    assert 0.26e6 < kdlab.models.count_params(resnet20) < 0.28e6  # He et al. 2016: 0.27M
    for name, shape in (("cnn", (1, 28, 28)), ("cnn", (1, 8, 8)), ("resnet", (3, 32, 32)), ("linear", (1, 8, 8))):
        model = kdlab.models.create(name, num_classes=7, input_shape=shape)
        assert kdlab.models.output_shape(model, shape) == (7,)


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=(16,), seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8), hidden=(16,), seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_metrics_against_reference_implementations():
    from sklearn.metrics import confusion_matrix, f1_score

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 5, generator=gen) * 2
    y = torch.randint(0, 5, (300,), generator=gen)
    pred = logits.argmax(1)
    assert kdlab.metrics.f1_macro(pred, y, 5) == pytest.approx(f1_score(y, pred, average="macro"))
    np.testing.assert_array_equal(kdlab.metrics.confusion_matrix(pred, y, 5).numpy(), confusion_matrix(y, pred))
    probs = logits.softmax(1)
    conf, correct = probs.max(1)[0], (pred == y).float()
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean().item() * abs(correct[inside].mean().item() - conf[inside].mean().item())
    assert kdlab.metrics.reliability(probs, y)["ece"] == pytest.approx(ece, abs=1e-6)


def test_mean_ci_is_the_t_interval():
    from scipy import stats

    values = [0.95, 0.96, 0.97, 0.955, 0.962]
    mean, half = kdlab.metrics.mean_ci(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and half == pytest.approx((hi - lo) / 2)


def test_fidelity_of_a_model_to_itself(digits):
    model = tiny_mlp(digits)
    m = kdlab.metrics.evaluate(model, digits.test, teacher=model)
    assert m["agreement"] == 1.0 and m["kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)


def test_checkpoint_roundtrip_atomic_and_no_silent_overwrite(digits, tmp_path):
    model = tiny_mlp(digits)
    path = kdlab.checkpoint.save(model, tmp_path / "m.pt", dataset="digits", metrics={"accuracy": 0.5})
    loaded, meta = kdlab.checkpoint.load(path)
    x = digits.test.inputs()
    torch.testing.assert_close(loaded(x), model.eval()(x))
    assert meta == {"dataset": "digits", "metrics": {"accuracy": 0.5}}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind
    original = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kdlab.checkpoint.save(tiny_mlp(digits, seed=1), path)
    assert path.read_bytes() == original
    kdlab.checkpoint.save(tiny_mlp(digits, seed=1), path, overwrite=True)
    assert path.read_bytes() != original


def test_custom_modules_need_model_to_load(digits, tmp_path):
    custom = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    path = kdlab.checkpoint.save(custom, tmp_path / "c.pt")
    with pytest.raises(kdlab.errors.CheckpointError, match="model="):
        kdlab.checkpoint.load(path)
    loaded, _ = kdlab.checkpoint.load(path, model=nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    torch.testing.assert_close(loaded[1].weight, custom[1].weight)


def test_compressed_size_shrinks_for_sparse_weights(digits):
    model = tiny_mlp(digits, hidden=(256,))
    dense = kdlab.compress.saved_size(model, "gzip")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_((torch.rand_like(p) < 0.1).float())
    assert kdlab.compress.saved_size(model, "gzip") < 0.5 * dense
    assert kdlab.compress.saved_size(model) == kdlab.compress.saved_size(tiny_mlp(digits, hidden=(256,)))


def test_compile_falls_back_to_eager_when_it_fails(digits, monkeypatch):
    def broken(model, *args, **kwargs):
        def fail(x):
            raise RuntimeError("no compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="training in eager mode"):
        history = kdlab.train.fit(tiny_mlp(digits), digits, epochs=1, progress=False,
                                  config=kdlab.train.TrainConfig(compile=True))
    assert len(history) == 1 and np.isfinite(history["train_loss"][0])


def small_cnn(ds, seed=0):
    return kdlab.models.create("cnn", num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed,
                               channels=(8, 16), fc=32)


def is_channels_last(model):
    # The second conv has 8 input channels, so its NCHW and NHWC strides differ (the first has 1).
    weight = model.features[3].weight
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_evaluating_a_cnn_leaves_its_memory_format_and_gives_the_nchw_logits(digits):
    model = small_cnn(digits).eval()
    with torch.no_grad():
        reference = model(digits.test.inputs())
    logits = kdlab.inference.predict_logits(model, digits.test)
    torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-5)
    assert not is_channels_last(model)
    # The weights converted for inference are ordinary tensors: the model still trains.
    history = kdlab.train.fit(model, digits, epochs=1, progress=False,
                              config=kdlab.train.TrainConfig(channels_last=False))
    assert np.isfinite(history.last["train_loss"])


def test_fit_trains_cnns_channels_last_where_that_pays_and_matches_nchw(digits):
    runs = {}
    for layout in (None, False):
        model = small_cnn(digits)
        history = kdlab.train.fit(model, digits, epochs=2, progress=False,
                                  config=kdlab.train.TrainConfig(channels_last=layout))
        runs[layout] = (history, model)
    pays = kdlab.devices.channels_last_pays(torch.device("cpu"))
    assert runs[None][0].config["channels_last"] is pays and is_channels_last(runs[None][1]) is pays
    assert runs[False][0].config["channels_last"] is False and not is_channels_last(runs[False][1])
    # Same arithmetic in another order: the losses agree to float rounding.
    for a, b in zip(runs[None][0]["train_loss"], runs[False][0]["train_loss"]):
        assert a == pytest.approx(b, rel=1e-3)
    # An MLP has no convolutions and is never converted.
    assert kdlab.train.fit(tiny_mlp(digits), digits, epochs=1, progress=False).config["channels_last"] is False


def test_channels_last_pays_on_cuda_and_x86_cpus_only(monkeypatch):
    import platform

    assert kdlab.devices.channels_last_pays(torch.device("cuda"))
    assert not kdlab.devices.channels_last_pays(torch.device("mps"))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not kdlab.devices.channels_last_pays(torch.device("cpu"))
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert kdlab.devices.channels_last_pays(torch.device("cpu")) is torch.backends.mkldnn.is_available()


def test_narrow_resnets_stay_nchw_on_the_cpu_where_onednn_breaks(monkeypatch):
    # oneDNN issue #6035: a 1x1 strided conv with fewer than 16 input channels hangs (AVX2) or crashes
    # (AVX-512) in NHWC backward passes. A ResNet of width 4 has one in its shortcut; width 16 has none.
    monkeypatch.setattr(kdlab.devices, "channels_last_pays", lambda device: True)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    narrow = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), depth=8, width=4, seed=0)
    wide = kdlab.models.create("resnet", num_classes=10, input_shape=(3, 32, 32), depth=8, width=16, seed=0)
    assert not kdlab.devices.channels_last_for(narrow, cpu) and kdlab.devices.channels_last_for(narrow, cuda)
    assert kdlab.devices.channels_last_for(wide, cpu)
    assert not kdlab.devices.channels_last_for(kdlab.models.create("mlp", num_classes=10, input_shape=(1, 8, 8)), cpu)
    with kdlab.devices.tuned(narrow, cpu) as tune:
        assert not tune.channels_last and narrow.blocks[0].conv1.weight.is_contiguous()


def test_inference_batch_size_depends_on_the_device():
    assert kdlab.inference.eval_batch_size(torch.device("cpu")) == 256
    assert kdlab.inference.eval_batch_size(torch.device("cuda")) == 1024


def test_evaluate_with_precomputed_teacher_logits_equals_evaluate_with_the_teacher(digits):
    student, teacher = tiny_mlp(digits, seed=0), tiny_mlp(digits, seed=1)
    direct = kdlab.metrics.evaluate(student, digits.test, teacher=teacher)
    cached = kdlab.metrics.evaluate(student, digits.test,
                                    teacher_logits=kdlab.inference.predict_logits(teacher, digits.test))
    assert cached == direct
    with pytest.raises(ValueError, match="teacher_logits has shape"):
        kdlab.metrics.evaluate(student, digits.test, teacher_logits=torch.zeros(3, 10))


def test_amp_on_the_cpu_needs_native_bf16(digits, monkeypatch):
    cpu = torch.device("cpu")
    assert kdlab.devices.resolve_amp(None, cpu) is False and kdlab.devices.resolve_amp(None, torch.device("cuda"))
    with pytest.raises(TypeError, match="amp must be True, False or None"):
        kdlab.devices.resolve_amp("yes", cpu)
    with pytest.raises(ValueError, match="amp=True is supported on CUDA"):
        kdlab.devices.resolve_amp(True, torch.device("mps"))
    monkeypatch.setattr(kdlab.devices, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="amp=True on the CPU needs native bf16"):
        kdlab.train.fit(tiny_mlp(digits), digits, epochs=1, device="cpu", progress=False,
                        config=kdlab.train.TrainConfig(amp=True))
    monkeypatch.setattr(kdlab.devices, "cpu_has_native_bf16", lambda: True)
    assert kdlab.devices.resolve_amp(True, cpu) is True


@pytest.mark.skipif(not kdlab.devices.cpu_has_native_bf16(), reason="needs a CPU with native bf16 (AMX, AVX512-BF16)")
def test_bf16_training_on_the_cpu_matches_float32_closely(digits):
    runs = {}
    for amp in (False, True):
        model = small_cnn(digits)
        runs[amp] = kdlab.train.fit(model, digits, epochs=3, lr=3e-3, device="cpu", progress=False,
                                    config=kdlab.train.TrainConfig(amp=amp))
        runs[amp, "logits"] = kdlab.inference.predict_logits(model, digits.test, amp=amp)
    assert runs[True].config["amp"] is True and runs[False].config["amp"] is False
    assert runs[True, "logits"].dtype == torch.float32
    for a, b in zip(runs[False]["train_loss"], runs[True]["train_loss"]):
        assert a == pytest.approx(b, rel=0.1)  # bf16 keeps 8 bits of mantissa: close, not equal
    assert abs(runs[False].last["val_acc"] - runs[True].last["val_acc"]) < 0.05
