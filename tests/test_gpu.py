"""The CUDA paths of the one training loop. Skipped without a GPU (CI has none); run them
on a GPU box with ``python -m pytest tests/test_gpu.py``."""

import pytest
import torch

import kdlab

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def digits():
    return kdlab.data.load("digits", seed=0)


def cnn(ds, seed=0, **kw):
    return kdlab.models.create("cnn", num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed, **kw)


def test_defaults_on_cuda_are_the_fast_paths(digits):
    model = cnn(digits)
    history = kdlab.train.fit(model, digits, epochs=3, lr=3e-3, augment=True, device="cuda", progress=False)
    config = history.config
    assert config["amp"] is True and config["channels_last"] is True and config["device"].startswith("cuda")
    assert config["fused_optimizer"] is True  # device "cuda" against parameters on "cuda:0"
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert history.last["val_acc"] > 0.8, history.last


def test_data_stays_uint8_on_the_device(digits):
    split = digits.train.to(CUDA)
    assert split.x.dtype == torch.uint8 and split.x.device.type == "cuda"
    batch = next(split.batches(64, shuffle=True, augment=True, generator=torch.Generator(device=CUDA).manual_seed(0)))
    assert batch.x.device.type == "cuda" and batch.x.dtype == torch.float32 and batch.aug.device.type == "cuda"
    # The augmentation drawn on the GPU is the one its index names.
    again, _ = split.apply_augmentation(split.x[batch.idx], aug=batch.aug)
    assert torch.equal(split.normalize(again), batch.x)


def test_bf16_training_tracks_fp32(digits):
    accs = {}
    for amp in (True, False):
        model = cnn(digits)
        kdlab.train.fit(model, digits, epochs=4, lr=3e-3, device="cuda", progress=False, seed=0,
                        config=kdlab.train.TrainConfig(amp=amp))
        accs[amp] = kdlab.metrics.evaluate(model, digits.test)["accuracy"]
    assert abs(accs[True] - accs[False]) < 0.03, accs


def test_cached_and_online_teacher_agree_on_cuda(digits):
    teacher = cnn(digits, seed=1)
    kdlab.train.fit(teacher, digits, epochs=2, device="cuda", progress=False)
    table = kdlab.inference.predict_augmented_logits(teacher, digits.train, device=CUDA)  # (N, A, K), float32
    split = digits.train.to(CUDA)
    gen = torch.Generator(device=CUDA).manual_seed(3)
    batch = next(split.batches(128, shuffle=True, augment=True, generator=gen))
    online = kdlab.teacher.Teacher(teacher, cache=False)
    online.prepare(split, augment=True, epochs=1, device=CUDA, amp=True, num_classes=10)
    assert online.mode == "online"
    served = online.logits(batch)  # the teacher in bf16 on this very batch
    cached = table[batch.idx, batch.aug]
    # bf16 logits: agree to bf16 rounding, and on the argmax almost everywhere.
    assert (served.argmax(1) == cached.argmax(1)).float().mean() > 0.97
    assert torch.allclose(served, cached, atol=0.25, rtol=0.05)


def test_distillation_on_cuda_and_checkpoint_to_cpu(digits, tmp_path):
    teacher = cnn(digits, seed=1)
    kdlab.train.fit(teacher, digits, epochs=3, lr=3e-3, device="cuda", progress=False)
    student = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(64,), seed=0)
    objective = kdlab.objectives.Distillation(kdlab.teacher.Teacher(teacher, cache=True), temperature=4.0, alpha=0.9)
    history = kdlab.train.fit(student, digits, objective=objective, epochs=3, lr=3e-3, augment=True, device="cuda",
                              progress=False)
    assert history.config["teacher_logits"] == "cached per augmentation", history.config["teacher_logits"]
    path = kdlab.checkpoint.save(student, tmp_path / "student.pt")
    loaded, _ = kdlab.checkpoint.load(path, device="cpu")
    assert next(loaded.parameters()).device.type == "cpu"
    cpu_acc = kdlab.metrics.evaluate(loaded, digits.test)["accuracy"]
    gpu_acc = kdlab.metrics.evaluate(student, digits.test.to(CUDA))["accuracy"]
    assert abs(cpu_acc - gpu_acc) < 0.02


def test_teacher_modes_train_alike_on_cuda(digits):
    teacher = cnn(digits, seed=1)
    kdlab.train.fit(teacher, digits, epochs=2, device="cuda", progress=False)
    Teacher = kdlab.teacher.Teacher
    losses = {}
    for name, make in (("cached per augmentation", lambda: Teacher(teacher, cache=True)),
                       ("online", lambda: Teacher(teacher, cache=False))):
        student = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(64,), seed=0)
        history = kdlab.train.fit(student, digits, objective=kdlab.objectives.Distillation(make()), epochs=2,
                                  augment=True, device="cuda", progress=False)
        assert history.config["teacher_logits"] == name
        losses[name] = history["train_loss"]
    # Both run the teacher in bf16 on the GPU, in batches of other sizes: close, not bit-equal.
    assert losses["online"] == pytest.approx(losses["cached per augmentation"], rel=0.02)


def test_a_breakpoint_in_kd_loss_fires_inside_fit_on_cuda(digits, monkeypatch):
    teacher = cnn(digits, seed=1)
    calls = []
    real = kdlab.losses.kd_loss

    def spy(s, t, T, **kw):
        calls.append((s.device.type, t.device.type, t.dtype))
        return real(s, t, T, **kw)

    monkeypatch.setattr(kdlab.losses, "kd_loss", spy)
    student = kdlab.models.create("mlp", num_classes=10, input_shape=digits.input_shape, hidden=(64,), seed=0)
    kdlab.train.fit(student, digits, teacher=teacher, epochs=1, batch_size=256, device="cuda", progress=False)
    assert len(calls) == -(-len(digits.train) // 256)
    assert set(calls) == {("cuda", "cuda", torch.float32)}


# --- language models (notebook 12): bf16 and the fused attention kernels -----------------------------

@pytest.fixture(scope="module")
def text():
    ds = kdlab.data.load("pydoc", context=64)
    return ds.with_train(ds.train.subset(torch.arange(1024)))


def lm(ds, seed=0, **kw):
    return kdlab.models.create("transformer", num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed, **kw)


def test_a_language_model_trains_in_bf16_on_cuda(text):
    model = lm(text)
    history = kdlab.train.fit(model, text, epochs=2, lr=3e-3, batch_size=64, device="cuda", progress=False)
    assert history.config["amp"] is True and history.config["device"].startswith("cuda")
    assert history.last["val_loss"] < 4.0, history.last  # uniform over ~100 characters is 4.6 nats
    fp32 = lm(text)
    kdlab.train.fit(fp32, text, epochs=2, lr=3e-3, batch_size=64, device="cuda", progress=False,
                    config=kdlab.train.TrainConfig(amp=False))
    bpc = {name: kdlab.lm.evaluate(m, text.val.to(CUDA))["bpc"] for name, m in (("bf16", model), ("fp32", fp32))}
    assert abs(bpc["bf16"] - bpc["fp32"]) < 0.1, bpc


def test_flash_attention_serves_training_and_cached_decoding(text):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = lm(text).to(CUDA).eval()
    x = text.val.x[:8].to(CUDA)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):  # raises if flash attention cannot run these shapes
            fused = model(x).float()
            logits, state = model.decode(x[:, :16])  # prefill: causal, queries and keys aligned
            step, _ = model.decode(x[:, 16:17], state)  # one new token over the cache: no mask
        with sdpa_kernel([SDPBackend.MATH]):
            reference = model(x).float()
    assert torch.allclose(fused, reference, atol=0.1, rtol=0.05)
    assert torch.allclose(step.float()[:, 0], reference[:, 16], atol=0.1, rtol=0.05)


def test_generation_with_the_cache_equals_generation_without_it_on_cuda(text):
    model = lm(text).to(CUDA)
    prompt = text.val.x[:4, :8].to(CUDA)
    greedy = [kdlab.lm.generate(model, prompt, 40, temperature=0.0, use_cache=cache) for cache in (True, False)]
    assert torch.equal(*greedy)
    speed = {cache: kdlab.lm.characters_per_second(model, prompt, 40, use_cache=cache, repeats=2)
             for cache in (True, False)}
    assert all(v > 0 for v in speed.values())  # reported, never asserted against each other


def test_language_model_distillation_on_cuda_uses_the_cached_teacher(text):
    teacher = lm(text, seed=1)
    kdlab.train.fit(teacher, text, epochs=1, device="cuda", progress=False)
    cached = kdlab.teacher.Teacher(teacher)
    for objective in (kdlab.objectives.Distillation(cached, 1.0, 1.0), kdlab.objectives.ReverseKL(cached)):
        student = lm(text, d_model=64, n_layers=2)
        history = kdlab.train.fit(student, text, objective=objective, epochs=1, device="cuda", progress=False)
        assert history.config["teacher_logits"] == "cached" and torch.isfinite(torch.tensor(history.last["train_loss"]))
    student = lm(text, d_model=64, n_layers=2)
    history = kdlab.train.fit(student, text, objective=kdlab.lm.OnPolicy(cached, student, n_sequences=8), epochs=1,
                              device="cuda", progress=False)
    assert history.last["kd_own_text"] > 0
