"""Classic distillation mistakes as working code, so that notebook 10 can run and measure them.

Everything in the first two sections is WRONG on purpose. Each docstring says what the
mistake is, why it is wrong, what it does to training and what the fix is. Use them only
to see a mistake's symptom; the correct versions are :func:`kdlab.losses.kd_loss` and
:class:`kdlab.objectives.Distillation`. :func:`kdlab.checks.audit_kd_loss` names the
mistakes of every soft loss here.

* Soft losses ``(student_logits, teacher_logits, T) -> scalar``, for
  ``Distillation(teacher, T, alpha, soft_loss=...)``: :func:`kl_wrong_direction`,
  :func:`kl_reduction_mean`, :func:`kl_without_t_squared`, :func:`kl_student_softened_only`,
  :func:`kl_teacher_softened_only` and :func:`blog_kd_loss` (three mistakes at once: notebook
  10's exercise).
* :func:`with_softmax`: a model with a Softmax layer at its end (the double softmax).
* :class:`OnlineTeacherDistillation`: the teacher run on every batch by hand, with the two
  slips of a hand-written loop as switches (train mode, no ``torch.no_grad()``).
* Measurements: :func:`autograd_bytes` (memory held for a backward pass), :func:`time_teacher_pass`,
  :func:`soft_gradient_share` (how much of the update comes from the soft term),
  :func:`logits_in_train_mode`, and :func:`paired_effects` / :func:`format_effects` (a
  pitfall's runs against the correct runs with the same seeds, as paired 95% CIs).

kdlab puts ``alpha`` on the soft term; torchdistill's ``KDLoss`` and the Keras example put
it on the hard term, so the same number means the opposite (``Distillation(teacher, T,
1 - alpha)`` is what ``alpha`` means there).

Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
2015, arXiv:1503.02531.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import losses, validate
from .data import Batch, Split
from .errors import ParameterTypeError
from .objectives import Objective

# --- wrong soft losses ----------------------------------------------------------------------


def kl_wrong_direction(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """WRONG: ``T^2 * KL(p_s^T || p_t^T)``, the KL the wrong way round.

    ``F.kl_div(input, target)`` computes KL(target || input), so swapping its arguments
    (or the student and the teacher) makes the *student's* distribution the weights. That
    reverse KL barely cares about classes the student gives little probability to, which
    are exactly the teacher's small probabilities, the dark knowledge. Its gradient is also
    NaN when a student probability underflows to 0 (logits far apart).
    Fix: ``F.kl_div(F.log_softmax(student / T), F.softmax(teacher / T), reduction="batchmean")``.
    """
    return F.kl_div(F.log_softmax(teacher_logits / T, dim=1), F.softmax(student_logits / T, dim=1),
                    reduction="batchmean") * T * T


def kl_reduction_mean(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """WRONG: ``reduction="mean"`` instead of ``"batchmean"``.

    ``"mean"`` averages over batch × classes, so the KL is divided by the number of
    classes K as well: the soft term is K times too small. With K = 10 and alpha = 0.9 the
    soft and hard terms weigh 0.09 : 0.1, as alpha ≈ 0.47 would. PyTorch warns about this one.
    Fix: ``reduction="batchmean"``.
    """
    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="mean") * T * T


def kl_without_t_squared(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """WRONG: the KL without the T² factor.

    The soft term's gradient scales as 1/T² (Hinton et al., Sec. 2), so without T² its
    weight against the hard term falls as T rises: at T = 4 it pulls 16 times less than
    alpha says. Fix: multiply by ``T * T``.
    """
    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="batchmean")


def kl_student_softened_only(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """WRONG: the student at temperature T, the teacher at 1.

    The student is trained to make ``softmax(z_s / T)`` as sharp as the teacher's
    ``softmax(z_t)``, so its logits grow about T times too large: at T = 1, where it is
    used, it is overconfident. Fix: divide both logits by T.
    """
    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits, dim=1),
                    reduction="batchmean") * T * T


def kl_teacher_softened_only(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """WRONG: the teacher at temperature T, the student at 1.

    The student is trained to output the teacher's *softened* distribution at T = 1, so
    it learns to be underconfident. Fix: divide both logits by T.
    """
    return F.kl_div(F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="batchmean") * T * T


def blog_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """WRONG three times, as snippets on the web often are (notebook 10's exercise fixes it).

    The teacher is not softened (one-sided temperature), ``reduction="mean"`` divides by
    the number of classes too, and the T² factor is missing.
    """
    student_log_probs = F.log_softmax(student_logits / T, dim=1)
    teacher_probs = F.softmax(teacher_logits, dim=1)
    return F.kl_div(student_log_probs, teacher_probs, reduction="mean")


# --- a wrong model and a careless teacher ----------------------------------------------------

def with_softmax(model: nn.Module) -> nn.Sequential:
    """WRONG as a training output: ``model`` followed by a Softmax layer (the double softmax).

    ``F.cross_entropy`` (``nn.CrossEntropyLoss``) and the KD loss apply their own
    (log-)softmax, so they receive probabilities in [0, 1] and softmax them again. For a
    student, the logits the loss sees then differ by at most 1, so the cross-entropy can
    never get near 0 (about 1.46 at best with 10 classes) and its gradient never fades:
    the student learns more slowly and ends worse calibrated. For a teacher, its "logits"
    are probabilities, and ``softmax(p / T)`` is nearly uniform: the order of the classes
    survives, little else. The teacher's argmax is unchanged, so its accuracy does not
    reveal the mistake.
    Fix: models output logits; apply softmax only where probabilities are wanted.
    """
    if not isinstance(model, nn.Module):
        raise ParameterTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    return nn.Sequential(model, nn.Softmax(dim=1))


class OnlineTeacherDistillation(Objective):
    r"""Distillation with the teacher run on every batch, as a hand-written loop does.

    .. math:: L = \alpha \cdot T^2 \, KL(p_t^T \,\|\, p_s^T) + (1 - \alpha) \cdot CE(y, z_s)

    With both switches at their defaults this is correct, and in float32 (``fit``'s default on
    the CPU) it equals ``Distillation(Teacher(teacher, cache=False), T, alpha)``. Under bf16
    autocast (``fit``'s default on CUDA) they differ by rounding: :class:`~kdlab.teacher.Teacher`
    runs the teacher in bf16 (and channels_last), this class in float32. Each switch is one classic slip:

    * ``teacher_train_mode=True`` (WRONG): the teacher stays in train mode, as it does when a
      wrapper module holding both models is put in train mode. Dropout then drops teacher
      units at random, so its soft targets are noisy; BatchNorm normalises with each batch's
      statistics and updates its running statistics from every batch, which changes the teacher itself.
      Pass a copy (``copy.deepcopy(teacher)``). Fix: ``teacher.eval()``.
    * ``no_grad=False`` (WRONG): the teacher runs without ``torch.no_grad()``. Autograd keeps
      the teacher's activations for a backward pass, and ``loss.backward()`` runs through the
      teacher, computing gradients nothing uses. The student's numbers do not change; time
      and memory are wasted. Fix: ``with torch.no_grad(): teacher_logits = teacher(x)``.
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9, *,
                 teacher_train_mode: bool = False, no_grad: bool = True):
        super().__init__()
        if not isinstance(teacher, nn.Module):
            raise ParameterTypeError(f"teacher must be a torch.nn.Module (a trained model), "
                                     f"got {type(teacher).__name__}.")
        for name, flag in (("teacher_train_mode", teacher_train_mode), ("no_grad", no_grad)):
            if not isinstance(flag, bool):
                raise ParameterTypeError(f"{name} must be True or False, got {flag!r}.")
        self.model = teacher  # a submodule: fit moves it to the device with the objective
        self.temperature = validate.positive("temperature", temperature)
        self.alpha = validate.probability("alpha", alpha)
        self.teacher_train_mode, self.no_grad = teacher_train_mode, no_grad

    def prepare(self, split: Split, *, augment: bool, epochs: int, device: torch.device, amp: bool,
                num_classes: int) -> None:
        self.model.to(device)

    def forward(self, student_logits: torch.Tensor, batch: Batch):
        self.model.train(self.teacher_train_mode)
        with torch.no_grad() if self.no_grad else contextlib.nullcontext():
            teacher_logits = self.model(batch.x).float()  # (B, K)
        soft = losses.kd_loss(student_logits, teacher_logits, self.temperature, check=False)
        hard = F.cross_entropy(student_logits.float(), batch.y)
        loss = self.alpha * soft + (1.0 - self.alpha) * hard
        return loss, {"kd": soft.detach(), "ce": hard.detach()}

    def describe(self) -> dict:
        return {"objective": "OnlineTeacherDistillation", "temperature": self.temperature, "alpha": self.alpha,
                "teacher_train_mode": self.teacher_train_mode, "no_grad": self.no_grad}


# --- measurements ------------------------------------------------------------------------------

def autograd_bytes(model: nn.Module, x: torch.Tensor, *, no_grad: bool) -> int:
    """Bytes of the tensors autograd keeps for a backward pass while ``model(x)`` runs.

    These are the activations a backward pass through ``model`` would need; the model's own
    weights, which exist anyway, are not counted. Under ``torch.no_grad()`` (``no_grad=True``)
    nothing is kept: 0. A tensor kept by several operations counts once. The model's
    train/eval mode is left as it is.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            model(x)
    return sum(kept.values())


def soft_gradient_share(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                        temperature: float, alpha: float,
                        soft_loss: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = losses.kd_loss
                        ) -> float:
    """The soft term's share of the pull on the student's logits, in [0, 1]:

    ``|g_soft| / (|g_soft| + |g_hard|)`` with ``g_soft`` the gradient of ``alpha * soft_loss``
    and ``g_hard`` that of ``(1 - alpha) * CE`` with respect to ``student_logits`` (B, K).
    With the T² factor it stays about the same as T changes; without it, it falls.
    """
    temperature = validate.positive("temperature", temperature)
    alpha = validate.probability("alpha", alpha)
    z = student_logits.detach().float().clone().requires_grad_(True)
    (g_soft,) = torch.autograd.grad(alpha * soft_loss(z, teacher_logits.detach().float(), temperature), z)
    (g_hard,) = torch.autograd.grad((1.0 - alpha) * F.cross_entropy(z, targets), z)
    soft, hard = float(g_soft.norm()), float(g_hard.norm())
    return soft / (soft + hard) if soft + hard > 0 else float("nan")


def logits_in_train_mode(teacher: nn.Module, split: Split, *, batch_size: int = 128, seed: int = 0) -> torch.Tensor:
    """The logits ``(N, K)`` a teacher left in train mode gives on ``split``, in batches of
    ``batch_size`` (BatchNorm then normalises with each batch's statistics; dropout draws
    from ``seed``). Runs a copy, so ``teacher`` and its BatchNorm statistics stay as they are."""
    batch_size = validate.integer("batch_size", batch_size, low=1)
    careless = copy.deepcopy(teacher).train()
    device = next(careless.parameters()).device
    out = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(validate.integer("seed", seed, low=0))
        for batch in split.batches(batch_size, shuffle=False):
            out.append(careless(batch.x.to(device)).float().cpu())
    return torch.cat(out)


def paired_effects(rows: list[dict], reference: list[dict],
                   keys: tuple[str, ...] = ("accuracy", "nll", "ece", "kl_to_teacher"), *,
                   names: tuple[str, str] = ("pitfall", "correct")) -> dict[str, dict]:
    """Per metric, the paired difference ``rows - reference`` over the seeds they share, and
    its verdict from :func:`kdlab.experiments.compare`:
    ``{"accuracy_pp": {"mean", "ci95", "p_value", "word", "outcome", "phrase"}, "nll": {...}, ...}``
    (accuracy in percentage points; ``ci95`` is the half-width of the paired 95% CI; ``word`` is
    "higher", "lower" or "tie"; ``outcome`` "better", "worse" or "tie" for ``rows``, which way is
    better following :func:`kdlab.experiments.higher_is_better_for` (``word`` where neither is); ``phrase``
    the verdict to print, naming the two sides ``names``). Rows are
    :func:`kdlab.experiments.run_seeds` rows; a metric missing from a row is skipped."""
    from .experiments import compare, higher_is_better_for

    by_seed = {r["seed"]: r for r in reference}
    shared = [r for r in rows if r["seed"] in by_seed]
    if not shared:
        raise ValueError("rows and reference share no seed; a paired comparison needs runs with the same seeds.")
    out = {}
    for key in keys:
        if all(key in r and key in by_seed[r["seed"]] for r in shared):
            scale = 100.0 if key == "accuracy" else 1.0
            c = compare([r[key] for r in shared], [by_seed[r["seed"]][key] for r in shared], paired=True,
                        higher_is_better=higher_is_better_for(key), names=names, metric=key, scale=scale,
                        unit=" pp" if key == "accuracy" else "", digits=2 if key == "accuracy" else 3)
            out[f"{key}_pp" if key == "accuracy" else key] = {
                "mean": c.difference, "ci95": c.ci95, "p_value": c.p_value, "word": c.word, "outcome": c.outcome,
                "phrase": c.phrase}
    return out


def _is_effect(e) -> bool:
    return isinstance(e, dict) and {"mean", "ci95", "word", "phrase"} <= set(e)


def measurable(effect: dict) -> bool:
    """Whether :func:`kdlab.experiments.compare` found a direction (the paired 95% CI excludes 0,
    beyond float noise; never with one seed)."""
    return effect["word"] != "tie"


def costly(effects: dict[str, dict], keys: tuple[str, ...] = ("accuracy_pp", "nll")) -> bool:
    """Whether any of ``keys`` came out measurably worse than the reference (lower accuracy, higher NLL)."""
    return any(effects[k]["outcome"] == "worse" for k in keys if k in effects)


def format_effects(effects: dict[str, dict]) -> str:
    """``"accuracy −3.47 ± 1.46 pp (softmax in the student is lower than correct (worse)); nll ..."``:
    each paired difference with the verdict :func:`kdlab.experiments.compare` gave it.
    Entries that are not paired differences (other measurements kept alongside) are left out."""
    parts = []
    for key, e in effects.items():
        if not _is_effect(e):
            continue
        name, unit, digits = ("accuracy", " pp", 2) if key == "accuracy_pp" else (key, "", 3)
        parts.append(f"{name} {e['mean']:+.{digits}f} ± {e['ci95']:.{digits}f}{unit} ({e['phrase']})")
    return "; ".join(parts)


def time_teacher_pass(teacher: nn.Module, x: torch.Tensor, *, repeats: int = 10) -> dict[str, list[float]]:
    """Seconds the teacher's part of one training step takes, with and without ``torch.no_grad()``.

    With it: the teacher's forward pass on ``x``. Without it: the same forward pass recorded by
    autograd, plus the backward pass through the teacher that ``loss.backward()`` then runs.
    The two are timed alternately ``repeats`` times (after one untimed round), so a change in
    the machine's load hits both alike; returns ``{"no_grad": [...], "without": [...]}``, one
    time per repeat, for a paired comparison. Runs a copy in eval mode; ``teacher`` is untouched.
    """
    repeats = validate.integer("repeats", repeats, low=1)
    model = copy.deepcopy(teacher).eval()
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)

    def careful():
        with torch.no_grad():
            model(x)

    def careless():
        out = model(x)
        out.backward(torch.ones_like(out))  # the gradient a loss would send back into the teacher's logits

    times: dict[str, list[float]] = {"no_grad": [], "without": []}
    for i in range(repeats + 1):
        for name, step in (("no_grad", careful), ("without", careless)):
            sync()
            start = time.perf_counter()
            step()
            sync()
            if i > 0:  # the first round warms up caches and allocators
                times[name].append(time.perf_counter() - start)
    return times
