"""kdlab.experiments (the seed loop of notebooks 03-04) and the exercise checks of notebooks 03-04.

Each check is tested with a right answer and with the mistakes it claims to recognise:
the feedback must name the mistake, and an unanswered exercise must not raise.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

import kdlab
from kdlab import checks
from kdlab.experiments import (best, column, compare, fastest, forget_verdicts, gap_closed, intervals_overlap, pareto,
                               run_seeds, summarize, unbacked_verdicts, verdicts_said)


@pytest.fixture(scope="module")
def digits():
    return kdlab.data.load("digits", seed=0)


def make_mlp(ds, hidden=(16,)):
    return lambda seed: kdlab.models.create("mlp", num_classes=ds.num_classes, input_shape=ds.input_shape,
                                            hidden=hidden, seed=seed)


# --- run_seeds ---------------------------------------------------------------------------

def test_run_seeds_gives_one_row_per_seed_with_test_metrics(digits):
    built = []

    def make(seed):
        built.append(seed)
        return make_mlp(digits)(seed)

    rows = run_seeds(make, digits, [3, 5], label="scratch", epochs=1, batch_size=256)
    assert built == [3, 5]
    assert [r["seed"] for r in rows] == [3, 5] and {r["label"] for r in rows} == {"scratch"}
    for r in rows:
        assert {"accuracy", "f1_macro", "nll", "ece", "n", "train_seconds", "final_val_acc"} <= set(r)
        assert r["n"] == len(digits.test) and 0.0 <= r["accuracy"] <= 1.0 and r["train_seconds"] > 0
        assert "agreement" not in r and "model" not in r  # no teacher given, models not kept
    assert rows[0]["accuracy"] != rows[1]["accuracy"] or rows[0]["nll"] != rows[1]["nll"]


def test_run_seeds_is_reproducible_and_forwards_fit_arguments(digits):
    a = run_seeds(make_mlp(digits), digits, [0], epochs=1, batch_size=256, keep_models=True)
    b = run_seeds(make_mlp(digits), digits, [0], epochs=1, batch_size=256, keep_models=True)
    assert a[0]["accuracy"] == b[0]["accuracy"] and a[0]["nll"] == pytest.approx(b[0]["nll"])
    # A different learning rate (forwarded to fit) gives a different model from the same seed.
    c = run_seeds(make_mlp(digits), digits, [0], epochs=1, batch_size=256, lr=1e-5, keep_models=True)
    wa, wc = (next(r["model"].parameters()).detach() for r in (a[0], c[0]))
    assert not torch.allclose(wa, wc)
    # keep_models returns the trained model itself: evaluating it again gives the row's accuracy.
    assert kdlab.metrics.evaluate(a[0]["model"], digits.test)["accuracy"] == a[0]["accuracy"]


def test_run_seeds_builds_a_fresh_objective_per_seed_and_keeps_the_history(digits):
    made = []

    def make_objective(model, seed):
        made.append((model, seed, kdlab.objectives.CrossEntropy(label_smoothing=0.1)))
        return made[-1][2]

    rows = run_seeds(make_mlp(digits), digits, [0, 1], make_objective=make_objective, keep_history=True,
                     keep_models=True, epochs=2, batch_size=256)
    assert [seed for _, seed, _ in made] == [0, 1]
    assert made[0][2] is not made[1][2]
    assert all(row["model"] is model for row, (model, _, _) in zip(rows, made))
    for row in rows:
        assert [r["epoch"] for r in row["records"]] == [1, 2]
        assert row["train_acc"] == row["records"][-1]["train_acc"]
        assert row["final_val_acc"] == row["records"][-1]["val_acc"]
    assert rows[0]["records"] is not rows[1]["records"]
    with pytest.raises(kdlab.errors.ParameterError, match="make_objective"):
        run_seeds(make_mlp(digits), digits, [0], make_objective=make_objective,
                  objective=kdlab.objectives.CrossEntropy(), epochs=1)


class _NaNFromEpoch2(kdlab.objectives.CrossEntropy):
    def __init__(self, steps_per_epoch):
        super().__init__()
        self.calls, self.steps = 0, steps_per_epoch

    def forward(self, student_logits, batch):
        self.calls += 1
        loss, logs = super().forward(student_logits, batch)
        return (loss * float("nan") if self.calls > self.steps else loss), logs


def test_run_seeds_can_record_diverged_runs_instead_of_raising(digits):
    make_objective = lambda model, seed: _NaNFromEpoch2(math.ceil(len(digits.train) / 512)) if seed == 1 else None
    with pytest.raises(kdlab.errors.NonFiniteLossError):
        run_seeds(make_mlp(digits), digits, [0, 1], make_objective=make_objective, epochs=2, batch_size=512)
    rows = run_seeds(make_mlp(digits), digits, [0, 1], make_objective=make_objective, on_diverge="record",
                     keep_history=True, epochs=2, batch_size=512)
    assert rows[0]["diverged"] is None and len(rows[0]["records"]) == 2
    assert "non-finite" in rows[1]["diverged"] and len(rows[1]["records"]) == 1
    assert math.isfinite(rows[1]["accuracy"])  # measured on the last good weights fit restored
    with pytest.raises(kdlab.errors.ParameterError, match="on_diverge"):
        run_seeds(make_mlp(digits), digits, [0], on_diverge="ignore", epochs=1)


def test_run_seeds_with_a_teacher_distils_and_reports_fidelity(digits):
    teacher = make_mlp(digits, hidden=(64,))(7)
    kdlab.train.fit(teacher, digits, epochs=2, batch_size=128, progress=False)
    teacher.eval()
    kd = run_seeds(make_mlp(digits), digits, [0], teacher=teacher, temperature=4.0, alpha=1.0, epochs=1,
                   batch_size=256)
    plain = run_seeds(make_mlp(digits), digits, [0], evaluate_with_teacher=teacher, epochs=1, batch_size=256)
    for row in kd + plain:
        assert 0.0 <= row["agreement"] <= 1.0 and row["kl_to_teacher"] >= 0.0
    # evaluate_with_teacher measures fidelity without distilling; teacher= distils (a different student).
    assert kd[0]["nll"] != plain[0]["nll"]
    with pytest.raises(kdlab.errors.ParameterError, match="temperature= is only used with teacher="):
        run_seeds(make_mlp(digits), digits, [0], temperature=2.0, epochs=1)


@pytest.fixture(scope="module")
def teacher(digits):
    model = make_mlp(digits, hidden=(64,))(7)
    kdlab.train.fit(model, digits, epochs=2, batch_size=128, progress=False)
    return model.eval()


def _count_teacher_passes(monkeypatch, teacher):
    """Count kdlab.inference.predict_logits calls that run ``teacher`` on the training split."""
    real, calls = kdlab.inference.predict_logits, []

    def spy(model, split, **kwargs):
        if model is teacher and split.name == "train":
            calls.append(len(split))
        return real(model, split, **kwargs)

    monkeypatch.setattr(kdlab.inference, "predict_logits", spy)
    return calls


def test_run_seeds_with_a_teacher_computes_its_logits_once_for_all_seeds(digits, teacher, monkeypatch):
    calls = _count_teacher_passes(monkeypatch, teacher)
    rows = run_seeds(make_mlp(digits), digits, [0, 1, 2], teacher=teacher, temperature=2.0, alpha=0.5, epochs=1,
                     batch_size=256, keep_history=True)
    assert calls == [len(digits.train)]
    assert len(rows) == 3 and all("kd" in row["records"][0] for row in rows)


def test_run_seeds_shares_one_objective_and_takes_precomputed_logits_through_it(digits, teacher, monkeypatch):
    logits = kdlab.inference.predict_logits(teacher, digits.train)
    calls = _count_teacher_passes(monkeypatch, teacher)
    shared = kdlab.objectives.Distillation(kdlab.teacher.Teacher(teacher, logits=logits), 4.0, 0.9)
    given = run_seeds(make_mlp(digits), digits, [0, 1], objective=shared, evaluate_with_teacher=teacher, epochs=1,
                      batch_size=256)
    assert calls == []  # the given logits are used; the teacher never runs on the training split
    cached = run_seeds(make_mlp(digits), digits, [0, 1], teacher=teacher, temperature=4.0, alpha=0.9, epochs=1,
                       batch_size=256)
    for a, b in zip(given, cached):
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-5) and a["agreement"] == b["agreement"]
    with pytest.raises(TypeError, match="teacher_logits"):  # removed: pass objective=Distillation(Teacher(...))
        run_seeds(make_mlp(digits), digits, [0], teacher=teacher, teacher_logits=logits, epochs=1)


# --- tidying -----------------------------------------------------------------------------

ROWS = [{"label": "a", "T": 1, "accuracy": 0.90}, {"label": "a", "T": 1, "accuracy": 0.92},
        {"label": "b", "T": 4, "accuracy": 0.95}, {"label": "a", "T": 4, "accuracy": 0.80},
        {"label": "b", "T": 4, "accuracy": 0.97}, {"label": "b", "T": 4, "accuracy": 0.96}]


def test_column_filters_by_fields():
    assert column(ROWS, "accuracy", label="a") == [0.90, 0.92, 0.80]
    assert column(ROWS, "accuracy", label="a", T=1) == [0.90, 0.92]
    assert column(ROWS, "accuracy", label="c") == []


def test_summarize_groups_in_first_seen_order_with_mean_ci_and_n():
    table = summarize(ROWS, by=["label", "T"], metric="accuracy")
    assert [(r["label"], r["T"], r["n"]) for r in table] == [("a", 1, 2), ("b", 4, 3), ("a", 4, 1)]
    mean, half = kdlab.metrics.mean_ci([0.95, 0.97, 0.96])
    assert table[1]["mean"] == pytest.approx(0.96) and table[1]["ci95"] == pytest.approx(half)
    assert mean == pytest.approx(0.96)
    # t-interval with 2 degrees of freedom: 4.303 * sd / sqrt(3), sd = 0.01.
    assert table[1]["ci95"] == pytest.approx(4.303 * 0.01 / math.sqrt(3), rel=1e-3)
    assert table[1]["metric"] == "accuracy"
    assert math.isnan(table[2]["ci95"])  # one run: no spread to estimate
    assert [r["label"] for r in summarize(ROWS, by=["label"])] == ["a", "b"]


def test_intervals_overlap():
    assert not intervals_overlap([0.90, 0.91, 0.90], [0.95, 0.96, 0.95])
    assert not intervals_overlap([0.95, 0.96, 0.95], [0.90, 0.91, 0.90])  # symmetric
    assert intervals_overlap([0.90, 0.95, 0.92], [0.93, 0.94, 0.96])
    assert intervals_overlap([0.90, 0.95, 0.92], [0.90, 0.95, 0.92])
    # One run has no interval: never a significant difference.
    assert intervals_overlap([0.90], [0.99, 0.99, 0.98]) and intervals_overlap([0.90], [0.99])


# --- verdicts ----------------------------------------------------------------------------

# Notebook 04's tiny student (audit of issue 21): the separate intervals overlap, yet distillation is lower
# in every seed, so the paired verdict is "lower" while an unpaired one cannot tell.
TINY_KD = [0.9500, 0.9620, 0.9550, 0.9680, 0.9580]
TINY_SCRATCH = [0.9540, 0.9650, 0.9595, 0.9715, 0.9625]


def test_compare_paired_finds_what_overlapping_intervals_hide():
    from scipy import stats

    paired = compare(TINY_KD, TINY_SCRATCH, paired=True, names=("distilled", "scratch"), scale=100, unit=" pp")
    assert paired.word == "lower" and paired.outcome == "worse" and paired.worse and paired.differs
    assert paired.p_value == pytest.approx(stats.ttest_rel(TINY_KD, TINY_SCRATCH).pvalue)
    d, half = kdlab.metrics.paired_ci([100 * x for x in TINY_KD], [100 * x for x in TINY_SCRATCH])
    assert paired.difference == pytest.approx(d) and paired.ci95 == pytest.approx(half)
    assert paired.phrase == "distilled is lower than scratch (worse)" and paired.phrase in str(paired)
    assert "paired 95% CI over 5 seeds" in paired.sentence
    unpaired = compare(TINY_KD, TINY_SCRATCH, paired=False, names=("distilled", "scratch"))
    assert intervals_overlap(TINY_KD, TINY_SCRATCH) and unpaired.word == "tie" and not unpaired.differs
    assert unpaired.p_value == pytest.approx(stats.ttest_ind(TINY_KD, TINY_SCRATCH, equal_var=False).pvalue)
    assert unpaired.phrase == "distilled and scratch tie" and "within the spread over the runs" in unpaired.reason


def test_compare_words_and_outcomes():
    up = [0.98, 0.975, 0.982, 0.979]
    down = [0.95, 0.951, 0.949, 0.953]
    assert compare(up, down, paired=True).word == "higher"
    assert compare(down, up, paired=True).word == "lower"
    loss = compare(down, up, paired=True, higher_is_better=False)
    assert (loss.word, loss.outcome) == ("lower", "better") and loss.better
    assert compare(up, down, paired=True, higher_is_better=False).outcome == "worse"
    noisy = compare([0.95, 0.97, 0.96], [0.955, 0.95, 0.97], paired=True)
    assert noisy.word == noisy.outcome == "tie" and not math.isnan(noisy.p_value)
    # a single value on one side is a fixed reference: a one-sample test of the other side
    ref = compare(down, 0.99, paired=False, names=("student", "teacher"))
    assert ref.word == "lower" and "against a single value" in ref.sentence and 0 <= ref.p_value < 0.05


def test_compare_never_ranks_float_noise_or_a_single_run():
    same = compare([0.97033336], [0.97033334], paired=True)
    assert same.word == "tie" and "float noise" in same.reason and math.isnan(same.p_value)
    same = compare([0.97033336] * 3, [0.97033334] * 3, paired=True)
    assert same.word == "tie" and "float noise" in same.reason
    one = compare([0.98], [0.95], paired=True)
    assert one.word == "tie" and "cannot tell" in one.reason and math.isnan(one.ci95)
    assert compare(0.98, 0.95, paired=False).word == "tie"
    # with a tolerance, single values beyond it are ranked, and differences within it are ties
    assert compare(0.98, 0.95, paired=False, tolerance=0.01).word == "higher"
    assert compare(0.98, 0.975, paired=False, tolerance=0.01).word == "tie"
    assert compare(1.05, 1.0, paired=False, rel_tolerance=0.10).word == "tie"
    # identical differences in every seed: a zero-width interval, still a direction
    exact = compare([3.0, 4.0, 5.0], [1.0, 2.0, 3.0], paired=True)
    assert exact.word == "higher" and exact.ci95 == 0 and exact.p_value == 0


def test_compare_ratio_for_timings_and_measures_without_a_better_side():
    # Timing noise is multiplicative: a 500x gap with one slow round is still clear on a log scale.
    teacher_ms = [50.0, 400.0, 55.0, 52.0, 58.0]
    student_ms = [0.10, 0.30, 0.11, 0.10, 0.12]
    additive = compare(student_ms, teacher_ms, paired=True, higher_is_better=False)
    assert additive.word == "tie"  # the slow round swamps a difference of means
    timed = compare(student_ms, teacher_ms, paired=True, higher_is_better=False, ratio=True, over="rounds",
                    names=("student", "teacher"), rel_tolerance=0.1)
    assert (timed.word, timed.outcome) == ("lower", "better") and timed.low < timed.difference < timed.high < 0.01
    assert "student / teacher: ×" in timed.sentence and "paired 95% CI over 5 rounds" in timed.sentence
    assert compare([1.05, 1.04], [1.0, 1.0], paired=True, ratio=True, rel_tolerance=0.1).word == "tie"
    with pytest.raises(kdlab.errors.ParameterError, match="positive"):
        compare([0.0, 1.0], [1.0, 1.0], paired=True, ratio=True)
    neutral = compare([0.30, 0.31, 0.29], [0.65, 0.60, 0.70], paired=True, higher_is_better=None,
                      names=("distilled", "hard labels"))
    assert neutral.word == neutral.outcome == "lower" and neutral.phrase == "distilled is lower than hard labels"


def test_latencies_take_turns_and_feed_fastest():
    small = torch.nn.Linear(8, 2)
    big = torch.nn.Sequential(torch.nn.Linear(8, 2048), torch.nn.Linear(2048, 2))
    times = kdlab.experiments.latencies({"small": small, "big": big}, (8,), rounds=3, batch_size=64, repeats=3)
    assert set(times) == {"small", "big"} and all(len(t) == 3 and min(t) > 0 for t in times.values())
    lead = fastest(times, paired=True)
    assert "small" in lead.names and "paired 95% CI over 3 rounds" in lead.comparisons[0].sentence


def test_compare_rejects_bad_input_naming_it():
    with pytest.raises(kdlab.errors.ParameterError, match="paired=True needs one value per seed"):
        compare([1.0, 2.0], [1.0], paired=True)
    with pytest.raises(kdlab.errors.ParameterError, match="non-finite"):
        compare([1.0, float("nan")], [1.0, 2.0], paired=False)
    with pytest.raises(kdlab.errors.ParameterError, match="empty"):
        compare([], [1.0], paired=False)
    with pytest.raises(TypeError, match="names"):
        compare([1.0], [1.0], paired=False, names=("only one",))
    with pytest.raises(TypeError, match="number or a list"):
        compare("0.9", [1.0], paired=False)
    with pytest.raises(TypeError):
        compare([1.0], [1.0])  # paired is required: the choice changes the answer
    with pytest.raises(kdlab.errors.ParameterError, match="tolerance"):
        compare([1.0], [1.0], paired=False, tolerance=-1.0)


def test_best_shares_the_lead_among_ties():
    kl = {"KD": [0.141, 0.139, 0.143, 0.140], "KD + adversarial": [0.140, 0.138, 0.144, 0.139],
          "scratch": [0.30, 0.31, 0.29, 0.305]}
    lead = best(kl, paired=True, higher_is_better=False, what="closest to the teacher")
    assert lead.names == ("KD", "KD + adversarial") and "scratch" not in lead
    assert lead.phrase == "closest to the teacher: KD and KD + adversarial" and "tied" in lead.sentence
    alone = best({"a": [0.9, 0.91, 0.92], "b": [0.5, 0.51, 0.52]}, paired=False, what="most accurate")
    assert alone.names == ("a",) and alone.phrase == "most accurate: a"


def test_fastest_names_every_model_within_timing_noise():
    times = {"teacher": 2.0e-3, "large": 0.40e-3, "tiny": 0.38e-3, "int8": 0.60e-3}
    lead = fastest(times)
    assert lead.names == ("large", "tiny") and lead.phrase == "fastest: large and tiny"
    assert fastest(times, rel_tolerance=0.01).names == ("tiny",)
    # repeated measurements: a difference within their spread is a tie too
    assert fastest({"a": [1.0, 1.5, 0.8], "b": [0.7, 1.4, 1.0]}, rel_tolerance=0.0).names == ("a", "b")


def test_pareto_never_splits_on_float_noise():
    points = {"a": (10, 0.97033336), "b": (10, 0.97033334), "c": (20, 0.96), "d": (30, 0.99)}
    front = pareto(points, cost="size", value="accuracy")
    assert front.names == ("a", "b", "d") and "dominated: c" in front.sentence
    # a tolerance on one axis: d is not more accurate than a by more than 0.05, and it costs more
    assert pareto(points, value_tolerance=0.05).names == ("a", "b")
    exact = [(10, 0.97033336), (10, 0.97033334), (20, 0.96)]
    assert kdlab.compress.pareto_front(exact) == exact[:2]
    with pytest.raises(kdlab.errors.ParameterError, match="cost_tolerance"):
        kdlab.compress.pareto_front(exact, cost_tolerance=-1)


def test_the_verdict_register_and_the_check_for_hand_written_verdicts():
    forget_verdicts()
    assert verdicts_said() == []
    c = compare([0.98, 0.975, 0.982], [0.95, 0.951, 0.949], paired=True, names=("distilled", "scratch"))
    said = verdicts_said()
    assert said == [c.sentence, c.phrase]
    printed = "\n".join([str(c), f"accuracy {0.98:.2%}: {c.phrase}", "teacher 98.5% accuracy, 2.1 ms",
                         "distilled is better than scratch", f"{c.phrase}; KD hurt the tiny student",
                         "the two are tied", "int8 is faster than float32", "fastest: int8"])
    assert unbacked_verdicts(printed, said) == ["distilled is better than scratch",
                                                f"{c.phrase}; KD hurt the tiny student", "the two are tied",
                                                "int8 is faster than float32", "fastest: int8"]
    assert unbacked_verdicts(printed, said + [str(fastest({"int8": 1.0, "fp32": 2.0}))])[-1] == "fastest: int8"
    forget_verdicts()
    assert verdicts_said() == []


def test_gap_closed():
    assert gap_closed(0.97, 0.95, 0.99) == pytest.approx(0.5)
    assert gap_closed(0.95, 0.95, 0.99) == 0.0
    assert gap_closed(0.99, 0.95, 0.99) == pytest.approx(1.0)
    assert gap_closed(0.94, 0.95, 0.99) < 0  # distillation hurt
    assert math.isnan(gap_closed(0.97, 0.98, 0.98))  # no gap to close
    # Hinton et al. on MNIST: 146 -> 74 errors against a 67-error teacher (of 10,000).
    assert gap_closed(1 - 74e-4, 1 - 146e-4, 1 - 67e-4) == pytest.approx(72 / 79)


# --- notebook 03 checks ----------------------------------------------------------------------

def right_kd_loss(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T * T


WRONG_KD = {
    "T² factor is missing": lambda s, t, T: F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean"),
    "wrong way": lambda s, t, T: right_kd_loss(t, s, T),  # student and teacher swapped
    "log-probabilities": lambda s, t, T: F.kl_div(F.softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T,
    "batchmean": lambda s, t, T: F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="mean") * T * T,
    "before the softmax": lambda s, t, T: right_kd_loss(s * T, t * T, T),  # no division by T
    "multiplied by T, not T²": lambda s, t, T: F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
                                                        reduction="batchmean") * T,
}


def test_check_kd_loss_accepts_a_right_answer(capsys):
    fb = checks.check_kd_loss(right_kd_loss)
    assert fb and fb.done and "Correct" in fb.message
    assert "Correct" in capsys.readouterr().out  # the learner sees the feedback printed


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # torch warns about that mistake too
@pytest.mark.parametrize("mistake", list(WRONG_KD))
def test_check_kd_loss_names_the_mistake(mistake):
    fb = checks.check_kd_loss(WRONG_KD[mistake])
    assert not fb and fb.done
    assert mistake in fb.message, fb.message


def test_check_kd_loss_other_mistakes():
    per_example = checks.check_kd_loss(lambda s, t, T: (F.softmax(t / T, 1) * (F.log_softmax(t / T, 1)
                                                                             - F.log_softmax(s / T, 1))).sum(1) * T * T)
    assert not per_example and "one number" in per_example.message
    constant = checks.check_kd_loss(lambda s, t, T: torch.tensor(1.0))
    assert not constant and "Expected" in constant.message and "got 1.0000" in constant.message
    expected = kdlab.losses.kd_loss(*_kd_test_batch())
    cheat = checks.check_kd_loss(lambda s, t, T: expected.clone())  # right number on the test batch only
    assert not cheat and "should be 0" in cheat.message


def _kd_test_batch():
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(16, 10, generator=gen) * 2
    t = torch.randn(16, 10, generator=gen) * 4
    return s, t, 3.0


def _raises_not_implemented(*args):
    raise NotImplementedError


def _raises_value_error(*args):
    raise ValueError("shapes do not match")


@pytest.mark.parametrize("check", [checks.check_kd_loss, checks.check_distillation_loss, checks.check_gap_closed,
                                   checks.check_ece])
def test_unanswered_exercises_say_not_done_and_do_not_raise(check):
    for answer in (None, _raises_not_implemented):
        fb = check(answer)
        assert not fb and not fb.done and "Not done yet" in fb.message
    fb = check(_raises_value_error)
    assert not fb and fb.done and "ValueError" in fb.message and "shapes do not match" in fb.message


def right_distillation_loss(s, t, y, T, alpha):
    return alpha * kdlab.losses.kd_loss(s, t, T) + (1 - alpha) * F.cross_entropy(s, y)


def test_check_distillation_loss_right_and_wrong():
    assert checks.check_distillation_loss(right_distillation_loss)
    assert checks.check_distillation_loss(lambda s, t, y, T, a: kdlab.losses.distillation_loss(s, t, y, T, a))
    wrong = {
        "alpha is on the hard term": lambda s, t, y, T, a: right_distillation_loss(s, t, y, T, 1 - a),
        "lacks T²": lambda s, t, y, T, a: a * kdlab.losses.kd_loss(s, t, T) / T**2 + (1 - a) * F.cross_entropy(s, y),
        "without weights": lambda s, t, y, T, a: kdlab.losses.kd_loss(s, t, T) + F.cross_entropy(s, y),
        "T = 1": lambda s, t, y, T, a: a * kdlab.losses.kd_loss(s, t, T) + (1 - a) * F.cross_entropy(s / T, y),
        "Expected": lambda s, t, y, T, a: F.cross_entropy(s, y),
    }
    for mistake, fn in wrong.items():
        fb = checks.check_distillation_loss(fn)
        assert not fb and mistake in fb.message, (mistake, fb.message)


# --- notebook 04 checks ----------------------------------------------------------------------

def test_check_gap_closed_right_and_wrong():
    assert checks.check_gap_closed(lambda st, sc, te: (st - sc) / (te - sc))
    wrong = {
        "percentage": lambda st, sc, te: 100 * (st - sc) / (te - sc),
        "gain in accuracy": lambda st, sc, te: st - sc,
        "not by the teacher's accuracy": lambda st, sc, te: (st - sc) / te,
        "Check the order": lambda st, sc, te: (sc - st) / (te - sc),
        "closes 0% of the gap": lambda st, sc, te: 0.5,
        "the answer is 0.5": lambda st, sc, te: st,
    }
    for mistake, fn in wrong.items():
        fb = checks.check_gap_closed(fn)
        assert not fb and mistake in fb.message, (mistake, fb.message)


def my_ece(probs, targets, n_bins=15):
    """An ECE written independently of kdlab.metrics.reliability, as a learner would."""
    conf, pred = probs.max(1)
    correct = (pred == targets).float()
    total = torch.zeros(())
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            total += mask.float().mean() * (correct[mask].mean() - conf[mask].mean()).abs()
    return total.item()


def test_check_ece_right_and_wrong():
    assert checks.check_ece(my_ece)
    one_bin = checks.check_ece(lambda p, y: my_ece(p, y, n_bins=1))
    assert not one_bin and "one bin" in one_bin.message
    percent = checks.check_ece(lambda p, y: 100 * my_ece(p, y))
    assert not percent and "percentage" in percent.message
    coarse = checks.check_ece(lambda p, y: my_ece(p, y, n_bins=5))
    assert not coarse and "Expected" in coarse.message and "bins" in coarse.message


def test_a_notebook_run_records_the_verdicts_it_printed(monkeypatch, tmp_path, capsys):
    """lab.start starts a fresh list; run.record writes it to metrics.json, where the smoke test reads it."""
    import json

    monkeypatch.delenv("KDLAB_SMOKE", raising=False)
    monkeypatch.setenv("KDLAB_RUNS", str(tmp_path))
    compare([1.0, 2.0], [3.0, 4.0], paired=True, names=("before", "start"))  # said before the run: not recorded
    namespace = dict(kdlab.lab.notebook_defaults("03_temperature"))
    run = kdlab.lab.start(namespace, "03_temperature")
    said = compare([0.98, 0.975, 0.982], [0.95, 0.951, 0.949], paired=True, names=("distilled", "scratch"))
    run.record(best_alpha=0.9, best_T=4.0, best_test_accuracy=0.97)
    saved = json.loads((run.out / "metrics.json").read_text())
    assert saved["verdicts"] == [said.sentence, said.phrase]
    out = capsys.readouterr().out
    minutes = kdlab.course.lesson("03").minutes
    assert "This run took" in out and f"the course quotes about {minutes:g} min" in out
    with pytest.raises(kdlab.errors.ParameterError, match="reserved"):
        run.record(verdicts=["distilled wins"])


# --- which way a metric is better, from its name -----------------------------------------------

@pytest.mark.parametrize("metric, better", [
    # higher is better: accuracies, agreement, F1, gap closed, accuracy gains (pp), speed-ups, compression
    ("accuracy", True), ("distilled_accuracy", True), ("final_val_acc", True), ("agreement", True),
    ("f1_macro", True), ("gap_closed", True), ("tiny_gap_closed", True), ("gain_pp", True),
    ("int8_delta_pp", True), ("int8_size_ratio", True), ("int8_speedup", True),
    # lower is better: losses, divergences, calibration, errors, times, sizes, and their changes
    ("nll", False), ("nll_change", False), ("ece", False), ("kl_to_teacher", False), ("kl_change", False),
    ("train_mode_kl", False), ("train_loss", False), ("teacher_bpc", False), ("forward_kl_bpc", False),
    ("error_count", False), ("train_seconds", False), ("latency_ms", False), ("size_bytes", False),
    ("size_gzip", False), ("pruned_plain_size_ratio", False), ("pitfalls.kl_direction.nll.mean", False),
    # no better side: a CI's half-width, entropies, counts, parameters
    ("gain_ci_pp", None), ("kl_change_ci", None), ("best_test_ci95", None), ("pitfalls.x.nll.ci95", None),
    ("entropy_T1", None), ("n_params", None), ("seed", None), ("best_T", None),
])
def test_higher_is_better_for_reads_the_end_of_the_metric_name(metric, better):
    assert kdlab.experiments.higher_is_better_for(metric) is better


def test_higher_is_better_for_refuses_a_name_that_is_not_a_string():
    with pytest.raises(kdlab.errors.ParameterTypeError, match="metric must be"):
        kdlab.experiments.higher_is_better_for(3)


# --- one implementation of each statistic ---------------------------------------------------------

def test_compare_paired_takes_its_interval_from_metrics_paired_ci(monkeypatch):
    calls = []
    real = kdlab.metrics.paired_ci
    monkeypatch.setattr(kdlab.metrics, "paired_ci", lambda *a, **k: calls.append(a) or real(*a, **k))
    a, b = [0.98, 0.975, 0.982], [0.95, 0.951, 0.949]
    c = compare(a, b, paired=True, scale=100)
    assert len(calls) == 1
    mean, half = real(a, b)
    assert (c.difference, c.ci95) == pytest.approx((100 * mean, 100 * half))
    assert c.p_value == pytest.approx(float(stats.ttest_rel(a, b).pvalue))  # the paired t test's p
    assert compare([1.0, 2.0], [0.5, 1.5], paired=True).p_value == 0.0  # the same difference every seed


def test_gap_closed_checks_its_inputs_as_compare_does():
    with pytest.raises(kdlab.errors.ParameterTypeError, match="scratch=True must be a number or a list"):
        gap_closed(0.97, True, 0.99)  # a bool is not an accuracy
    with pytest.raises(kdlab.errors.ParameterTypeError, match="scratch='0.95'"):
        gap_closed(0.97, "0.95", 0.99)
    with pytest.raises(kdlab.errors.ParameterError, match="scratch=\\[nan\\] holds a non-finite value"):
        gap_closed(0.97, float("nan"), 0.99)
    with pytest.raises(kdlab.errors.ParameterTypeError, match="student"):
        gap_closed("0.97", 0.95, 0.99)
    assert gap_closed(np.float32(0.97), torch.tensor(0.95), 0.99) == pytest.approx(0.5, rel=1e-5)  # 0-d scalars


# --- metrics.evaluate names the shape it wants ------------------------------------------------------

def test_evaluate_on_text_names_the_logits_shape_of_text():
    from kdlab.text import TextSplit

    split = TextSplit(x=torch.zeros(4, 8, dtype=torch.long), y=torch.zeros(4, 8, dtype=torch.long), vocab=("a", "b"))
    with pytest.raises(kdlab.errors.ParameterError, match=r"it must be \(examples, length, vocabulary\)"):
        kdlab.metrics.evaluate(torch.nn.Linear(2, 2), split, logits=torch.zeros(4, 2))
