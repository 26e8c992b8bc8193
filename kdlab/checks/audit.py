"""``audit_kd_loss(fn)``: what is wrong with a distillation loss, found by running it.

``fn(student_logits, teacher_logits, T)`` is any soft-target loss a learner wrote, in any
style (``F.kl_div`` on log-probabilities, a manual sum, ``log_target=True``). The correct
loss is Hinton et al.'s

    T^2 * KL(p_t^T || p_s^T), averaged over the batch (``kdlab.losses.kd_loss``).

The auditor never reads the code. It calls ``fn`` on constructed logits (several batch
sizes, class counts and temperatures) and compares the answers with a family of
formulas: the correct one and every combination of the classic mistakes. The simplest
combination that reproduces every answer names the problems. Three more probes follow:
logits of ±1e4 (``not_finite``), a gradient (``no_gradient``, ``wrong_gradient``) and
whether ``fn`` changed its inputs in place (``modifies_inputs``).

Problem codes, each explained in the printed report (:data:`PROBLEMS`):
``kl_direction``, ``reduction_mean``, ``reduction_sum``, ``missing_t_squared``,
``one_sided_temperature``, ``no_temperature``, ``probabilities_as_log``,
``double_softmax``, ``not_finite``, ``no_gradient``, ``wrong_gradient``,
``modifies_inputs``, ``not_a_scalar``, ``error`` and ``wrong_value`` (the values follow
no formula the auditor knows). A soft cross-entropy, ``-sum p_t log p_s``, differs from
the KL by the teacher's entropy, a constant for the student: it trains identically, so it
is a note (``soft_cross_entropy``), not a problem.

Notebook 10 audits the losses of its pitfalls and the learner's own; notebook 03's
exercise check (:func:`kdlab.checks.check_kd_loss`) uses the same auditor, so both give the
same explanations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ParameterTypeError
from .feedback import Feedback
from .feedback import call as _call
from .feedback import not_done as _not_done
from .feedback import report as _report
from .hints import for_exercise

#: Every problem code, with the explanation the report prints.
PROBLEMS: dict[str, str] = {
    "kl_direction": "The KL runs the wrong way (or student and teacher are swapped): it must be KL(teacher ‖ "
                    "student), with the teacher's probabilities as the weights. F.kl_div(input, target) computes "
                    "KL(target ‖ input) and wants the *student's* log-probabilities as input.",
    "reduction_mean": "reduction='mean' divides by batch × classes; use reduction='batchmean' (divide by the batch "
                      "size only). With 'mean' the soft term is K times too small, so alpha no longer means what "
                      "it says.",
    "reduction_sum": "reduction='sum' adds over the batch, so the loss (and the step size) grows with the batch "
                     "size; use reduction='batchmean'.",
    "missing_t_squared": "The T² factor is missing: multiply the KL by T * T. Without it the soft term's gradient "
                         "shrinks like 1/T², so changing T silently changes how much the student listens to the "
                         "teacher.",
    "one_sided_temperature": "Only one side is softened: divide BOTH the student's and the teacher's logits by T "
                             "before the softmax, or the student is pushed to match a distribution of another "
                             "sharpness and its own confidence ends up wrong.",
    "no_temperature": "Divide the logits by T before the softmax, for both student and teacher: as written, T "
                      "changes only the scale of the loss, not the softness of the targets.",
    "probabilities_as_log": "You passed probabilities where log-probabilities are expected: F.kl_div's first "
                            "argument must be F.log_softmax(student_logits / T, dim=1), and its target is plain "
                            "probabilities unless you pass log_target=True.",
    "double_softmax": "A softmax was applied twice: the loss received probabilities (from a Softmax layer at the "
                      "end of a model, or a softmax before log_softmax) and softmaxed them again, which flattens "
                      "both distributions towards uniform. Give the loss raw logits.",
    "not_finite": "Not finite (NaN or inf) for logits of ±1e4: use F.log_softmax rather than the log of a softmax, "
                  "and never exp() raw logits.",
    "no_gradient": "No gradient reaches the student's logits: keep the computation in torch (no .item(), "
                   ".detach(), numpy or torch.tensor(number)), or training with this loss learns nothing.",
    "wrong_gradient": "The value is right but the gradient is not: part of the computation on the student's "
                      "logits is cut from autograd (.detach(), .data, or a tensor rebuilt from numbers).",
    "modifies_inputs": "It changes the logits it is given (an in-place operation such as logits /= T); use "
                       "logits / T, which leaves the caller's tensors alone.",
    "not_a_scalar": "Return one number (a 0-dim tensor): average the per-example losses over the batch.",
    "error": "It raised an error on an ordinary batch of logits.",
    "wrong_value": "The values match neither T²·KL(p_t^T ‖ p_s^T) averaged over the batch nor any combination of "
                   "the known mistakes: compare with kdlab.losses.kd_loss on a small batch.",
}

#: Remarks that are not problems: the loss trains like the correct one.
NOTES: dict[str, str] = {
    "soft_cross_entropy": "This is the soft cross-entropy -Σ p_t log p_s: it equals the KL plus the teacher's "
                          "entropy, a constant for the student, so it trains identically; but it is not 0 when "
                          "the student matches the teacher, so its value is not the KL's.",
}

# --- the candidate formulas ---------------------------------------------------------------

# How each side's distribution is made from its logits z: softened (right), not softened,
# or softmaxed twice (a Softmax before the loss's own softmax(z / T), or after dividing by T).
_SIDES = {
    "T": lambda z, T: F.log_softmax(z / T, dim=1),
    "1": lambda z, T: F.log_softmax(z, dim=1),
    "softmax_first": lambda z, T: F.log_softmax(F.softmax(z, dim=1) / T, dim=1),
    "softmax_twice": lambda z, T: F.log_softmax(F.softmax(z / T, dim=1), dim=1),
}


# How the two log-distributions are compared, with ``a`` the target and ``b`` the input:
# the KL (right when a is the teacher), F.kl_div given probabilities as its input, F.kl_div
# with log_target=True given probabilities as its target, and the soft cross-entropy.
def _kl(la, lb):
    return (la.exp() * (la - lb)).sum(1)


def _prob_input(la, lb):
    return (la.exp() * (la - lb.exp())).sum(1)


def _prob_target(la, lb):
    return (la.exp().exp() * (la.exp() - lb)).sum(1)


def _cross_entropy(la, lb):
    return -(la.exp() * lb).sum(1)


_KINDS = {"kl": _kl, "prob_input": _prob_input, "prob_target": _prob_target, "cross_entropy": _cross_entropy}

# Factors on the batch mean: T^power (2 is right), /K (reduction='mean'), *B (reduction='sum').
_T_POWERS = (2, 1, 0)


@dataclass(frozen=True)
class _Form:
    student: str
    teacher: str
    reverse: bool
    kind: str
    t_power: int
    per_class: bool  # divided by K: reduction="mean"
    summed: bool  # multiplied by B: reduction="sum"

    def problems(self) -> dict[str, str]:
        found: dict[str, str] = {}
        sides = (self.student, self.teacher)
        if self.reverse:
            found["kl_direction"] = PROBLEMS["kl_direction"]
        if self.kind in ("prob_input", "prob_target"):
            found["probabilities_as_log"] = PROBLEMS["probabilities_as_log"]
        if self.per_class:
            found["reduction_mean"] = PROBLEMS["reduction_mean"]
        if self.summed:
            found["reduction_sum"] = PROBLEMS["reduction_sum"]
        if self.t_power == 1:
            found["missing_t_squared"] = ("You multiplied by T, not T²: the soft term's gradient then shrinks like "
                                          "1/T, so changing T still changes how much the student listens to the "
                                          "teacher. Multiply the KL by T * T.")
        elif self.t_power == 0:
            found["missing_t_squared"] = PROBLEMS["missing_t_squared"]
        if sides.count("1") == 2:
            found["no_temperature"] = PROBLEMS["no_temperature"]
        elif "1" in sides:
            which = ("the student's logits are divided by T but the teacher's are not" if self.teacher == "1" else
                     "the teacher's logits are divided by T but the student's are not")
            found["one_sided_temperature"] = PROBLEMS["one_sided_temperature"].replace(
                "Only one side is softened:", f"Only one side is softened ({which}):")
        if any(side.startswith("softmax") for side in sides):
            found["double_softmax"] = PROBLEMS["double_softmax"]
        return found

    def notes(self) -> list[str]:
        return ["soft_cross_entropy"] if self.kind == "cross_entropy" else []


def _forms() -> list[_Form]:
    forms = [_Form(s, t, r, k, p, c, b) for s, t, r, k, p, c, b in itertools.product(
        _SIDES, _SIDES, (False, True), _KINDS, _T_POWERS, (False, True), (False, True))]
    # The simplest explanation first: fewest problems, then the order above (right before wrong).
    return sorted(forms, key=lambda f: len(f.problems()))


_FORMS = _forms()

# (batch, classes, T): batch, class count and temperature all vary, so every factor is pinned down.
_PROBES = ((8, 10, 2.0), (5, 10, 0.5), (8, 4, 5.0), (3, 4, 2.0), (6, 7, 3.0))
_RTOL, _ATOL = 1e-3, 1e-6


def _probe_logits(batch: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + seed)
    student = torch.randn(batch, classes, generator=gen) * 2
    teacher = torch.randn(batch, classes, generator=gen) * 4 + 1
    return student, teacher


def _candidates(student: torch.Tensor, teacher: torch.Tensor, T: float) -> dict[_Form, float]:
    s, t = student.double(), teacher.double()
    batch, classes = s.shape
    logs = {"student": {name: side(s, T) for name, side in _SIDES.items()},
            "teacher": {name: side(t, T) for name, side in _SIDES.items()}}
    base: dict[tuple, float] = {}
    out = {}
    for form in _FORMS:
        key = (form.student, form.teacher, form.reverse, form.kind)
        if key not in base:
            ls, lt = logs["student"][form.student], logs["teacher"][form.teacher]
            a, b = (ls, lt) if form.reverse else (lt, ls)
            base[key] = float(_KINDS[form.kind](a, b).mean())
        value = base[key] * T ** form.t_power
        value = value / classes if form.per_class else value
        out[form] = value * batch if form.summed else value
    return out


def _close(value: float, expected: float) -> bool:
    return abs(value - expected) <= _RTOL * abs(expected) + _ATOL


# --- the report -----------------------------------------------------------------------------

@dataclass
class Audit:
    """What :func:`audit_kd_loss` found: ``ok`` (no problem), ``problems`` (codes), and
    ``explanations`` (code -> the sentence the report prints); ``notes`` are remarks that
    are not problems. ``print(audit)`` shows the report; ``bool(audit)`` is ``ok``."""

    name: str
    problems: list[str] = field(default_factory=list)
    explanations: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def explain(self, codes: list[str] | None = None) -> str:
        """The explanations of ``codes`` (default: every problem), one sentence group each."""
        return " ".join(self.explanations[code] for code in (self.problems if codes is None else codes))

    def __str__(self) -> str:
        if self.ok:
            up_to = " (up to a constant, see the note)" if self.notes else ""
            lines = [f"✅ Audit of {self.name}: no problems. It equals T²·KL(p_t^T ‖ p_s^T) averaged over the "
                     f"batch{up_to} on every probe, stays finite for logits of ±1e4, passes gradients and leaves its "
                     "inputs alone."]
        else:
            count = f"{len(self.problems)} problem{'s' if len(self.problems) > 1 else ''}"
            lines = [f"❌ Audit of {self.name}: {count}."]
            lines += [f"  - {code}: {self.explanations[code]}" for code in self.problems]
        lines += [f"  note, {code}: {NOTES[code]}" for code in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Audit({self.name!r}, ok={self.ok}, problems={self.problems})"

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's value: the report was printed already (see Feedback)."""


def _order(found: dict[str, str]) -> dict[str, str]:
    return {code: found[code] for code in PROBLEMS if code in found}


def _scalar(value) -> float | None:
    """``value`` as a float if it is one number, else None."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().double().reshape(())) if value.numel() == 1 else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def audit_kd_loss(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor], *, show: bool = True) -> Audit:
    """Audit a knowledge-distillation soft loss ``fn(student_logits, teacher_logits, T)``.

    Returns an :class:`Audit` with ``ok`` and ``problems`` (codes; see the module docstring)
    and prints its report unless ``show=False``. A correct loss, in any style, gets
    ``ok=True`` and no problems. ``fn`` runs on small CPU tensors of float32 logits.
    """
    if not callable(fn):
        raise ParameterTypeError(f"fn={fn!r} is not callable; pass a function (student_logits, teacher_logits, T) "
                                 "-> loss, e.g. kdlab.checks.audit_kd_loss(my_kd_loss).")
    name = getattr(fn, "__name__", type(fn).__name__)
    audit = _run_audit(fn, "the loss" if name == "<lambda>" else name)
    if show:
        print(audit)
    return audit


def _run_audit(fn: Callable, name: str) -> Audit:
    found: dict[str, str] = {}
    changed = False

    def call(student, teacher, T):
        nonlocal changed
        s_in, t_in = student.clone(), teacher.clone()
        out = fn(s_in, t_in, T)
        changed = changed or not (torch.equal(s_in.detach(), student) and torch.equal(t_in, teacher))
        return out

    # 1. Values on ordinary logits, against every candidate formula.
    values, expected = [], []
    for i, (batch, classes, T) in enumerate(_PROBES):
        student, teacher = _probe_logits(batch, classes, i)
        try:
            out = call(student, teacher, T)
        except NotImplementedError:
            return Audit(name, ["error"], {"error": f"{name} still raises NotImplementedError: write it first."})
        except Exception as err:  # noqa: BLE001 - the learner's error is the finding
            return Audit(name, ["error"], {"error": f"{name} raised {type(err).__name__} on a batch of {batch} with "
                                                    f"{classes} classes at T = {T:g}: {err}"})
        value = _scalar(out)
        if value is None:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return Audit(name, ["not_a_scalar"], {"not_a_scalar": f"{name} returned {shape} for a batch of {batch}. "
                                                                  + PROBLEMS["not_a_scalar"]})
        values.append(value)
        expected.append(_candidates(student, teacher, T))
    notes: list[str] = []
    if not all(torch.isfinite(torch.tensor(values))):
        found["not_finite"] = ("Not finite (NaN or inf) even for ordinary logits. Passing log-probabilities as "
                               "F.kl_div's target without log_target=True does that, and so does the log of 0.")
    else:
        match = next((form for form in _FORMS if all(_close(v, c[form]) for v, c in zip(values, expected))), None)
        if match is None:
            found["wrong_value"] = PROBLEMS["wrong_value"]
        else:
            found.update(match.problems())
            notes = match.notes()

    # 2. Huge logits: the loss and its gradient must stay finite.
    big_s = torch.tensor([[1e4, -1e4, 0.0, 5e3], [-1e4, 1e4, -5e3, 0.0]])
    big_t = torch.tensor([[-1e4, 1e4, 0.0, -5e3], [1e4, 0.0, -1e4, 5e3]])
    for T in (1.0, 4.0):
        s = big_s.clone().requires_grad_(True)
        try:
            out = call(s, big_t, T)
            value = _scalar(out)
            grads = torch.autograd.grad(out.sum(), s, allow_unused=True)[0] if isinstance(
                out, torch.Tensor) and out.requires_grad else None
            finite = value is not None and torch.isfinite(torch.tensor(value)) and (
                grads is None or bool(torch.isfinite(grads).all()))
        except Exception as err:  # noqa: BLE001
            found.setdefault("not_finite", f"{PROBLEMS['not_finite']} (At ±1e4 it raised "
                                           f"{type(err).__name__}: {err})")
            break
        if not finite:
            found.setdefault("not_finite", PROBLEMS["not_finite"])
            break

    # 3. The gradient with respect to the student's logits.
    student, teacher = _probe_logits(6, 5, 99)
    T = 2.0
    s = student.clone().requires_grad_(True)
    grad = None
    try:
        out = call(s, teacher, T)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            grad = torch.autograd.grad(out.sum(), s, allow_unused=True)[0]
    except Exception as err:  # noqa: BLE001 - e.g. .numpy() on a tensor that requires grad
        found["no_gradient"] = PROBLEMS["no_gradient"] + f" (On logits that require a gradient it raised " \
                                                         f"{type(err).__name__}: {err})"
    if grad is None or not bool(grad.abs().sum() > 0):
        found.setdefault("no_gradient", PROBLEMS["no_gradient"])
    elif not found:  # the value is right: so must the gradient be
        ref = student.clone().double().requires_grad_(True)
        want = torch.autograd.grad(_kl(F.log_softmax(teacher.double() / T, 1), F.log_softmax(ref / T, 1)).mean()
                                   * T * T, ref)[0]
        if not torch.allclose(grad.double(), want, rtol=1e-3, atol=1e-6):
            found["wrong_gradient"] = PROBLEMS["wrong_gradient"]
    if changed:
        found["modifies_inputs"] = PROBLEMS["modifies_inputs"]
    found = _order(found)
    return Audit(name, list(found), found, notes)


# --- notebook 10's exercise -------------------------------------------------------------------

#: What the audit finds in ``kdlab.pitfalls.blog_kd_loss``, the loss notebook 10 asks you to fix.
BLOG_PROBLEMS = ("reduction_mean", "missing_t_squared", "one_sided_temperature")


@for_exercise("fix_kd_loss")
def check_fixed_kd_loss(my_fixed_kd_loss: Callable | None) -> Feedback:
    """Exercise (notebook 10): fix ``blog_kd_loss`` so the audit finds no problem."""
    if my_fixed_kd_loss is None:
        return _not_done("define my_fixed_kd_loss(student_logits, teacher_logits, T).")
    gen = torch.Generator().manual_seed(5)
    value, err = _call(my_fixed_kd_loss, torch.randn(4, 10, generator=gen), torch.randn(4, 10, generator=gen) * 3,
                       2.0, name="my_fixed_kd_loss")
    if err is not None:
        return err
    audit = audit_kd_loss(my_fixed_kd_loss, show=False)
    if audit.ok and not audit.notes:
        return _report(True, "Fixed: the audit finds no problem, and the loss equals kdlab.losses.kd_loss on every "
                             "probe.")
    if audit.ok:
        return _report(False, NOTES[audit.notes[0]] + " Return the KL itself.")
    wrong = " ".join(f"[{code}] {audit.explanations[code]}" for code in audit.problems)
    if set(audit.problems) & {"error", "not_a_scalar", "wrong_value"}:  # which of the three are fixed is unknowable
        return _report(False, wrong)
    fixed = [code for code in BLOG_PROBLEMS if code not in audit.problems]
    return _report(False, f"{len(fixed)} of the {len(BLOG_PROBLEMS)} problems of blog_kd_loss fixed. Still wrong: "
                          + wrong)
