"""Run one training configuration over several seeds, and summarise the results.

Every comparison in the notebooks is "this configuration against that one, over
seeds", so the loop lives here once:

    rows = run_seeds(lambda seed: models.create("mlp", ..., seed=seed), ds, seeds=range(5),
                     label="distilled", teacher=teacher, temperature=4.0, epochs=30)
    rows += run_seeds(make, ds, range(5), label="hard labels", objective=TeacherHardLabels(teacher))
    table = summarize(rows, by=["label"], metric="accuracy")   # mean ± 95% CI per label

and every verdict a notebook prints comes from one family of helpers here:

    c = compare(distilled, scratch, paired=True, names=("distilled", "scratch"), scale=100, unit=" pp")
    print(c)           # distilled − scratch: +0.68 ± 0.30 pp (paired 95% CI over 5 seeds, p = 0.004): ...
    c.word             # "higher", "lower" or "tie": the word the statistics allow
    best({...}, paired=True, higher_is_better=False, what="closest to the teacher")
    fastest({"teacher": 1.9e-3, "student": 0.4e-3})   # every model within timing noise of the fastest
    pareto({"int8": (size, acc), ...}, cost="size", value="accuracy")
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from . import inference, metrics, train, validate
from .data import Dataset
from .errors import NonFiniteLossError, ParameterError, ParameterTypeError
from .objectives import Distillation, Objective


def run_seeds(make_model: Callable[[int], nn.Module], ds: Dataset, seeds: Iterable[int], *, label: str = "",
              teacher: nn.Module | None = None, make_objective: Callable[[nn.Module, int], Objective] | None = None,
              evaluate_with_teacher: nn.Module | None = None, keep_models: bool = False, keep_history: bool = False,
              on_diverge: str = "raise", **fit_kwargs) -> list[dict]:
    """Train ``make_model(seed)`` with ``fit(..., seed=seed, **fit_kwargs)`` for each seed and
    return one row per seed: ``label``, ``seed``, the test metrics of
    :func:`kdlab.metrics.evaluate` (fidelity too when a teacher is known) and ``train_seconds``.

    What each run minimises: ``objective=`` (in ``fit_kwargs``, one objective for every
    seed), or ``make_objective(model, seed)`` (a fresh one per run, for objectives with
    state of their own, such as a discriminator), or, with ``teacher=``,
    ``Distillation(teacher, temperature, alpha)`` built once, so the teacher's logits are
    computed once for all seeds; else cross-entropy.

    Args:
        teacher: the distillation teacher when no objective is given, and the reference
            for the fidelity metrics (agreement and KL with the teacher).
        evaluate_with_teacher: the fidelity reference when it is not ``teacher``.
        keep_models: each row also holds its trained ``model``.
        keep_history: each row also holds the run's per-epoch ``records`` and ``train_acc``.
        on_diverge: ``"raise"`` (default) lets fit's :class:`~kdlab.errors.NonFiniteLossError`
            through; ``"record"`` keeps going: the row gets ``diverged`` (the error's message;
            ``None`` for runs that did not) and the metrics of the last good weights, which
            fit restored.
    """
    validate.choice("on_diverge", on_diverge, ("raise", "record"))
    shared = fit_kwargs.pop("objective", None)
    if shared is not None and make_objective is not None:
        raise ParameterError("pass either objective= (one objective for every seed) or make_objective=, not both.")
    if teacher is not None and shared is None and make_objective is None:
        shared = Distillation(teacher, fit_kwargs.pop("temperature", 4.0), fit_kwargs.pop("alpha", 0.9))
    for name in ("temperature", "alpha"):
        if name in fit_kwargs:
            raise ParameterError(f"{name}= is only used with teacher= and no objective; set it on the objective.")
    reference = evaluate_with_teacher if evaluate_with_teacher is not None else teacher
    # The reference's test logits are the same for every seed: computed once, not once a run.
    reference_logits = inference.predict_logits(reference, ds.test) if reference is not None else None
    rows = []
    for seed in seeds:
        model = make_model(seed)
        objective = make_objective(model, seed) if make_objective is not None else shared
        diverged = None
        t0 = time.perf_counter()
        try:
            history = train.fit(model, ds, objective=objective, seed=seed, **{"progress": False, **fit_kwargs})
        except NonFiniteLossError as err:  # fit restored the last good weights before raising
            if on_diverge == "raise":
                raise
            diverged, history = str(err), err.history
        seconds = time.perf_counter() - t0
        records = history.records
        row = {"label": label, "seed": seed, **metrics.evaluate(model, ds.test, teacher_logits=reference_logits),
               "train_seconds": seconds, "final_val_acc": records[-1].get("val_acc") if records else None}
        if on_diverge == "record":
            row["diverged"] = diverged
        if keep_history:
            row["records"] = records
            row["train_acc"] = records[-1]["train_acc"] if records else None
        if keep_models:
            row["model"] = model
        rows.append(row)
    return rows


def column(rows: Sequence[dict], key: str, **where) -> list:
    """Values of ``key`` in the rows whose fields equal ``where`` (e.g. ``label="scratch"``)."""
    return [r[key] for r in rows if all(r.get(k) == v for k, v in where.items())]


def summarize(rows: Sequence[dict], by: Sequence[str], metric: str = "accuracy") -> list[dict]:
    """Group rows by the fields ``by`` and give ``mean``, ``ci95`` (half-width) and ``n``
    of ``metric`` per group, in first-seen order."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r[metric])
    out = []
    for key, values in groups.items():
        mean, half = metrics.mean_ci(values)
        out.append({**dict(zip(by, key)), "metric": metric, "mean": mean, "ci95": half, "n": len(values)})
    return out


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the 95% CIs of the means of ``a`` and ``b`` overlap.

    A single run has no interval (its half-width is nan), so nothing can be told
    apart from it: that counts as overlapping, never as a significant difference.
    """
    (ma, ha), (mb, hb) = metrics.mean_ci(a), metrics.mean_ci(b)
    if math.isnan(ha) or math.isnan(hb):
        return True
    return (ma - ha) <= (mb + hb) and (mb - hb) <= (ma + ha)


#: How reports and notebooks print a gap_closed that :func:`gap_closed_reason` rules out.
GAP_NOT_DEFINED = "not defined: the teacher does not beat the scratch student"


def gap_closed_reason(scratch: float | Sequence[float], teacher: float) -> str | None:
    """Why :func:`gap_closed` is not defined for this scratch student and teacher; None if it is.

    ``scratch`` is the scratch student's accuracy per seed (a list) or one number (a mean
    given without its seeds); ``teacher`` is the teacher's accuracy. The gap
    ``teacher - mean(scratch)`` must exceed the seed spread: the half-width of the 95% CI
    of the scratch mean (0 for one number, which carries no spread; one seed in a list has
    no spread to measure, so nothing can be told from it). Why: the ratio divides by that
    gap, and a negative gap turns a distilled student that lost 13 pp into "closed 96% of
    the gap"; a gap within the noise turns noise into any ratio at all.
    """
    values = _values("scratch", scratch)
    mean, half = metrics.mean_ci(values)
    if not _is_number(scratch) and math.isnan(half):
        reason = f"{GAP_NOT_DEFINED} by more than the seed spread (one scratch seed gives no spread to compare with)"
    elif teacher - mean > max(0.0 if math.isnan(half) else half, 1e-12):
        return None
    else:
        shown = f"scratch {mean:.2%}" + (f" ± {100 * half:.2f} pp" if half > 0 else "")
        reason = f"{GAP_NOT_DEFINED} by more than the seed spread (teacher {teacher:.2%}, {shown})"
    _say(reason)  # a verdict a notebook may print (see the verdict helpers below)
    return reason


def gap_closed(student: float | Sequence[float], scratch: float | Sequence[float], teacher: float) -> float:
    """Fraction of the teacher-scratch gap that the distilled student closes:
    ``(mean(student) - mean(scratch)) / (teacher - mean(scratch))`` (accuracies, per seed or means).

    nan when the teacher does not beat the scratch student by more than the seed spread;
    :func:`gap_closed_reason` says why, in words to record beside it and print instead of a number.
    """
    if gap_closed_reason(scratch, teacher) is not None:
        return float("nan")
    base = float(np.mean(_values("scratch", scratch)))
    return (float(np.mean(_values("student", student))) - base) / (teacher - base)


#: Which way a metric is better, from the end of its name (after its last "." but a ".mean", and
#: without a "_change"): the first pattern that matches decides (see :func:`higher_is_better_for`).
_DIRECTIONS = (
    (r"(^|_)ci(95)?(_pp)?$", None),  # a CI's half-width (gain_ci_pp, kl_change_ci) is a spread, not a result
    (r"plain_size_ratio$", False),  # notebook 09's pruned_plain_size_ratio is pruned ÷ dense file size
    (r"(^|_)(acc|accuracy|agreement|f1|f1_macro|gap_closed|pp|speedup|size_ratio)$", True),
    (r"(^|_)(nll|ece|loss|bpc|error|error_count|seconds|ms|bytes|mb|mib|size|size_plain|size_gzip|latency)$"
     r"|^kl(_|$)|_kl$", False),
)


def higher_is_better_for(metric: str) -> bool | None:
    """Whether a higher value of ``metric`` is better (True), worse (False), or neither/unknown (None).

    Decided by the end of its name, as the kit names its metrics: accuracies (``*accuracy``,
    ``*_acc``), ``agreement``, ``f1*``, ``gap_closed`` and accuracy gains in pp (``*_pp``),
    speed-ups and compression ratios (``*speedup``, ``*_size_ratio``: dense ÷ compressed, but not
    ``*plain_size_ratio``, pruned ÷ dense) are higher-is-better; ``nll``, ``ece``, ``*loss``, ``kl*``, ``*bpc``, errors, times (``*_seconds``,
    ``*_ms``, ``latency``) and sizes (``*size``, ``*_bytes``, ``*_mb``) are lower-is-better, and so
    is their ``*_change``. A CI's half-width (``*_ci``, ``*_ci_pp``, ``ci95``) and anything else
    (entropies, counts, temperatures) has no better side: None. ``"a.b.nll.mean"`` is judged as ``nll``.
    """
    if not isinstance(metric, str):
        raise ParameterTypeError(f"metric must be a metric's name (a string), got {metric!r}.")
    name = re.sub(r"_change$", "", metric.lower().removesuffix(".mean").rsplit(".", 1)[-1])
    return next((better for pattern, better in _DIRECTIONS if re.search(pattern, name)), None)


def _is_number(value) -> bool:
    """A number, not a bool (as :func:`kdlab.sweeps.is_number`, which imports this module): numpy and 0-d
    torch scalars too."""
    return not isinstance(value, (bool, np.bool_)) and (isinstance(value, (int, float, np.number))
                                                        or getattr(value, "ndim", None) == 0)


# --- verdicts: the one place a comparison becomes a word -----------------------------------
#
# Every printed comparison in the notebooks ("higher", "tie", "fastest", "on the Pareto front")
# comes from the helpers below, so a sentence never claims more than its statistics allow.
# Each helper also notes the words it produced in this process (see `verdicts_said`):
# `kdlab.lab.Run.record` writes them to metrics.json, and the smoke test checks that every
# verdict-like line a notebook printed contains one of them.

#: Relative difference below which two numbers are equal "within float noise": float32
#: metrics (accuracies, losses) agree to about 7 significant digits, so 0.97033336 and
#: 0.97033334 are the same result, not a ranking.
FLOAT_NOISE = 1e-6

#: Default tolerance of :func:`fastest` and of the notebooks' timing comparisons: on a shared
#: CPU the rounds of :func:`latencies` for one model can differ by several percent, so a ratio
#: within 1 ± 10% is never called a difference.
TIMING_NOISE = 0.10

#: Words that state a verdict. A printed line holding one must hold a sentence or phrase one
#: of the helpers below produced (see :func:`unbacked_verdicts`).
VERDICT_WORDS = re.compile(
    r"\b(beats?|beaten|outperform\w*|better|worse|(?:higher|lower|larger|smaller|faster|slower) than|ties?|tied|"
    r"indistinguishable|cannot tell|can't tell|closest|fastest|slowest|pareto|helps|helped|hurt|hurts|harm\w*|"
    r"more accurate|less accurate|significant\w*|wins?|loses)\b", re.IGNORECASE)

_said: list[str] = []  # sentences and phrases made since the last forget_verdicts(); one list per process


def _say(*texts: str) -> None:
    _said.extend(t for t in texts if t)


def verdicts_said() -> list[str]:
    """Every verdict sentence and phrase the helpers made since :func:`forget_verdicts`, in order."""
    return list(_said)


def forget_verdicts() -> None:
    """Start a new list for :func:`verdicts_said` (:func:`kdlab.lab.start` calls it)."""
    _said.clear()


def unbacked_verdicts(text: str, said: Sequence[str]) -> list[str]:
    """Lines of ``text`` that state a verdict (:data:`VERDICT_WORDS`) not made by a helper.

    Each line is searched after removing every string in ``said`` (longest first); a
    verdict word left over was written by hand. Used by the notebooks' smoke test on what
    a notebook printed, with ``said`` from its metrics.json.
    """
    phrases = sorted(set(said), key=len, reverse=True)
    bad = []
    for line in text.splitlines():
        rest = line
        for phrase in phrases:
            rest = rest.replace(phrase, " ")
        if VERDICT_WORDS.search(rest):
            bad.append(line)
    return bad


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: ``a`` minus ``b``, its interval, and the word it allows.

    Attributes:
        word: ``"higher"`` (a is higher than b), ``"lower"`` or ``"tie"``; see :func:`compare`.
        outcome: ``"better"``, ``"worse"`` or ``"tie"`` for ``a``, from ``word`` and ``higher_is_better``
            (``word`` itself when ``higher_is_better`` is None).
        difference: mean of ``a − b`` (paired: the mean of the per-seed differences), times ``scale``;
            with ``ratio=True`` the geometric-mean ratio ``a / b``.
        ci95: half-width of its 95% confidence interval (nan when it cannot be estimated); with
            ``ratio=True`` the factor ``f`` of the interval ``difference / f`` to ``difference · f``.
        low, high: the interval's ends, in the units of ``difference``.
        p_value: two-sided p of the t test (paired, Welch, or one-sample against a single
            value); nan where no test is meaningful (a tie within float noise or tolerance, or
            too few runs).
        mean_a, mean_b: the two means, times ``scale`` (geometric means with ``ratio=True``).
        n_a, n_b: number of runs on each side; ``paired``: whether runs were paired (by seed, or
            by round for timings).
        reason: why the word is what it is, in plain English.
        phrase: the verdict alone, e.g. ``"distilled is higher than scratch (better)"``.
        sentence: the difference, its interval and the phrase (``str()`` of the comparison).
    """

    names: tuple[str, str]
    word: str
    outcome: str
    difference: float
    ci95: float
    low: float
    high: float
    p_value: float
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    paired: bool
    metric: str
    unit: str
    reason: str
    phrase: str
    sentence: str

    @property
    def differs(self) -> bool:
        """True when the statistics allow a direction (``word`` is not ``"tie"``)."""
        return self.word != "tie"

    @property
    def better(self) -> bool:
        return self.outcome == "better"

    @property
    def worse(self) -> bool:
        return self.outcome == "worse"

    def __str__(self) -> str:
        return self.sentence


def _values(name: str, x) -> list[float]:
    """``x`` (one number, or per-seed numbers) as a list of floats, checked: finite, at least one."""
    if _is_number(x):
        values = [float(x)]
    elif isinstance(x, (str, bytes, Mapping)) or not isinstance(x, (Sequence, np.ndarray)):
        raise ParameterTypeError(f"{name}={x!r} must be a number or a list of per-seed numbers.")
    else:
        values = [float(v) for v in x]
    if not values:
        raise ParameterError(f"{name} is empty; give at least one value.")
    if not all(math.isfinite(v) for v in values):
        raise ParameterError(f"{name}={values!r} holds a non-finite value; give finite numbers.")
    return values


def _fmt(x: float, digits: int) -> str:
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def compare(a, b, *, paired: bool, higher_is_better: bool | None = True, names: tuple[str, str] = ("a", "b"),
            metric: str = "", scale: float = 1.0, unit: str = "", digits: int = 2, tolerance: float = 0.0,
            rel_tolerance: float = 0.0, ratio: bool = False, over: str = "seeds",
            confidence: float = 0.95) -> Comparison:
    """Compare ``a`` with ``b`` and return the verdict the statistics allow.

    ``a`` and ``b`` are per-seed values of one metric (or a single number each side). The
    difference is ``a − b`` (with ``ratio=True``, ``a / b``). The word is decided in this order:

    1. **"tie", equal within noise**: ``|mean difference|`` is at most ``tolerance +
       max(rel_tolerance, FLOAT_NOISE) · max(|mean a|, |mean b|)``. Float noise never
       ranks two results (0.97033336 against 0.97033334 is a tie), and a caller who knows
       the measurement noise (timings) passes it as a tolerance.
    2. **"tie", cannot tell**: the spread cannot be estimated (one run per side, or one
       pair) and no tolerance was given: a single run does not rank two methods.
       With a tolerance, single values beyond it get "higher"/"lower" (step 1 is then the test).
    3. **"higher" / "lower"**: the 95% confidence interval of the difference lies entirely
       above / below 0 (or every pair differs by the same amount). Otherwise **"tie"**: the
       difference is within the spread over the seeds.

    The interval and p-value: with ``paired=True`` (run i of ``a`` and of ``b`` share seed
    i: same initial weights and batches) a one-sample t test on the per-seed differences,
    which cancels what a seed's pair shares (:func:`kdlab.metrics.paired_ci`); with
    ``paired=False`` Welch's t test (unequal variances); when one side is a single value
    (a teacher, a fixed reference) a one-sample test of the other side against it.

    Args:
        paired: whether the runs share seeds, in the same order on both sides (required:
            the choice changes the answer, so it is never guessed).
        higher_is_better: turns ``word`` into ``outcome`` ("better"/"worse"/"tie" for ``a``);
            False for losses, KL, ECE, latency, size; None for a measure with no better side
            (a correlation, an entropy): ``outcome`` is then ``word`` and the phrase judges nothing.
        names: how the sentence calls ``a`` and ``b``.
        metric: the metric's name for the sentence (e.g. ``"test accuracy"``).
        scale, unit, digits: display only (``scale=100, unit=" pp"`` for accuracies);
            ``tolerance`` stays in the units of ``a`` and ``b``.
        tolerance, rel_tolerance: differences up to ``tolerance + rel_tolerance · max(|mean a|,
            |mean b|)`` are ties (default: float noise only).
        ratio: compare on a log scale, for positive quantities whose noise is multiplicative
            (timings): the test runs on ``log a − log b``, the difference is the ratio ``a / b``,
            and ``rel_tolerance`` is a ratio within ``1 ± rel_tolerance``.
        over: what a pair (or a run) is, for the sentence: ``"seeds"``, or ``"rounds"`` for the
            timings of :func:`latencies`.

    Returns:
        a :class:`Comparison`; ``str()`` is a sentence such as
        ``"distilled − scratch: +0.68 ± 0.30 pp (paired 95% CI over 5 seeds, p = 0.004); distilled
        is higher than scratch (better): the 95% CI lies above 0"``. Print it, or ``.phrase`` beside your own
        numbers: the smoke test accepts a verdict word only inside these strings.
    """
    from scipy import stats

    xs, ys = _values("a", a), _values("b", b)
    if len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise ParameterTypeError(f"names={names!r} must be two strings, one for a and one for b.")
    validate.real("tolerance", tolerance, low=0.0)
    validate.real("rel_tolerance", rel_tolerance, low=0.0)
    validate.real("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    if paired and len(xs) != len(ys):
        raise ParameterError(f"paired=True needs one value per seed on both sides; got {len(xs)} and {len(ys)} "
                             "values (pass paired=False for runs that do not share seeds).")
    if ratio:
        if tolerance:
            raise ParameterError("tolerance= is in the units of a and b; with ratio=True give rel_tolerance= instead.")
        if min(xs + ys) <= 0:
            raise ParameterError(f"ratio=True compares positive quantities; got {min(xs + ys)!r}.")
        xs, ys = [math.log(x) for x in xs], [math.log(y) for y in ys]
    na, nb = len(xs), len(ys)
    mean_a, mean_b = float(np.mean(xs)), float(np.mean(ys))
    t_crit = lambda df_: float(stats.t.ppf((1 + confidence) / 2, df_))
    if paired:  # the notebooks' paired interval; the p-value's standard error follows from its half-width
        diff, half = metrics.paired_ci(xs, ys, confidence)
        df = na - 1
        se = half / t_crit(df) if df >= 1 else float("nan")
    else:
        diff = mean_a - mean_b
        va = float(np.var(xs, ddof=1)) / na if na > 1 else 0.0
        vb = float(np.var(ys, ddof=1)) / nb if nb > 1 else 0.0
        if na == 1 and nb == 1:
            se, df = float("nan"), 0
        elif na == 1 or nb == 1:  # one side is a fixed reference: a one-sample test of the other
            se, df = math.sqrt(va + vb), max(na, nb) - 1
        else:  # Welch-Satterthwaite degrees of freedom
            se = math.sqrt(va + vb)
            df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1)) if va + vb > 0 else na + nb - 2
        half = t_crit(df) * se if df >= 1 else float("nan")
    if ratio:  # a ratio within 1 ± rel_tolerance (or float noise) is a tie
        noise = math.log1p(max(rel_tolerance, FLOAT_NOISE))
    else:
        noise = tolerance + max(rel_tolerance, FLOAT_NOISE) * max(abs(mean_a), abs(mean_b))
    has_tolerance = tolerance > 0 or rel_tolerance > 0
    if df >= 1 and not math.isnan(se):
        p = float(2 * stats.t.sf(abs(diff) / se, df)) if se > 0 else (0.0 if diff != 0 else 1.0)
    else:
        half, p = float("nan"), float("nan")
    unit_of = over if paired else "runs"
    if ratio:
        shown_noise = f"{max(rel_tolerance, FLOAT_NOISE):.0%} either way"
    else:
        shown_noise = f"{_fmt(noise * scale, digits)}{unit}"
    if abs(diff) <= noise:
        word = "tie"
        reason = f"equal within the tolerance of {shown_noise}" if has_tolerance else "equal within float noise"
        p = float("nan")
    elif math.isnan(half) and not has_tolerance:
        word, reason = "tie", "one run per side gives no interval, so the runs cannot tell them apart"
    elif math.isnan(half):
        word = "higher" if diff > 0 else "lower"
        reason = f"single values, apart by more than the tolerance of {shown_noise}"
    elif half == 0:  # no spread at all: every pair (or every run) differs by the same amount
        word = "higher" if diff > 0 else "lower"
        reason = f"the same difference in all {unit_of}" if paired else "no spread in any run"
    elif diff - half > 0 or diff + half < 0:
        word = "higher" if diff > 0 else "lower"
        reason = f"the {confidence:.0%} CI lies {'above' if diff > 0 else 'below'} {'1' if ratio else '0'}"
    else:
        word = "tie"
        reason = (f"the {confidence:.0%} CI includes {'1' if ratio else '0'}: the difference is within the spread "
                  f"over the {unit_of}")
    if higher_is_better is None or word == "tie":  # no judgement asked for: the direction is the outcome
        outcome = word
    else:
        outcome = "better" if (word == "higher") == higher_is_better else "worse"
    na_, nb_ = names
    judged = "" if higher_is_better is None else f" ({outcome})"
    phrase = f"{na_} and {nb_} tie" if word == "tie" else f"{na_} is {word} than {nb_}{judged}"
    what = f"{metric}, " if metric else ""
    if paired:
        design = f"paired {confidence:.0%} CI over {na} {over if na != 1 else over.rstrip('s')}"
    elif na > 1 and nb > 1:
        design = f"Welch {confidence:.0%} CI, {na} and {nb} runs"
    elif na > 1 or nb > 1:
        design = f"{confidence:.0%} CI over {max(na, nb)} runs against a single value"
    else:
        design = "one value each"
    stat = design if math.isnan(p) else f"{design}, p = {p:.2g}"
    if ratio:
        shown, factor = math.exp(diff), math.exp(half)
        low, high = shown / factor, shown * factor
        interval = "" if math.isnan(half) else f" (×{low:.3g} to ×{high:.3g})"
        sentence = f"{what}{na_} / {nb_}: ×{shown:.3g}{interval} ({stat}); {phrase}: {reason}"
        difference, ci95 = shown, factor
        mean_a, mean_b = math.exp(mean_a) * scale, math.exp(mean_b) * scale
    else:
        difference, ci95 = diff * scale, half * scale
        low, high = difference - ci95, difference + ci95
        interval = "" if math.isnan(half) else f" ± {_fmt(ci95, digits)}"
        sentence = f"{what}{na_} − {nb_}: {difference:+.{digits}f}{interval}{unit} ({stat}); {phrase}: {reason}"
        mean_a, mean_b = mean_a * scale, mean_b * scale
    _say(sentence, phrase)
    return Comparison(names=(na_, nb_), word=word, outcome=outcome, difference=difference, ci95=ci95, low=low,
                      high=high, p_value=p, mean_a=mean_a, mean_b=mean_b, n_a=na, n_b=nb, paired=bool(paired),
                      metric=metric, unit=unit, reason=reason, phrase=phrase, sentence=sentence)


@dataclass(frozen=True)
class Leaders:
    """The result of :func:`best`, :func:`fastest` and :func:`pareto`: the names the statistics
    put first (several when they tie), the comparisons behind it, and the sentence.

    ``names`` keeps the order of the input; ``phrase`` (e.g. ``"fastest: large and tiny"``) and
    ``sentence`` (the phrase and why, e.g. ``"... (tied: equal within the tolerance of 10% either
    way)"``) are what to print.
    """

    what: str
    names: tuple[str, ...]
    comparisons: tuple[Comparison, ...]
    phrase: str
    sentence: str

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __str__(self) -> str:
        return self.sentence


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def best(values: Mapping[str, object], *, paired: bool, higher_is_better: bool = True, what: str = "best",
         **compare_kwargs) -> Leaders:
    """The entries of ``values`` (name → per-seed values, or one number) that the statistics put first.

    The entry with the best mean leads; every other entry that :func:`compare` cannot tell
    apart from it (word ``"tie"``) shares the lead. ``what`` names the lead in the sentence,
    e.g. ``what="closest to the teacher"`` with KL values and ``higher_is_better=False``.
    ``compare_kwargs`` (``tolerance``, ``rel_tolerance``, ``scale``, ``unit``, ``digits``,
    ``metric``) are passed on to every comparison.
    """
    if not isinstance(values, Mapping) or not values:
        raise ParameterTypeError(f"values must be a non-empty mapping of name -> values, got {values!r}.")
    validate.choice("higher_is_better", higher_is_better, (True, False))
    # The leader by mean, on the scale compare() tests on (logs for ratios).
    scale_of = np.log if compare_kwargs.get("ratio") else np.asarray
    means = {name: float(np.mean(scale_of(_values(f"values[{name!r}]", v)))) for name, v in values.items()}
    top = (max if higher_is_better else min)(means, key=means.get)
    comparisons = [compare(values[name], values[top], paired=paired, higher_is_better=higher_is_better,
                           names=(name, top), **compare_kwargs) for name in values if name != top]
    tied = {c.names[0] for c in comparisons if c.word == "tie"}
    leaders = tuple(name for name in values if name == top or name in tied)
    if len(leaders) == 1:
        detail = f"ahead of {_join([n for n in values if n != top])}" if len(values) > 1 else "the only entry"
        phrase = f"{what}: {top}"
    else:
        reasons = sorted({c.reason for c in comparisons if c.word == "tie"})
        detail = "tied: " + "; ".join(reasons)
        phrase = f"{what}: {_join(leaders)}"
    sentence = f"{phrase} ({detail})"
    _say(sentence, phrase)
    return Leaders(what, leaders, tuple(comparisons), phrase, sentence)


def latencies(models: Mapping[str, nn.Module], input_shape: Sequence[int], *, rounds: int = 5,
              batch_size: int = 256, repeats: int = 10, device="cpu") -> dict[str, list[float]]:
    """Milliseconds per batch of every model, measured ``rounds`` times, the models taking turns.

    Each round times every model once with :func:`kdlab.metrics.latency` (the median of
    ``repeats`` forward passes on a batch of ``batch_size``). Taking turns means a change in the
    machine's load hits all models alike, so round ``i`` of two models forms a pair: pass the
    lists to :func:`fastest` or :func:`compare` with ``paired=True``.
    """
    validate.integer("rounds", rounds, low=1)
    out: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            out[name].append(1000 * metrics.latency(model, input_shape, batch_size=batch_size, repeats=repeats,
                                                    device=device))
    return out


def fastest(times: Mapping[str, object], *, paired: bool = False, rel_tolerance: float = TIMING_NOISE,
            **compare_kwargs) -> Leaders:
    """The models whose time (name → one number, or repeated measurements) is within timing
    noise of the fastest: every model :func:`compare` cannot tell from it.

    Times are compared as ratios (``compare(..., ratio=True)``: timing noise is multiplicative).
    Ratios within ``1 ± rel_tolerance`` (default :data:`TIMING_NOISE`, 10%) are ties; with
    repeated measurements, so are ratios within their spread (``paired=True`` for the rounds of
    :func:`latencies`, which share the machine's load round by round).
    """
    compare_kwargs = {"ratio": True, "over": "rounds" if paired else "seeds", **compare_kwargs}
    return best(times, paired=paired, higher_is_better=False, what="fastest", rel_tolerance=rel_tolerance,
                **compare_kwargs)


def pareto(points: Mapping[str, tuple[float, float]], *, cost: str = "cost", value: str = "value",
           cost_tolerance: float = 0.0, value_tolerance: float = 0.0, cost_rel_tolerance: float = 0.0) -> Leaders:
    """The names on the Pareto front of ``points`` (name → ``(cost, value)``; lower cost and
    higher value are better), where differences within float noise or the tolerances do not count.

    A point leaves the front only if another is at least as good on both axes (within the
    tolerances) and better by more than them on one: see :func:`kdlab.compress.pareto_front`
    (``cost_rel_tolerance=TIMING_NOISE`` for a latency axis). ``cost`` and ``value`` name the axes
    in the sentence.
    """
    from .compress import pareto_front

    if not isinstance(points, Mapping) or not points:
        raise ParameterTypeError(f"points must be a non-empty mapping of name -> (cost, value), got {points!r}.")
    rows = [{"name": name, "cost": c, "value": v} for name, (c, v) in points.items()]
    front = pareto_front(rows, cost="cost", value="value", cost_tolerance=cost_tolerance,
                         value_tolerance=value_tolerance, cost_rel_tolerance=cost_rel_tolerance)
    names = tuple(r["name"] for r in rows if any(r is f for f in front))
    phrase = f"on the Pareto front of {cost} against {value}: {_join(names)}"
    off = [r["name"] for r in rows if r["name"] not in names]
    sentence = phrase + (f" (dominated: {_join(off)})" if off else " (no point is dominated)")
    _say(sentence, phrase)
    return Leaders(f"Pareto front ({cost}, {value})", names, (), phrase, sentence)
