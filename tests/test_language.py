"""Notebook 12's machinery: text corpora, language models, sequence losses and objectives in the one loop.

What can go wrong silently here: a loss averaged over the batch instead of every position, padding
that counts, a KV cache that drifts from the full forward pass, a future character that leaks
into a prediction, a split that depends on the seed.
"""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

import kdlab
from kdlab import lm, losses, text
from kdlab.errors import DataCorruptError, ParameterError, ParameterTypeError
from kdlab.objectives import CrossEntropy, Distillation, ReverseKL
from kdlab.teacher import Teacher

IGNORE = losses.IGNORE_INDEX


def randn(*shape, seed, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def padded_mask(b, length, seed=0):
    lengths = torch.randint(1, length + 1, (b,), generator=torch.Generator().manual_seed(seed))
    return torch.arange(length)[None, :] < lengths[:, None]  # (B, L), True where a character counts


@pytest.fixture(scope="module")
def small(synthetic):
    """The synthetic corpus cut to 256 training windows: a few seconds per fit."""
    return synthetic.with_train(synthetic.train.subset(torch.arange(256)))


def transformer(ds, seed=0, **kw):
    kw = {"d_model": 32, "n_layers": 2, "n_heads": 2, **kw}
    return kdlab.models.create("transformer", num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed, **kw)


def gru(ds, seed=0):
    return kdlab.models.create("gru", num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed, d_model=8,
                               hidden_size=24)


@pytest.fixture(scope="module")
def lm_teacher(small):
    model = transformer(small, seed=1)
    kdlab.train.fit(model, small, epochs=2, lr=1e-2, batch_size=32, progress=False, device="cpu")
    return model.eval()


# --- the losses on (B, L, V): the image path on the reshaped rows -----------------------------

@pytest.mark.parametrize("fn", [losses.kd_loss, losses.reverse_kl_loss])
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
def test_sequence_losses_equal_the_image_losses_on_reshaped_rows(fn, T):
    s, t = randn(3, 7, 11, seed=1, scale=2), randn(3, 7, 11, seed=2, scale=3)
    torch.testing.assert_close(fn(s, t, T), fn(s.reshape(21, 11), t.reshape(21, 11), T))
    mask = padded_mask(3, 7, seed=3)
    torch.testing.assert_close(fn(s, t, T, mask=mask), fn(s[mask], t[mask], T))  # only the rows that count
    torch.testing.assert_close(fn(s, t, T, mask=torch.ones(3, 7, dtype=torch.bool)), fn(s, t, T))


def test_kd_loss_on_sequences_is_a_mean_over_positions_not_over_the_batch():
    s, t = randn(2, 5, 4, seed=4, scale=2), randn(2, 5, 4, seed=5, scale=2)
    per_position = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="none", log_target=True).sum(-1)
    torch.testing.assert_close(losses.kd_loss(s, t, 1.0), per_position.mean())
    assert not torch.allclose(losses.kd_loss(s, t, 1.0), per_position.sum() / 2)  # what batchmean on (B, L, V) gives


def test_padding_changes_neither_the_loss_nor_its_gradient():
    s, t = randn(4, 6, 9, seed=6, scale=2), randn(4, 6, 9, seed=7, scale=2)
    mask = padded_mask(4, 6, seed=8)
    garbage = s.clone()
    garbage[~mask] = randn(int((~mask).sum()), 9, seed=9, scale=1e3)
    for fn in (losses.kd_loss, losses.reverse_kl_loss):
        a, b = s.clone().requires_grad_(), garbage.clone().requires_grad_()
        la, lb = fn(a, t, 2.0, mask=mask), fn(b, t, 2.0, mask=mask)
        torch.testing.assert_close(la, lb)
        la.backward(), lb.backward()
        torch.testing.assert_close(a.grad, b.grad)
        assert torch.all(a.grad[~mask] == 0)


def test_reverse_kl_is_the_kl_the_other_way_round():
    s, t = randn(8, 5, seed=10, scale=2), randn(8, 5, seed=11, scale=3)
    p_s, p_t = torch.softmax(s.double() / 2, -1), torch.softmax(t.double() / 2, -1)
    expected = 4 * (p_s * (p_s.log() - p_t.log())).sum(-1).mean()
    torch.testing.assert_close(losses.reverse_kl_loss(s, t, 2.0).double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses.reverse_kl_loss(s, t, 2.0), losses.kd_loss(t, s, 2.0))  # KL(p_s‖p_t)
    assert not torch.allclose(losses.reverse_kl_loss(s, t, 2.0), losses.kd_loss(s, t, 2.0))
    assert float(losses.reverse_kl_loss(s, s.clone(), 2.0)) == 0.0


def test_reverse_kl_seeks_a_mode_and_forward_kl_covers_both():
    # The teacher puts its mass on the two ends of 7 classes; the student can only place one bump.
    teacher = torch.tensor([[4.0, 0, 0, 0, 0, 0, 4.0]])
    where = {}
    for name, fn in (("forward", losses.kd_loss), ("reverse", losses.reverse_kl_loss)):
        mu = torch.tensor(2.0, requires_grad=True)  # a little left of the middle
        opt = torch.optim.Adam([mu], lr=0.05)
        for _ in range(300):
            student = -((torch.arange(7.0) - mu) ** 2)[None]  # a bump centred at mu
            loss = fn(student, teacher, 1.0)
            opt.zero_grad(), loss.backward(), opt.step()
        where[name] = float(mu.detach())
    assert abs(where["forward"] - 3.0) < 0.1  # between the modes: covering both
    assert where["reverse"] < 0.5  # on the nearer mode


def test_distillation_loss_on_sequences_ignores_padded_targets():
    s, t = randn(2, 4, 6, seed=12, scale=2), randn(2, 4, 6, seed=13, scale=2)
    y = torch.randint(0, 6, (2, 4), generator=torch.Generator().manual_seed(14))
    y[1, 2:] = IGNORE
    mask = y != IGNORE
    expected = 0.7 * losses.kd_loss(s[mask], t[mask], 3.0) + 0.3 * F.cross_entropy(s[mask], y[mask])
    torch.testing.assert_close(losses.distillation_loss(s, t, y, 3.0, 0.7), expected)


def test_sequence_loss_arguments_are_checked():
    s = torch.zeros(2, 3, 5)
    with pytest.raises(ParameterError, match=r"mask must be a bool tensor of shape \(2, 3\)"):
        losses.kd_loss(s, s, 1.0, mask=torch.ones(2, 3))
    with pytest.raises(ParameterError, match=r"mask must be a bool tensor of shape \(2, 3\)"):
        losses.reverse_kl_loss(s, s, 1.0, mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ParameterError, match=r"shape \(5,\).*\(batch, length, classes\)"):
        losses.kd_loss(torch.zeros(5), torch.zeros(5), 1.0)
    with pytest.raises(ParameterError, match=r"targets must be int64 class labels of shape \(2, 3\)"):
        losses.distillation_loss(s, s, torch.zeros(2, dtype=torch.long), 1.0, 0.5)
    with pytest.raises(ParameterError, match=r"outside the 5 classes.*-100 for padding"):
        losses.distillation_loss(s, s, torch.full((2, 3), 7), 1.0, 0.5)
    assert float(losses.masked_mean(torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))) == 0.0  # no NaN


# --- the objectives on sequences -----------------------------------------------------------------

def _batch(b=3, length=5, v=7, seed=20):
    y = torch.randint(0, v, (b, length), generator=torch.Generator().manual_seed(seed))
    y[0, 3:] = IGNORE
    x = torch.zeros(b, length, dtype=torch.long)
    return kdlab.data.Batch(x, y, torch.arange(b), torch.zeros(b, dtype=torch.long))


def test_objectives_average_over_the_positions_that_count():
    batch = _batch()
    s, t = randn(3, 5, 7, seed=21, scale=2), randn(3, 5, 7, seed=22, scale=2)
    mask = batch.y != IGNORE
    loss, _ = CrossEntropy()(s, batch)
    torch.testing.assert_close(loss, F.cross_entropy(s[mask], batch.y[mask]))

    class Fixed(Teacher):  # serves t, whatever the batch
        def logits(self, batch):
            return t

    teacher = Fixed(torch.nn.Linear(1, 1))
    loss, logs = Distillation(teacher, 2.0, 0.6)(s, batch)
    torch.testing.assert_close(loss, 0.6 * losses.kd_loss(s[mask], t[mask], 2.0)
                               + 0.4 * F.cross_entropy(s[mask], batch.y[mask]))
    loss, logs = ReverseKL(teacher, 2.0, 1.0)(s, batch)
    torch.testing.assert_close(loss, losses.reverse_kl_loss(s[mask], t[mask], 2.0))
    assert set(logs) == {"reverse_kl", "ce"}


# --- data ------------------------------------------------------------------------------------------

def test_text_loading_is_deterministic_and_records_where_it_came_from(pydoc):
    again = kdlab.data.load("pydoc", context=32, seed=5)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(pydoc, name).x, getattr(again, name).x)
    import platform

    assert pydoc.info["python_version"] == platform.python_version() and len(pydoc.info["sha256"]) == 64
    assert pydoc.num_classes == len(pydoc.class_names) and pydoc.input_shape == (32,)


def test_splits_are_contiguous_blocks_that_rebuild_the_corpus(pydoc):
    corpus = text.pydoc_text()
    pieces = {}
    for name in ("train", "val", "test"):
        split = getattr(pydoc, name)
        inside = split.y[:, 1:] != IGNORE  # positions whose input is a character, not padding
        assert torch.equal(split.x[:, 1:][inside], split.y[:, :-1][inside])  # the targets are the next inputs
        pieces[name] = split.num_targets
    # Every character but the first of each block's part is a target exactly once.
    assert sum(pieces.values()) == len(corpus) - 3 * text.N_BLOCKS
    assert pieces["test"] == pytest.approx(text.TEST_FRACTION * len(corpus), rel=0.01)
    first = text.decode(pydoc.train.x[0], pydoc.class_names)
    assert corpus.startswith(first)


def test_the_test_split_does_not_depend_on_val_fraction_or_seed():
    a = kdlab.data.load("synthetic", context=16, val_fraction=0.05, seed=0)
    b = kdlab.data.load("synthetic", context=16, val_fraction=0.2, seed=3)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert len(b.val) > len(a.val) and len(b.train) < len(a.train)


def test_padding_marks_the_end_of_a_part(pydoc):
    y = pydoc.test.y
    padded = (y == IGNORE).any(1)
    assert 0 < int(padded.sum()) <= text.N_BLOCKS
    assert torch.all(pydoc.test.x[y == IGNORE] == 0)


def test_text_data_errors_name_the_parameter():
    with pytest.raises(ParameterError, match=r"name='shakespeare'.*'pydoc', 'synthetic'"):
        kdlab.data.load("shakespeare")
    with pytest.raises(ParameterError, match=r"context=1 is too small"):
        kdlab.data.load("pydoc", context=1)
    with pytest.raises(ParameterError, match=r"context=64 is for text corpora"):
        kdlab.data.load("digits", context=64)
    with pytest.raises(ParameterError, match=r"outside the vocabulary: 'é'"):
        text.encode("café", tuple("acf"))
    with pytest.raises(DataCorruptError, match="int64 token ids"):
        text.TextSplit(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ParameterError, match="augment=True: text has no augmentation"):
        next(kdlab.data.load("synthetic", context=8).train.batches(4, augment=True))


def test_the_synthetic_truth_is_a_distribution_the_text_follows(synthetic):
    truth = text.truth(synthetic.train)  # (N, L, V)
    torch.testing.assert_close(truth.sum(-1), torch.ones(truth.shape[:2]))
    y, scored = synthetic.train.y, synthetic.train.y != IGNORE
    bits = -torch.log2(truth[scored].gather(1, y[scored][:, None])).mean()
    # The text costs, under the truth, what the truth expects it to cost: its mean entropy...
    assert float(bits) == pytest.approx(float(losses.entropy(truth[scored]).mean()), abs=0.03)
    # ...which, where both previous symbols are seen, is the chain's entropy rate.
    later = scored.clone()
    later[:, 0] = False
    assert float(losses.entropy(truth[later]).mean()) == pytest.approx(synthetic.info["entropy_rate_bits"], abs=0.03)
    with pytest.raises(ParameterError, match="synthetic corpus"):
        text.truth(kdlab.data.load("pydoc", context=8).test)


def _sha(*tensors):
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def test_the_synthetic_corpus_is_unchanged_and_its_chain_solved_once(monkeypatch):
    solved = []
    real = text._stationary_pairs
    monkeypatch.setattr(text, "_stationary_pairs", lambda probs: solved.append(1) or real(probs))
    text.synthetic_language.cache_clear()
    ds = kdlab.data.load("synthetic", context=16)
    truth = text.truth(ds.test)
    text.truth(ds.val)
    assert solved == [1]  # one power iteration for the corpus, its entropy rate and every truth()
    # Values from before the chain was cached: the same text, splits, entropy rate and truth, bit for bit.
    assert _sha(ds.train.x, ds.train.y, ds.val.x, ds.val.y, ds.test.x, ds.test.y) == "85ec2ee20be852e5"
    assert ds.info["sha256"][:16] == "129e8082a6d9a6b7" and ds.info["entropy_rate_bits"] == 2.655602279920833
    assert _sha(truth) == "74b2d6266d338a2d"
    with pytest.raises(ValueError, match="read-only"):
        text.synthetic_language().probs[0, 0, 0] = 1.0  # the shared chain cannot be changed by one caller


# --- the models --------------------------------------------------------------------------------------

def test_models_are_created_by_name_and_the_student_is_about_8x_smaller(pydoc):
    count = kdlab.models.count_params
    teacher = kdlab.models.create("transformer", num_classes=pydoc.num_classes, input_shape=(64,))
    student = kdlab.models.create("transformer", num_classes=pydoc.num_classes, input_shape=(64,), d_model=60,
                                  n_layers=2)
    recurrent = kdlab.models.create("gru", num_classes=pydoc.num_classes, input_shape=(64,))
    assert 6 <= count(teacher) / count(student) <= 9 and count(recurrent) < count(student)
    assert teacher.head.weight is teacher.tok.weight  # tied
    with pytest.raises(ParameterError, match=r"input_shape=\(1, 28, 28\) must be \(context,\)"):
        kdlab.models.create("transformer", num_classes=10, input_shape=(1, 28, 28))
    with pytest.raises(ParameterError, match=r"must be \(channels, height, width\)"):
        kdlab.models.create("cnn", num_classes=10, input_shape=(64,))


def test_a_prediction_never_sees_the_future(small):
    for model in (transformer(small), gru(small)):
        x = torch.randint(0, small.num_classes, (2, 16), generator=torch.Generator().manual_seed(0))
        changed = x.clone()
        changed[:, 9:] = (changed[:, 9:] + 1) % small.num_classes
        with torch.no_grad():
            a, b = model(x), model(changed)
        torch.testing.assert_close(a[:, :9], b[:, :9])
        assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_model_input_errors(small):
    model = transformer(small)
    with pytest.raises(ParameterError, match="reads at most context=16 tokens; got 17"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ParameterError, match="token ids of shape \\(batch, length\\) and dtype int64"):
        model(torch.zeros(1, 16))


@pytest.mark.parametrize("kw, error, match", [
    ({"n_heads": 0}, ParameterError, "n_heads=0 is too small; accepted: an integer >= 1"),
    ({"n_heads": -4}, ParameterError, "n_heads=-4 is too small"),
    ({"d_model": 0}, ParameterError, "d_model=0 is too small"),
    ({"n_layers": 0}, ParameterError, "n_layers=0 is too small"),
    ({"n_heads": True}, ParameterTypeError, "n_heads must be an integer, got True"),
    ({"d_model": 10, "n_heads": 4}, ParameterError, "d_model=10 is not a multiple of n_heads=4; accepted: a multiple"),
])
def test_transformer_sizes_are_checked_first(kw, error, match):
    with pytest.raises(error, match=match):
        kdlab.models.create("transformer", num_classes=5, input_shape=(8,), **{"d_model": 8, **kw})


def test_notebook_12_accepts_only_widths_its_4_heads_divide():
    checked = kdlab.course.check_params("12_language_model_distillation", {"student_width": 60, "teacher_width": 128})
    assert checked == {"student_width": 60, "teacher_width": 128}
    for name in ("student_width", "teacher_width"):
        with pytest.raises(ParameterError, match=f"{name}=10 is not a multiple of 4; accepted: an integer >= 4 that"):
            kdlab.course.check_params("12_language_model_distillation", {name: 10})
    assert kdlab.course.check_value("p", 3, "int>=0") == 3  # a rule without a step takes every integer


@pytest.mark.parametrize("make", [transformer, gru], ids=["transformer", "gru"])
def test_incremental_decoding_gives_the_full_forward_pass(small, make):
    model = make(small).eval()
    x = torch.randint(0, small.num_classes, (3, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        logits, state = model.decode(x[:, :5])  # a prompt in one call, then one token at a time
        steps = [logits]
        for i in range(5, 11):
            logits, state = model.decode(x[:, i:i + 1], state)
            steps.append(logits)
        steps.append(model.decode(x[:, 11:], state)[0])  # several tokens after a cache: the masked path
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("make", [transformer, gru], ids=["transformer", "gru"])
def test_generation_with_the_cache_equals_generation_without_it(small, make):
    model = make(small, seed=2)
    prompt = small.val.x[:4, :3]
    for temperature in (0.0, 1.0, 1.5):
        a = lm.generate(model, prompt, 14, temperature=temperature, generator=torch.Generator().manual_seed(3))
        b = lm.generate(model, prompt, 14, temperature=temperature, generator=torch.Generator().manual_seed(3),
                        use_cache=False)
        assert torch.equal(a, b) and a.shape == (4, 17) and torch.equal(a[:, :3], prompt)
    assert model.training  # generation put it back as it was
    with pytest.raises(ParameterError, match="reads at most context=16"):
        lm.generate(transformer(small), prompt, 15)


def test_a_gru_writes_past_the_context_of_its_data(small):
    model = gru(small, seed=2)
    prompt = small.val.x[:2, :3]
    a = lm.generate(model, prompt, 40, generator=torch.Generator().manual_seed(3))  # 43 > context=16
    b = lm.generate(model, prompt, 40, generator=torch.Generator().manual_seed(3), use_cache=False)
    assert a.shape == (2, 43) and torch.equal(a, b)


def test_sampling_follows_the_temperature():
    logits = torch.tensor([[1.0, 0.0, -1.0]]).repeat(40_000, 1)
    assert torch.equal(lm.sample_next(logits[:2], 0.0), torch.tensor([0, 0]))
    for T in (0.5, 2.0):
        draws = lm.sample_next(logits, T, torch.Generator().manual_seed(0))
        freq = torch.bincount(draws, minlength=3).float() / len(draws)
        torch.testing.assert_close(freq, torch.softmax(logits[0] / T, -1), atol=0.01, rtol=0)
    with pytest.raises(ParameterError, match="temperature=-1.0 is outside"):
        lm.sample_next(logits, -1.0)


# --- training through the one loop ---------------------------------------------------------------------

def _history(model, ds, **kw):
    return kdlab.train.fit(model, ds, epochs=1, lr=1e-2, batch_size=32, progress=False, device="cpu", **kw)


def test_fit_trains_a_language_model_and_validates_per_character(small):
    model = transformer(small)
    first = _history(model, small)
    again = _history(transformer(small), small)
    assert first.records[0]["train_loss"] == again.records[0]["train_loss"]  # the same seed, the same run
    logits = kdlab.inference.predict_logits(model, small.val)  # (N, L, V)
    assert logits.shape == (*small.val.x.shape, small.num_classes)
    scored = small.val.y != IGNORE
    assert first.last["val_loss"] == pytest.approx(float(F.cross_entropy(logits[scored], small.val.y[scored])),
                                                   rel=1e-5)
    assert first.last["val_acc"] == pytest.approx(float((logits[scored].argmax(-1) == small.val.y[scored])
                                                        .float().mean()), rel=1e-5)
    assert first.last["val_loss"] < math.log(small.num_classes)  # it learned something


def test_metrics_evaluate_and_lm_evaluate_agree_on_text(small, lm_teacher):
    model = transformer(small)
    _history(model, small)
    teacher_logits = kdlab.inference.predict_logits(lm_teacher, small.test)
    kit = kdlab.metrics.evaluate(model, small.test, teacher_logits=teacher_logits)
    mine = lm.evaluate(model, small.test, teacher_logits=teacher_logits)
    assert kit["n"] == mine["characters"] == small.test.num_targets
    # One computation: notebook 12's validation bpc (lm.evaluate) and test bpc (metrics' nll) are the same measure.
    assert mine["bpc"] == kit["nll"] / math.log(2)
    assert mine["kl_to_teacher"] == kit["kl_to_teacher"] / math.log(2)
    assert mine["accuracy"] == kit["accuracy"]
    with pytest.raises(kdlab.errors.IncompatibleModelError, match="build it with num_classes=ds.num_classes"):
        lm.evaluate(None, small.test, logits=torch.zeros(*small.test.x.shape, 3))  # 3 logits, 16 characters


def test_the_truth_is_at_zero_kl_from_itself(synthetic):
    truth = text.truth(synthetic.test)
    out = lm.evaluate(None, synthetic.test, logits=truth.log(), truth=truth)
    assert out["kl_to_truth"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("objective", ["forward", "reverse", "on_policy"])
def test_distillation_objectives_train_through_fit_with_a_cached_teacher(small, lm_teacher, objective, monkeypatch):
    calls = []
    real = losses.kd_loss
    monkeypatch.setattr(losses, "kd_loss", lambda *a, **kw: calls.append(a[0].shape) or real(*a, **kw))
    student = transformer(small, seed=3, d_model=16, n_layers=1)
    teacher = Teacher(lm_teacher)
    make = {"forward": lambda: Distillation(teacher, 1.0, 1.0), "reverse": lambda: ReverseKL(teacher),
            "on_policy": lambda: lm.OnPolicy(teacher, student, n_sequences=4, prompt_length=4)}[objective]
    history = _history(student, small, objective=make())
    assert history.config["teacher_logits"] == "cached" and teacher.mode == "cached"
    assert math.isfinite(history.last["train_loss"]) and math.isfinite(history.last["val_loss"])
    if objective == "forward":
        assert calls and all(shape[1:] == (16, small.num_classes) for shape in calls)
    if objective == "on_policy":
        assert history.last["kd_own_text"] > 0 and {(32, 16, 16), (4, 16, 16)} <= set(calls)


def test_the_teacher_cache_serves_the_teachers_logits_for_each_window(small, lm_teacher):
    teacher = Teacher(lm_teacher)
    teacher.prepare(small.train, augment=False, epochs=1, device=torch.device("cpu"), num_classes=small.num_classes)
    batch = next(small.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        torch.testing.assert_close(teacher.logits(batch), lm_teacher(batch.x))


def test_sequence_level_data_is_teacher_text_of_the_same_size(small, lm_teacher):
    written = lm.teacher_text(lm_teacher, small.train, temperature=1.0, prompt_length=4, seed=0)
    assert written.x.shape == small.train.x.shape and written.num_targets == written.x.numel()
    assert torch.equal(written.x[:, :4], small.train.x[:, :4])  # the prompts are real text
    assert torch.equal(written.x[:, 1:], written.y[:, :-1])  # targets are the next characters
    assert torch.equal(written.x, lm.teacher_text(lm_teacher, small.train, prompt_length=4, seed=0).x)
    greedy = lm.teacher_text(lm_teacher, small.train.subset(torch.arange(3)), temperature=0.0, prompt_length=4)
    with torch.no_grad():
        torch.testing.assert_close(lm_teacher(greedy.x)[:, 3:].argmax(-1), greedy.y[:, 3:], rtol=0, atol=0)
    history = _history(transformer(small, d_model=16, n_layers=1), small.with_train(written))
    assert math.isfinite(history.last["val_loss"])
    with pytest.raises(ParameterError, match="prompt_length=16 must be shorter"):
        lm.teacher_text(lm_teacher, small.train, prompt_length=16)
    with pytest.raises(ParameterTypeError, match="TextSplit"):
        lm.teacher_text(lm_teacher, kdlab.data.load("digits").train)


def test_on_policy_writes_new_text_every_refresh_every_steps(small, lm_teacher, monkeypatch):
    writes = []
    real = lm.generate
    monkeypatch.setattr(lm, "generate", lambda *a, **kw: writes.append(a[1].shape) or real(*a, **kw))
    student = transformer(small, d_model=16, n_layers=1)
    objective = lm.OnPolicy(Teacher(lm_teacher), student, n_sequences=2, prompt_length=5, refresh_every=3)
    _history(student, small, objective=objective)
    assert writes == [(2, 5)] * 3  # 8 steps: new text at steps 1, 4 and 7
    assert objective.describe()["refresh_every"] == 3


def test_on_policy_checks_its_arguments(small, lm_teacher):
    with pytest.raises(ParameterTypeError, match="student must be a language model"):
        lm.OnPolicy(lm_teacher, torch.nn.Linear(2, 2))
    with pytest.raises(ParameterError, match="divergence='jsd'"):
        lm.OnPolicy(lm_teacher, transformer(small), divergence="jsd")


def test_the_teacher_is_saved_and_loaded_by_recipe(small, tmp_path):
    kw = dict(d_model=16, n_layers=1, n_heads=2, epochs=1, batch_size=64, device="cpu", progress=False)
    first, meta = lm.load_or_train_teacher(small, tmp_path, **kw)
    again, meta2 = lm.load_or_train_teacher(small, tmp_path, **kw)
    assert not meta["loaded"] and meta2["loaded"] and meta2["records"] == meta["records"]
    x = small.val.x[:2]
    with torch.no_grad():
        torch.testing.assert_close(first(x), again(x))
    assert again.head.weight is again.tok.weight
    other, meta3 = lm.load_or_train_teacher(small, tmp_path, **{**kw, "epochs": 2})
    assert not meta3["loaded"] and meta3["path"] != meta["path"]


def test_a_teacher_a_parallel_run_saved_first_is_the_one_returned(small, tmp_path, monkeypatch):
    kw = dict(d_model=16, n_layers=1, n_heads=2, epochs=1, batch_size=64, device="cpu", progress=False)
    winner = transformer(small, seed=7, d_model=16, n_layers=1).eval()
    real_save = kdlab.checkpoint.save

    def saved_first(model, path, **meta):  # the other run's file lands between our check and our save
        real_save(winner, path, **{**meta, "records": ["the other run's"]})
        return real_save(model, path, **meta)  # raises FileExistsError, as it does then

    monkeypatch.setattr(kdlab.checkpoint, "save", saved_first)
    teacher, meta = lm.load_or_train_teacher(small, tmp_path, **kw)
    assert not meta["loaded"] and meta["records"] == ["the other run's"] and not teacher.training
    x = small.val.x[:2]
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), winner(x))


def test_distinct_ngrams():
    assert lm.distinct_ngrams(["abab"], 2) == pytest.approx(2 / 3)
    assert lm.distinct_ngrams(["abcd", "efgh"], 2) == 1.0
    assert lm.distinct_ngrams(["aaaaaaaa"], 4) == pytest.approx(1 / 5)
