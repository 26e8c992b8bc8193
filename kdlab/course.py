"""The course: the notebooks in order, and what the kit knows about each one.

One entry per notebook holds what would otherwise be scattered through its setup
cell and the docs:

* ``rules``: the accepted range of each parameter, declared once (the type comes
  from the default in the notebook's ``parameters`` cell, see :func:`kdlab.lab.start`);
* ``smoke``: the values smoke mode (``KDLAB_SMOKE=1`` or ``smoke=True``) swaps in so
  the notebook runs in seconds on ``digits``;
* ``headline``: the one-line result ``kdlab run`` prints, a :meth:`str.format`
  template over the notebook's ``metrics.json``;
* ``minutes``: the default-parameter run time on a 2-core CPU, from the last
  measured full run (``kdlab run``; the README, ``docs/INSTRUCTORS.md`` and each
  notebook quote it, and ``tests/test_docs.py`` checks they agree).

Rules are short strings a reader can take in at a glance:

=================  =====================================================
``">0"``           a finite number above 0
``">=0"``          a finite number, 0 or more
``"int>=1"``       an integer, at least 1 (``int>=0``: at least 0)
``"int>=4%4"``     an integer, at least 4, and a multiple of 4
``"[0,1]"``        a number in the interval (also ``[0,1)``, ``(0,1]``)
``"each <rule>"``  a list whose every entry follows ``<rule>``
``"nonempty ..."`` the list must have at least one entry
a tuple            one of these values
=================  =====================================================
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import validate
from .data import NAMES as DATASETS
from .errors import ParameterError, ParameterTypeError

#: Rules every notebook shares, where it has the parameter.
COMMON_RULES: dict[str, object] = {
    "dataset": DATASETS,
    "epochs": "int>=1",
    "lr": ">0",
    "batch_size": "int>=1",
    "weight_decay": ">=0",
    "seed": "int>=0",
    "n_seeds": "int>=1",
    "temperature": ">0",
    "alpha": "[0,1]",
    "device": None,  # checked by kdlab.devices when it is used: "auto", "cpu", "cuda", "cuda:1", "mps"
    "smoke": None,
    "output_dir": None,
    "checkpoint_dir": None,
}

#: Smoke mode always runs on this dataset (it ships with scikit-learn: no download, seconds per run).
SMOKE_DATASET = "digits"


@dataclass(frozen=True)
class Lesson:
    """One notebook of the course (see the module docstring for the fields)."""

    name: str
    title: str
    learn: str
    minutes: float
    headline: str
    rules: Mapping[str, object] = field(default_factory=dict)
    smoke: Mapping[str, object] = field(default_factory=dict)

    @property
    def number(self) -> str:
        return self.name[:2]

    def rule(self, parameter: str):
        return self.rules[parameter] if parameter in self.rules else COMMON_RULES.get(parameter)


# Run times: `kdlab run` with default parameters on 2 CPU cores; per-notebook seconds are in that run's run.json.
LESSONS: dict[str, Lesson] = {lesson.name: lesson for lesson in (
    Lesson("01_teacher_training", "Train the teacher",
           "train and check the CNN teacher every later notebook distils from",
           minutes=1.6, headline="teacher test accuracy {teacher_accuracy:.2%}",
           smoke={"epochs": 2}),
    Lesson("02_soft_targets", "Soft targets and dark knowledge",
           "what a teacher's softened outputs say that a label does not, and what T does to them",
           minutes=0.4, headline="entropy of the soft targets: {entropy_T1:.2f} bits at T = 1, {entropy_T20:.2f} at T = 20",
           rules={"similarity_temperature": ">0"}, smoke={"epochs": 2}),
    Lesson("03_temperature", "Temperature and alpha",
           "a plain distillation step, why the soft term is scaled by T², and how T and alpha change a student",
           minutes=4.1, headline="best on validation: alpha={best_alpha:g}, T={best_T:g}; test {best_test_accuracy:.2%}",
           rules={"temperatures": "nonempty each >0", "alphas": "nonempty each [0,1]",
                  "student_hidden": "nonempty each int>=1", "small_hidden": "nonempty each int>=1"},
           smoke={"epochs": 1, "n_seeds": 2, "temperatures": [1.0, 4.0], "alphas": [0.9], "student_hidden": [32],
                  "small_hidden": [8]}),
    Lesson("04_student_comparison", "Students compared",
           "scratch against distilled students of two sizes, with paired confidence intervals",
           minutes=10.6, headline="distilled − scratch (large student): {gain_pp:+.2f} ± {gain_ci_pp:.2f} pp",
           rules={"large_hidden": "nonempty each int>=1", "tiny_hidden": "nonempty each int>=1",
                  "tiny_temperature": ">0"},
           smoke={"epochs": 2, "n_seeds": 2, "run_controls": False, "large_hidden": [64], "tiny_hidden": [8]}),
    Lesson("05_hard_vs_soft_targets", "Lab: hard or soft targets",
           "what soft targets carry that labels do not: small transfer sets and a class the student never sees",
           minutes=4.4, headline="soft − teacher's hard labels: {soft_minus_hard_pp:+.2f} ± {soft_minus_hard_ci_pp:.2f} pp",
           rules={"alpha": "[0,1)", "hidden": "nonempty each int>=1", "fractions": "nonempty each (0,1]",
                  "omitted_class": "int>=0", "kept_classes": "nonempty each int>=0", "omitted_epochs": "int>=1"},
           smoke={"epochs": 1, "omitted_epochs": 1, "n_seeds": 2, "hidden": [32], "fractions": [0.1, 0.3]}),
    Lesson("06_adversarial_distillation", "Lab: adversarial distillation",
           "a discriminator as a training aid next to KD, and how to spot an unstable run",
           minutes=1.5, headline="KD + adversarial {kd_adv_accuracy:.2%}, KD {kd_accuracy:.2%}, paired difference "
                                 "{kd_adv_minus_kd_pp:+.2f} ± {kd_adv_minus_kd_ci_pp:.2f} pp",
           rules={"student_hidden": "nonempty each int>=1", "adv_weight": ">0", "d_loss": ("bce", "lsgan", "hinge"),
                  "d_lr": ">0", "d_hidden": "nonempty each int>=1",
                  "condition": ("none", "label", "input", "label+input"), "unstable_d_lr": ">0",
                  "unstable_d_hidden": "nonempty each int>=1"},
           smoke={"epochs": 2, "n_seeds": 2, "student_hidden": [16], "d_hidden": [16], "unstable_d_hidden": [32]}),
    Lesson("07_teacher_initialised_students", "Lab: students cut from the teacher",
           "initialising a narrow student from the teacher's most important channels, with and without KD",
           minutes=4.1, headline="teacher-initialised − random init (CE): {init_gain_pp:+.2f} ± {init_gain_ci_pp:.2f} pp",
           rules={"keep": "(0,1]", "method": ("bn", "l1", "random"), "alphas": "nonempty each [0,1]",
                  "n_random_subsets": "int>=0"},
           smoke={"epochs": 1, "n_seeds": 2, "n_random_subsets": 1, "alpha": 1.0, "alphas": [0.0, 1.0]}),
    Lesson("08_interpretable_students", "Lab: interpretable students",
           "distilling into a soft decision tree and a linear model, and what interpretability costs",
           minutes=1.3, headline="soft tree: labels {tree_ce_accuracy:.2%}, distilled {tree_kd_accuracy:.2%}",
           rules={"depth": "int>=1", "beta": ">0", "balance_strength": ">=0", "mlp_hidden": "each int>=1",
                  "show_levels": "int>=1"},
           smoke={"epochs": 2, "n_seeds": 2, "depth": 3, "show_levels": 3, "mlp_hidden": []}),
    Lesson("09_pruning_quantization", "Lab: pruning, quantization and distillation",
           "what int8, pruning and a distilled narrow student each buy in size, speed and accuracy",
           minutes=3.4, headline="int8 large student: {int8_delta_pp:+.2f} pp, {int8_size_ratio:.1f}× smaller",
           rules={"large_hidden": "nonempty each int>=1", "student_widths": "nonempty each int>=1",
                  "sparsities": "nonempty each [0,1)", "finetune_epochs": "int>=1", "finetune_lr": ">0",
                  "combo_sparsity": "[0,1)", "latency_batch": "int>=1"},
           smoke={"epochs": 2, "n_seeds": 2, "finetune_epochs": 1, "large_hidden": [64], "student_widths": [16, 8],
                  "sparsities": [0.5, 0.9]}),
    Lesson("10_pitfalls", "Lab: distillation pitfalls",
           "every classic distillation mistake run and measured, and an auditor for your own loss",
           minutes=2.8, headline="softmax before the loss (student): {double_softmax_student_pp:+.2f} ± "
                                 "{double_softmax_student_ci_pp:.2f} pp; pitfalls with a measured cost: "
                                 "{n_harmful} of {n_pitfalls}",
           rules={"fraction": "(0,1]", "hidden": "nonempty each int>=1", "high_temperature": ">0",
                  "timing_epochs": "int>=1", "timing_repeats": "int>=1"},
           smoke={"epochs": 3, "n_seeds": 2, "hidden": [32], "timing_epochs": 1, "timing_repeats": 2}),
    Lesson("11_beyond_logits", "Lab: beyond logits",
           "feature (FitNets, attention), relational and decoupled distillation in the one loop, a born-again "
           "student and a teacher assistant, with paired confidence intervals",
           minutes=3.7, headline="− scratch: KD {kd_pp:+.2f}, hint {hint_pp:+.2f}, AT {at_pp:+.2f}, "
                                 "RKD {rkd_pp:+.2f}, DKD {dkd_pp:+.2f} pp; born-again − its teacher "
                                 "{born_again_pp:+.2f} pp",
           rules={"fraction": "(0,1]", "hint_weight": ">=0", "hint_stage": "int>=0", "at_weight": ">=0",
                  "rkd_weight": ">=0", "dkd_beta": ">=0", "dkd_warmup_epochs": ">=0", "examples_shown": "int>=1"},
           smoke={"epochs": 2, "n_seeds": 2, "examples_shown": 2}),
    Lesson("12_language_model_distillation", "Lab: distilling a language model",
           "token-level forward and reverse KL, sequence-level and on-policy distillation of a character-level "
           "transformer, measured in bits per character",
           minutes=4.9, headline="validation bits per character: teacher {teacher_bpc:.3f}, scratch {scratch_bpc:.3f}, "
                                 "forward KL {forward_kl_bpc:.3f}, reverse KL {reverse_kl_bpc:.3f}, sequence-level "
                                 "{sequence_level_bpc:.3f}",
           rules={"dataset": ("pydoc", "synthetic"), "context": "int>=8", "fraction": "(0,1]", "teacher_width": "int>=4%4",
                  "teacher_epochs": "int>=1", "student_family": ("transformer", "gru"), "student_width": "int>=4%4",
                  "gru_hidden": "int>=1", "epochs": "int>=0", "distil_fraction": "(0,1]", "distil_lr": ">0",
                  "sample_temperature": ">=0", "prompt_length": "int>=1", "on_policy_mix": "[0,1]",
                  "synthetic_context": "int>=8", "synthetic_epochs": "int>=1"},
           smoke={"dataset": "pydoc", "context": 32, "fraction": 0.01, "teacher_width": 32, "teacher_epochs": 1,
                  "student_width": 16, "gru_hidden": 16, "epochs": 1, "n_seeds": 2, "synthetic_context": 12,
                  "synthetic_epochs": 1}),
)}


def lesson(name: str) -> Lesson:
    """The lesson called ``name``: a notebook stem (``"03_temperature"``), file name or number (``"03"``)."""
    stem = name.removesuffix(".ipynb")
    matches = [lesson for key, lesson in LESSONS.items() if key == stem or key.startswith(f"{stem}_")]
    if len(matches) != 1:
        raise ParameterError(f"notebook {name!r} is not a lesson of the course; lessons: {', '.join(LESSONS)}.")
    return matches[0]


_INTEGER = re.compile(r"^int>=(-?\d+)(?:%(\d+))?$")
_INTERVAL = re.compile(r"^([\[(])(-?[\d.]+),(-?[\d.]+)([\])])$")


def check_value(name: str, value, rule):
    """``value`` if it follows ``rule`` (see the module docstring), else a :class:`ParameterError`
    naming the parameter, the value and what is accepted."""
    if rule is None:
        return value
    if isinstance(rule, tuple):
        return validate.choice(name, value, rule)
    words = rule.split()
    if words[0] == "nonempty":
        if isinstance(value, (list, tuple)) and not value:
            raise ParameterError(f"{name}={value!r} is empty; accepted: a list with at least one entry, each {words[-1]}.")
        words = words[1:]
    if words[0] == "each":
        if not isinstance(value, (list, tuple)):
            raise ParameterTypeError(f"{name}={value!r} must be a list; accepted: a list, each entry {words[1]}.")
        return [check_value(f"{name}[{i}]", item, words[1]) for i, item in enumerate(value)]
    (base,) = words
    integer = _INTEGER.match(base)
    if integer:
        low, step = int(integer[1]), int(integer[2] or 1)
        value = validate.integer(name, value, low=low)
        if value % step:
            raise ParameterError(f"{name}={value!r} is not a multiple of {step}; accepted: an integer >= {low} "
                                 f"that is a multiple of {step}.")
        return value
    if base == ">0":
        return validate.positive(name, value)
    if base == ">=0":
        return validate.real(name, value, low=0.0)
    interval = _INTERVAL.match(base)
    if interval:
        lo_br, lo, hi, hi_br = interval.groups()
        return validate.real(name, value, low=float(lo), high=float(hi), low_open=lo_br == "(", high_open=hi_br == ")")
    raise ValueError(f"unknown rule {rule!r} for parameter {name!r}")  # a bug in this file, not the user's input


def check_params(name: str, params: Mapping) -> dict:
    """Apply lesson ``name``'s rules to ``params`` (types are checked elsewhere); returns the checked values."""
    the_lesson = lesson(name)
    return {key: check_value(key, value, the_lesson.rule(key)) for key, value in params.items()}


def headline(name: str, metrics: Mapping) -> str | None:
    """The lesson's one-line result filled in from ``metrics``; None if unknown or a value is missing."""
    try:
        template = lesson(name).headline
    except ParameterError:
        return None
    keys = {field_name for _, field_name, _, _ in string.Formatter().parse(template) if field_name}
    if any(metrics.get(key) is None for key in keys):
        return None
    return template.format(**metrics)
