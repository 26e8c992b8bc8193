"""kdlab.checks.audit_kd_loss: the right verdict on a catalogue of correct and buggy KD losses."""

import pytest
import torch
import torch.nn.functional as F

import kdlab
from kdlab import pitfalls
from kdlab.checks import Audit, audit_kd_loss
from kdlab.checks.audit import PROBLEMS
from kdlab.errors import ParameterTypeError


def _log_softmax_kl(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T * T


def _manual_sum(s, t, T):
    log_ps, log_pt = F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean() * T**2


def _log_target(s, t, T):
    return T * T * F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="batchmean", log_target=True)


def _per_example_then_mean(s, t, T):
    kl = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="none").sum(1)  # (B,)
    return (T**2) * kl.mean()


def _module_style(s, t, T):
    return torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(s / T, 1), torch.softmax(t / T, 1)) * T**2


CORRECT = {
    "F.kl_div with log_softmax": _log_softmax_kl,
    "a manual sum": _manual_sum,
    "log_target=True": _log_target,
    "reduction none, summed, then averaged": _per_example_then_mean,
    "nn.KLDivLoss": _module_style,
    "kdlab.losses.kd_loss": kdlab.losses.kd_loss,
    "a float64 computation": lambda s, t, T: _manual_sum(s.double(), t.double(), T),
}


@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_loss_in_any_style_is_ok(name):
    audit = audit_kd_loss(CORRECT[name], show=False)
    assert audit.ok and audit.problems == [] and audit.notes == [] and bool(audit), audit


def _double_softmax(s, t, T):  # both models end with a Softmax layer
    return _log_softmax_kl(F.softmax(s, 1), F.softmax(t, 1), T)


def _nan_at_large_logits(s, t, T):  # log of a softmax: log(0) = -inf when a probability underflows
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    return (pt * (pt.log() - ps.log())).sum(1).mean() * T * T


def _detached_normaliser(s, t, T):  # the right value, but the softmax's normaliser is cut from autograd
    log_ps = s / T - torch.logsumexp(s / T, dim=1, keepdim=True).detach()
    log_pt = F.log_softmax(t / T, dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * T * T


def _in_place(s, t, T):
    s /= T
    t /= T
    return F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean") * T * T


BUGGY = {
    "kl_direction (log_target)": (lambda s, t, T: _log_target(t, s, T), {"kl_direction"}),
    "kl_direction (arguments swapped)": (pitfalls.kl_wrong_direction, {"kl_direction", "not_finite"}),
    "reduction_mean": (pitfalls.kl_reduction_mean, {"reduction_mean"}),
    "reduction_sum": (lambda s, t, T: F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="sum") * T * T,
                      {"reduction_sum"}),
    "missing_t_squared": (pitfalls.kl_without_t_squared, {"missing_t_squared"}),
    "times T only": (lambda s, t, T: _log_softmax_kl(s, t, T) / T, {"missing_t_squared"}),
    "student softened only": (pitfalls.kl_student_softened_only, {"one_sided_temperature"}),
    "teacher softened only": (pitfalls.kl_teacher_softened_only, {"one_sided_temperature"}),
    "no temperature": (lambda s, t, T: _log_softmax_kl(s * T, t * T, T), {"no_temperature"}),
    "probabilities_as_log": (lambda s, t, T: F.kl_div(F.softmax(s / T, 1), F.softmax(t / T, 1),
                                                      reduction="batchmean") * T * T, {"probabilities_as_log"}),
    "probabilities with log_target=True": (lambda s, t, T: F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1),
                                                                    reduction="batchmean", log_target=True) * T * T,
                                           {"probabilities_as_log"}),
    "double_softmax": (_double_softmax, {"double_softmax"}),
    "double softmax, student only": (lambda s, t, T: _log_softmax_kl(F.softmax(s, 1), t, T), {"double_softmax"}),
    "softmax after dividing by T": (lambda s, t, T: F.kl_div(F.log_softmax(F.softmax(s / T, 1), 1),
                                                             F.softmax(t / T, 1), reduction="batchmean") * T * T,
                                    {"double_softmax"}),
    "not_finite": (_nan_at_large_logits, {"not_finite"}),
    "log-probabilities as a plain target": (lambda s, t, T: F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1),
                                                                     reduction="batchmean") * T * T, {"not_finite"}),
    "no_gradient": (lambda s, t, T: torch.tensor(_log_softmax_kl(s, t, T).item()), {"no_gradient"}),
    "wrong_gradient": (lambda s, t, T: _detached_normaliser(s, t, T), {"wrong_gradient"}),
    "modifies_inputs": (_in_place, {"modifies_inputs"}),
    "not_a_scalar": (lambda s, t, T: (F.softmax(t / T, 1) * (F.log_softmax(t / T, 1) - F.log_softmax(s / T, 1))).sum(1),
                     {"not_a_scalar"}),
    "error": (lambda s, t, T: _log_softmax_kl(s, t[:, :10].reshape(-1, 10), T), {"error"}),
    "wrong_value": (lambda s, t, T: (s - t).pow(2).mean(), {"wrong_value"}),
    "the blog's loss": (pitfalls.blog_kd_loss, {"reduction_mean", "missing_t_squared", "one_sided_temperature"}),
    "everything at once": (lambda s, t, T: F.kl_div(F.softmax(t, 1), F.softmax(s / T, 1), reduction="mean"),
                           {"kl_direction", "probabilities_as_log", "reduction_mean", "missing_t_squared",
                            "one_sided_temperature", "not_finite"}),  # student probabilities as the target
}


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
@pytest.mark.parametrize("name", list(BUGGY))
def test_each_buggy_loss_gets_exactly_its_problems(name):
    fn, codes = BUGGY[name]
    audit = audit_kd_loss(fn, show=False)
    assert not audit.ok and not audit
    assert set(audit.problems) == codes, audit
    assert set(audit.explanations) == codes and all(audit.explanations[c] for c in codes)


def test_the_soft_cross_entropy_is_ok_with_a_note():
    audit = audit_kd_loss(lambda s, t, T: -(F.softmax(t / T, 1) * F.log_softmax(s / T, 1)).sum(1).mean() * T * T,
                          show=False)
    assert audit.ok and audit.notes == ["soft_cross_entropy"]
    assert "teacher's entropy" in str(audit)


def test_the_report_explains_each_problem_and_shows_once_in_a_notebook(capsys):
    audit = audit_kd_loss(pitfalls.kl_without_t_squared)
    printed = capsys.readouterr().out
    assert printed.strip() == str(audit)
    assert "❌ Audit of kl_without_t_squared: 1 problem." in printed and "missing_t_squared: The T² factor" in printed
    assert repr(audit) == "Audit('kl_without_t_squared', ok=False, problems=['missing_t_squared'])"
    assert audit._ipython_display_() is None  # printed already: nothing more as a cell's value
    good = audit_kd_loss(_manual_sum)
    assert capsys.readouterr().out.startswith("✅ Audit of _manual_sum: no problems.")
    assert isinstance(good, Audit) and str(good).startswith("✅")
    audit_kd_loss(_manual_sum, show=False)
    assert capsys.readouterr().out == ""


def test_every_problem_code_is_documented():
    assert set(PROBLEMS) >= {"kl_direction", "reduction_mean", "missing_t_squared", "one_sided_temperature",
                             "probabilities_as_log", "double_softmax", "not_finite"}
    assert all(text.strip() for text in PROBLEMS.values())


def test_an_unfinished_loss_is_reported_not_raised():
    def stub(s, t, T):
        raise NotImplementedError

    audit = audit_kd_loss(stub, show=False)
    assert audit.problems == ["error"] and "NotImplementedError" in audit.explanations["error"]


@pytest.mark.parametrize("bad", [None, 3, "kd_loss"])
def test_a_non_function_is_refused_with_a_clear_message(bad):
    with pytest.raises(ParameterTypeError, match=rf"fn={bad!r} is not callable; pass a function"):
        audit_kd_loss(bad)


def test_the_check_of_notebook_03_gives_the_auditors_explanation():
    for fn in (pitfalls.kl_without_t_squared, pitfalls.kl_student_softened_only,
               lambda s, t, T: _log_target(t, s, T)):
        feedback = kdlab.checks.check_kd_loss(fn)
        audit = audit_kd_loss(fn, show=False)
        assert not feedback and audit.explain() in feedback.message


def test_the_auditor_can_fail():
    """A wrong verdict would show: an auditor that called everything correct fails these."""
    assert "wrong_value" in audit_kd_loss(lambda s, t, T: s.sum() * 0, show=False).problems
    assert not audit_kd_loss(lambda s, t, T: _log_softmax_kl(s, t, T) * 1.01, show=False).ok
