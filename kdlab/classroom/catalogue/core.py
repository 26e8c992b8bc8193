"""The exercises of the core lesson, notebooks 01-04.

Each autograder test runs the formative check first (its feedback names the usual
mistakes), then more inputs and the edge cases the check leaves out: other shapes
and temperatures, equal and very large logits, gradients, inputs left unchanged.
"""

from __future__ import annotations

import torch

from ... import losses, metrics
from ...checks import core_lesson as checks
from ..exercises import Exercise
from ..grading import unchanged


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# --- 01 ----------------------------------------------------------------------------------------

def _accuracy_tests(t):
    t.formative(checks.check_accuracy)
    gen = torch.Generator().manual_seed(10)
    for n, k in ((1, 3), (7, 2), (64, 10)):
        logits = torch.randn(n, k, generator=gen)
        targets = torch.randint(0, k, (n,), generator=gen)
        expected = (logits.argmax(1) == targets).float().mean().item()
        same = unchanged(logits)
        value = t.number(t.call(logits, targets))
        t.expect(value is not None and abs(value - expected) < 1e-6,
                 f"On {n} examples of {k} classes the accuracy is {expected:.4f}; {t.name} returned {value}.")
        t.expect(same(), f"{t.name} changed the logits it was given; compute on them without modifying them.")
    eye = torch.eye(5) * 3  # example i predicts class i
    t.expect(t.number(t.call(eye, torch.arange(5))) == 1.0, "When every prediction is right the accuracy is 1.0.")
    t.expect(t.number(t.call(eye, (torch.arange(5) + 1) % 5)) == 0.0, "When every prediction is wrong it is 0.0.")


def _most_confused_tests(t):
    ns = t.namespace
    t.expect("cm" in ns and "ds" in ns, "Grading needs the notebook's cm and ds: run the notebook from the top.")
    cm, names = ns["cm"], list(ns["ds"].class_names)
    if "pred" in ns:  # the notebook's predictions: cm must still be the confusion matrix made from them
        fresh = metrics.confusion_matrix(ns["pred"], ns["ds"].test.y, len(names))
        t.expect(torch.equal(torch.as_tensor(cm), fresh), "cm is no longer the teacher's confusion matrix: did "
                 "you change it in place (cm.fill_diagonal_)? Work on a copy, cm.clone().")
    t.formative(checks.check_most_confused, cm, names)
    answer = t.answer
    t.expect(isinstance(answer, (tuple, list)) and len(answer) == 2,
             f"answer should be one pair (true class, predicted class), got {answer!r}.")
    t.expect(all(isinstance(a, str) and a in names for a in answer),
             f"Use class names from ds.class_names (strings such as {names[0]!r}), not indices: got {answer!r}.")


ACCURACY = Exercise(
    id="accuracy", notebook="01_teacher_training", answer="my_accuracy", points=2,
    hints=("logits.argmax(dim=1) is each example's predicted class, shape (N,).",
           "Compare the predictions with targets, turn the booleans into floats and average them: "
           "(pred == targets).float().mean()."),
    stub='''def my_accuracy(logits, targets):
    # Compare the predicted class (the argmax over classes) with targets.
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''return (logits.argmax(dim=1) == targets).float().mean().item()''',
    check="kdlab.checks.check_accuracy(my_accuracy)",
    references=(),
    tests=_accuracy_tests,
)

MOST_CONFUSED = Exercise(
    id="most_confused", notebook="01_teacher_training", answer="answer", points=2,
    hints=("The diagonal of cm counts correct answers: on a copy, off = cm.clone(), set it to -1 "
           "(off.fill_diagonal_(-1)) so that the largest entry is a mistake.",
           "off.argmax() is a position in the flattened matrix: divmod(int(off.argmax()), off.shape[1]) gives "
           "(row, column) = (true, predicted); look both up in ds.class_names."),
    stub='''answer = None  # e.g. ("4", "9")
# YOUR CODE HERE''',
    solution='''off = cm.clone()
off.fill_diagonal_(-1)  # never pick the diagonal: those are the correct answers
true, predicted = divmod(int(off.argmax()), off.shape[1])
answer = (ds.class_names[true], ds.class_names[predicted])''',
    check="kdlab.checks.check_most_confused(answer, cm, ds.class_names)",
    references=("kdlab.metrics.most_confused_pairs", "pairs"),
    tests=_most_confused_tests,
)


# --- 02 ----------------------------------------------------------------------------------------

def _soft_targets_tests(t):
    t.formative(checks.check_soft_targets)
    for shape, T, seed in (((1, 3), 1.0, 20), ((6, 10), 0.5, 21), ((6, 10), 10.0, 22)):
        logits = _randn(*shape, seed=seed, scale=3)
        same = unchanged(logits)
        value = t.call(logits, T)
        t.expect(t.close(value, torch.softmax(logits / T, dim=-1)),
                 f"Wrong for logits of shape {shape} at T = {T}: expected softmax(logits / T) over the classes.")
        t.expect(same(), f"{t.name} changed the logits it was given (an in-place division?); use logits / T.")
    big = torch.tensor([[2000.0, 0.0, -2000.0]])
    t.expect(t.close(t.call(big, 0.5), torch.tensor([[1.0, 0.0, 0.0]])),
             "Overflow: for logits of ±2000 at T = 0.5 the result must be [1, 0, 0]; subtract the largest logit "
             "before exp().")
    logits = _randn(4, 5, seed=23).requires_grad_()
    mine = t.call(logits, 2.0)
    t.expect(isinstance(mine, torch.Tensor) and mine.requires_grad,
             f"No gradient flows through {t.name}: keep the computation in torch (no .item(), no numpy).")
    (grad,) = torch.autograd.grad(mine[:, 0].sum(), logits)
    (want,) = torch.autograd.grad(torch.softmax(logits / 2.0, -1)[:, 0].sum(), logits)
    t.expect(t.close(grad, want), "The gradient through your soft targets differs from softmax(logits / T)'s.")


def _entropy_tests(t):
    t.formative(checks.check_entropy_bits)
    uniform = torch.full((1, 10), 0.1)
    t.expect(t.close(t.call(uniform), torch.tensor([torch.log2(torch.tensor(10.0)).item()]), atol=1e-4),
             "The uniform distribution over 10 classes has log2(10) ≈ 3.32 bits.")
    one_hot = torch.eye(4)
    t.expect(t.close(t.call(one_hot), torch.zeros(4)), "A one-hot row (a certain answer) has 0 bits, with no NaN.")
    p = torch.softmax(_randn(8, 5, seed=24, scale=2), dim=1).double()
    same = unchanged(p)
    t.expect(t.close(t.call(p), losses.entropy(p)), "Wrong for random distributions (8 rows of 5 classes).")
    t.expect(same(), f"{t.name} changed the probabilities it was given; leave its input as it is.")


SOFT_TARGETS = Exercise(
    id="soft_targets", notebook="02_soft_targets", answer="my_soft_targets", points=3,
    hints=("Divide the logits by T first, then take the softmax over the class dimension (dim=-1).",
           "softmax(z) = exp(z) / sum(exp(z)); subtract z.max(dim=-1, keepdim=True).values from z first, which "
           "changes nothing but keeps exp() from overflowing."),
    stub='''def my_soft_targets(logits, T):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''z = logits / T
z = z - z.max(dim=-1, keepdim=True).values  # the same softmax, and exp() cannot overflow
return z.exp() / z.exp().sum(dim=-1, keepdim=True)''',
    check='''if kdlab.checks.check_soft_targets(my_soft_targets):
    torch.testing.assert_close(my_soft_targets(logits, 4.0), kdlab.losses.soft_targets(logits, 4.0))''',
    references=("kdlab.losses.soft_targets",),
    tests=_soft_targets_tests,
)

ENTROPY_BITS = Exercise(
    id="entropy_bits", notebook="02_soft_targets", answer="my_entropy", points=3,
    hints=("H(p) = -Σ p log2 p over each row: torch.log2, then a sum over dim=-1.",
           "log2(0) is -inf and 0 · -inf is NaN: clamp p inside the log (p.clamp_min(1e-30)), which makes 0 · log 0 "
           "count as 0."),
    stub='''def my_entropy(p):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''logs = torch.log2(p.clamp_min(1e-30))  # 0 · log 0 counts as 0
return -(p * logs).sum(dim=-1)''',
    check="kdlab.checks.check_entropy_bits(my_entropy)",
    references=("kdlab.losses.entropy",),
    tests=_entropy_tests,
)


# --- 03 ----------------------------------------------------------------------------------------

def kd_loss_trials(t, cases, seed: int) -> None:
    """The autograder's trials of a KD loss ``t.call(s, z, T)`` (shared by 03's exercise and 10's).

    ``cases`` are ((batch, classes), T) pairs; seeds count up from ``seed``.
    """
    for i, ((b, k), T) in enumerate(cases):
        s, z = _randn(b, k, seed=seed + i, scale=2), _randn(b, k, seed=seed + i + 100, scale=4)
        same = unchanged(s), unchanged(z)
        t.expect(t.close(t.call(s, z, T), losses.kd_loss(s, z, T), atol=1e-5),
                 f"Wrong for a batch of {b} with {k} classes at T = {T}: expected T² · KL(p_t^T ‖ p_s^T), "
                 "averaged over the batch.")
        t.expect(all(check() for check in same), f"{t.name} changed the logits it was given; use s / T, not s /= T.")
    seed += len(cases)
    s = _randn(8, 10, seed=seed, scale=3)
    t.expect(t.close(t.call(s, s.clone(), 2.0), torch.tensor(0.0), atol=1e-5),
             "The loss must be 0 when the student's logits equal the teacher's.")
    big_s, big_z = _randn(4, 10, seed=seed + 1, scale=1000), _randn(4, 10, seed=seed + 2, scale=1000)
    t.expect(t.close(t.call(big_s, big_z, 2.0), losses.kd_loss(big_s, big_z, 2.0), atol=1e-2, rtol=1e-3),
             "Wrong or not finite for logits of size ~1000: use log_softmax (not log of softmax) for the student.")
    s, z = _randn(16, 10, seed=seed + 3, scale=2).requires_grad_(), _randn(16, 10, seed=seed + 4, scale=4)
    mine = t.call(s, z, 4.0)
    t.expect(isinstance(mine, torch.Tensor) and mine.requires_grad,
             f"No gradient flows through {t.name}: keep the computation in torch (no .item(), no numpy).")
    (grad,) = torch.autograd.grad(mine, s)
    (want,) = torch.autograd.grad(losses.kd_loss(s, z, 4.0), s)
    t.expect(t.close(grad, want, atol=1e-6), "The gradient with respect to the student's logits is wrong, so "
             "training with this loss would not distil.")


def _kd_loss_tests(t):
    t.formative(checks.check_kd_loss)
    kd_loss_trials(t, (((1, 4), 1.0), ((32, 10), 0.5), ((32, 10), 10.0), ((5, 3), 4.0)), seed=30)


KD_LOSS = Exercise(
    id="kd_loss", notebook="03_temperature", answer="my_kd_loss", points=5,
    hints=("Soften both: F.log_softmax(student_logits / T, dim=1) for the student, F.softmax(teacher_logits / T, "
           "dim=1) for the teacher. The teacher's distribution is the target.",
           "F.kl_div(student_log_probs, teacher_probs, reduction='batchmean') is KL(teacher ‖ student) averaged "
           "over the batch; multiply it by T * T."),
    stub='''def my_kd_loss(student_logits, teacher_logits, T):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''log_p_student = F.log_softmax(student_logits / T, dim=1)  # (B, K)
p_teacher = F.softmax(teacher_logits / T, dim=1)  # (B, K): the target distribution
kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean")  # KL(p_t ‖ p_s), mean over the batch
return kl * T * T  # T² keeps the gradient's size the same at every T''',
    check="kd_loss_done = kdlab.checks.check_kd_loss(my_kd_loss)",
    references=("kdlab.losses.kd_loss", "kdlab.losses.distillation_loss"),
    tests=_kd_loss_tests,
)


# --- 04 ----------------------------------------------------------------------------------------

def _gap_closed_tests(t):
    t.formative(checks.check_gap_closed)
    for args, expected, why in (((0.99, 0.95, 0.99), 1.0, "a student as good as the teacher closes all of it"),
                                ((0.93, 0.95, 0.99), -0.5, "a student worse than scratch closes a negative share"),
                                ((0.8, 0.6, 0.9), 2 / 3, "")):
        value = t.number(t.call(*args))
        t.expect(value is not None and abs(value - expected) < 1e-6,
                 f"For (student, scratch, teacher) = {args} the answer is {expected:.4f}" + (f": {why}" if why else "")
                 + f"; got {value}.")


def _ece_tests(t):
    t.formative(checks.check_ece)
    sure = torch.eye(10)[:6]  # confidence 1 on classes 0..5
    t.expect(t.close(t.number(t.call(sure, torch.arange(6))), 0.0, atol=1e-6),
             "Confident and always right is perfectly calibrated: the ECE is 0.")
    t.expect(t.close(t.number(t.call(sure, (torch.arange(6) + 1) % 10)), 1.0, atol=1e-6),
             "Confident (1.0) and always wrong: the ECE is 1.")
    flat = torch.full((4, 4), 0.25)  # confidence 0.25, predicts class 0
    t.expect(t.close(t.number(t.call(flat, torch.tensor([0, 0, 1, 2]))), 0.25, atol=1e-6),
             "Confidence 0.25 with accuracy 0.5 in one bin gives an ECE of 0.25.")
    for n, seed in ((37, 40), (500, 41)):
        gen = torch.Generator().manual_seed(seed)
        probs = torch.softmax(torch.randn(n, 5, generator=gen) * 2, dim=1)
        targets = torch.randint(0, 5, (n,), generator=gen)
        expected = metrics.reliability(probs, targets, 15)["ece"]
        value = t.number(t.call(probs, targets))
        t.expect(value is not None and abs(value - expected) < 1e-4,
                 f"On {n} random examples the ECE is {expected:.4f}; got {value}.")


GAP_CLOSED = Exercise(
    id="gap_closed", notebook="04_student_comparison", answer="my_gap_closed", points=2,
    hints=("The gap is teacher − scratch; the distilled student closes student − scratch of it.",
           "Return the ratio (student − scratch) / (teacher − scratch) as a fraction, not a percentage."),
    stub='''def my_gap_closed(student, scratch, teacher):
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''return (student - scratch) / (teacher - scratch)''',
    check="kdlab.checks.check_gap_closed(my_gap_closed)",
    references=("kdlab.experiments.gap_closed",),
    tests=_gap_closed_tests,
)

ECE = Exercise(
    id="ece", notebook="04_student_comparison", answer="my_ece", points=4,
    hints=("confidence, predicted = probs.max(dim=1); correct = (predicted == targets).float(). Bin b holds the "
           "examples with b/15 < confidence <= (b+1)/15.",
           "For each non-empty bin add (share of all examples in the bin) × |mean of correct − mean of confidence| "
           "in the bin."),
    stub='''def my_ece(probs, targets):
    # probs is (N, K), targets is (N,).
    # YOUR CODE HERE
    raise NotImplementedError''',
    solution='''confidence, predicted = probs.max(dim=1)
correct = (predicted == targets).float()
ece = 0.0
for b in range(15):
    in_bin = (confidence > b / 15) & (confidence <= (b + 1) / 15)  # the bin (b/15, (b+1)/15]
    if in_bin.any():
        gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
        ece += in_bin.float().mean().item() * gap.item()
return ece''',
    check="kdlab.checks.check_ece(my_ece)",
    references=("kdlab.metrics.reliability",),
    tests=_ece_tests,
)

EXERCISES = (ACCURACY, MOST_CONFUSED, SOFT_TARGETS, ENTROPY_BITS, KD_LOSS, GAP_CLOSED, ECE)
