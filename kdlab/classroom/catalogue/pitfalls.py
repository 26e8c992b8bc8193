"""The exercise of notebook 10 (the pitfalls lab): fix a distillation loss copied from the web.

``blog_kd_loss`` (:mod:`kdlab.pitfalls`) has three mistakes; the formative check audits the
learner's fix with :func:`kdlab.checks.audit_kd_loss` and says which are left. The
autograder then tries other shapes and temperatures, equal and very large logits, the
gradient, and inputs left unchanged.
"""

from __future__ import annotations

from ...checks import audit as checks
from ..exercises import Exercise
from .core import kd_loss_trials


def _fix_kd_loss_tests(t):
    t.formative(checks.check_fixed_kd_loss)
    kd_loss_trials(t, (((1, 3), 1.0), ((32, 10), 0.5), ((12, 10), 8.0), ((7, 100), 4.0)), seed=50)


FIX_KD_LOSS = Exercise(
    id="fix_kd_loss", notebook="10_pitfalls", answer="my_fixed_kd_loss", points=3,
    hints=("kdlab.checks.audit_kd_loss(kdlab.pitfalls.blog_kd_loss) names its three problems; fix one at a time and "
           "run the check after each.",
           "Soften the teacher too, softmax(teacher_logits / T); reduction='batchmean' divides by the batch size "
           "only; multiply the result by T * T."),
    stub='''def my_fixed_kd_loss(student_logits, teacher_logits, T):
    # Start from blog_kd_loss (shown above) and fix every problem the audit named.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''student_log_probs = F.log_softmax(student_logits / T, dim=1)
teacher_probs = F.softmax(teacher_logits / T, dim=1)  # soften the teacher too
return F.kl_div(student_log_probs, teacher_probs, reduction="batchmean") * T * T  # per example, times T²''',
    check="kdlab.checks.check_fixed_kd_loss(my_fixed_kd_loss)",
    references=("kdlab.losses.kd_loss", "kdlab.losses.distillation_loss"),
    tests=_fix_kd_loss_tests,
)

EXERCISES = (FIX_KD_LOSS,)
