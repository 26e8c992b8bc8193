r"""Adversarial distillation: the student as a generator, a discriminator as its critic.

A small discriminator ``D`` learns to tell the teacher's softened output distribution
``p_t^T = softmax(z_t / T)`` (labelled *real*) from the student's ``p_s^T`` (*fake*) on the
same example, optionally conditioned on the example's label (one-hot) and/or a pooled
copy of its input. The student is trained to fool ``D``; its loss is

.. math:: L_s = w_{adv} \, L_G(D(p_s^T, c)) + w_{kd} \, T^2 KL(p_t^T \| p_s^T) + w_{ce} \, CE(y, z_s)

so "adversarial alone" is ``w_kd = 0``, "KD + adversarial" is ``w_kd > 0`` and ``w_adv > 0``,
and plain KD is :class:`kdlab.objectives.Distillation` (``w_kd = alpha``, ``w_ce = 1 - alpha``,
kdlab's convention of alpha on the soft term). Loss choices for the two-player game:

* ``"bce"``: the original GAN loss (Goodfellow et al. 2014) with the non-saturating
  student loss, ``L_D = -log D(real) - log(1 - D(fake))``, ``L_G = -log D(fake)``
  (``D`` outputs a logit; scores > 0 mean "real").
* ``"lsgan"``: least squares (Mao et al. 2017), ``L_D = ½(D(real) - 1)² + ½D(fake)²``,
  ``L_G = ½(D(fake) - 1)²`` (scores > 0.5 mean "real").
* ``"hinge"``: ``L_D = relu(1 - D(real)) + relu(1 + D(fake))``, ``L_G = -D(fake)``
  (as in later GAN work; scores > 0 mean "real").

The discriminator is a training aid only: it lives inside the objective, is never part of
the student, and is thrown away after training. The deployed model is the student alone.

How it fits the one loop (:func:`kdlab.train.fit`): the objective owns its teacher, like
:class:`kdlab.objectives.Distillation`; ``forward`` returns the student's loss (with ``D``'s
parameters frozen, so the student's backward pass leaves them alone); ``after_step`` then
trains ``D`` for ``d_steps`` steps on the same batch, with the student's logits detached.
``D``'s Adam optimiser is created lazily on the first ``after_step``, after ``fit`` has moved
the objective to the device. (A training state saved through ``checkpoint_path`` holds
``D``'s weights but not its optimiser's moments.)

References: Z. Xu, Y.-C. Hsu, J. Huang, "Training Shallow and Thin Networks for
Acceleration via Knowledge Distillation with Conditional Adversarial Networks",
arXiv:1709.00513, 2017 (ICLR 2018 workshop); X. Wang, R. Zhang, Y. Sun, J. Qi, "KDGAN:
Knowledge Distillation with Generative Adversarial Networks", NeurIPS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import losses, validate
from .errors import ParameterError, ParameterTypeError
from .objectives import Objective, as_teacher
from .teacher import Teacher

LOSSES = ("bce", "lsgan", "hinge")
CONDITIONS = ("none", "label", "input", "label+input")


# --- the pieces of the game, as plain functions ---------------------------------------------

def conditioned_input(probs: torch.Tensor, targets: torch.Tensor | None, num_classes: int,
                      features: torch.Tensor | None = None) -> torch.Tensor:
    """What the discriminator sees: ``[probs, one_hot(targets), features]`` concatenated on dim 1.

    ``probs`` is ``(B, K)``; ``targets`` (``(B,)`` class indices) or ``features`` (``(B, F)``)
    may be ``None`` to leave that part out. Returns ``(B, K [+ K] [+ F])`` float32.
    """
    parts = [probs.float()]
    if targets is not None:
        parts.append(F.one_hot(targets, num_classes).float())
    if features is not None:
        parts.append(features.float().flatten(1))
    return torch.cat(parts, dim=1)


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, loss: str = "bce") -> torch.Tensor:
    """The discriminator's loss on its scores ``(B,)`` for real (teacher) and fake (student) inputs."""
    validate.choice("loss", loss, LOSSES)
    if loss == "bce":
        return (F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
                + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores)))
    if loss == "lsgan":
        return 0.5 * ((real_scores - 1.0) ** 2).mean() + 0.5 * (fake_scores ** 2).mean()
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def generator_loss(fake_scores: torch.Tensor, loss: str = "bce") -> torch.Tensor:
    """The student's adversarial loss: small when the discriminator scores its outputs as real."""
    validate.choice("loss", loss, LOSSES)
    if loss == "bce":  # non-saturating: -log D(fake), strong gradients even when D is winning
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
    if loss == "lsgan":
        return 0.5 * ((fake_scores - 1.0) ** 2).mean()
    return -fake_scores.mean()


def decision_threshold(loss: str) -> float:
    """Score above which the discriminator calls an input real: 0.5 for lsgan (targets 0/1), else 0."""
    validate.choice("loss", loss, LOSSES)
    return 0.5 if loss == "lsgan" else 0.0


def discriminator_accuracy(real_scores: torch.Tensor, fake_scores: torch.Tensor,
                           loss: str = "bce") -> tuple[torch.Tensor, torch.Tensor]:
    """Fractions of real inputs scored real and of fake inputs scored fake (0-dim tensors)."""
    threshold = decision_threshold(loss)
    return (real_scores > threshold).float().mean(), (fake_scores <= threshold).float().mean()


# --- the discriminator --------------------------------------------------------------------

class Discriminator(nn.Module):
    """An MLP scoring a distribution ``(B, K)`` as teacher-like (high) or student-like (low).

    Args:
        num_classes: K, the length of the distributions it judges.
        hidden: hidden layer widths, e.g. ``(64,)``; ``()`` gives a linear discriminator.
        condition: what else it sees: ``"none"``, ``"label"`` (one-hot of the true class),
            ``"input"`` (the input average-pooled to ``input_pool x input_pool`` per channel,
            flattened) or ``"label+input"``.
        input_shape: ``(C, H, W)`` of the inputs; needed when the condition uses the input.
        input_pool: side of the pooled input image (7 turns a 28x28 digit into 49 numbers).
        seed: seeds the initial weights (the global RNG is left as it was).
    """

    def __init__(self, num_classes: int, *, hidden: Sequence[int] = (64,), condition: str = "label",
                 input_shape: Sequence[int] | None = None, input_pool: int = 7, seed: int | None = 0):
        super().__init__()
        self.num_classes = validate.integer("num_classes", num_classes, low=2)
        self.hidden = validate.int_tuple("hidden", hidden)
        self.condition = validate.choice("condition", condition, CONDITIONS)
        self.input_pool = validate.integer("input_pool", input_pool, low=1)
        uses_input = "input" in self.condition
        if uses_input:
            if input_shape is None:
                raise ParameterError(f"condition={condition!r} conditions on the input, so input_shape=(C, H, W) "
                                     "is needed (e.g. input_shape=ds.input_shape).")
            input_shape = validate.int_tuple("input_shape", input_shape)
            if len(input_shape) != 3:
                raise ParameterError(f"input_shape={input_shape!r} must be (channels, height, width).")
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        width = self.num_classes * (2 if "label" in self.condition else 1)
        if uses_input:
            width += self.input_shape[0] * self.input_pool ** 2
        self.in_features = width
        layers: list[nn.Module] = []
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(validate.integer("seed", seed, low=0))
            for h in self.hidden:
                layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
                width = h
            layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Pooled, flattened inputs ``(B, C * input_pool**2)`` used as the input condition."""
        return F.adaptive_avg_pool2d(inputs.float(), self.input_pool).flatten(1)

    def forward(self, probs: torch.Tensor, targets: torch.Tensor | None = None,
                inputs: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(B,)`` for the distributions ``probs`` ``(B, K)``; higher means "teacher"."""
        if probs.dim() != 2 or probs.shape[1] != self.num_classes:
            raise ParameterError(f"probs has shape {tuple(probs.shape)}; the discriminator expects "
                                 f"(batch, {self.num_classes}).")
        use_label = "label" in self.condition
        use_input = "input" in self.condition
        if use_label and targets is None:
            raise ParameterError(f"condition={self.condition!r} needs targets (the true classes).")
        if use_input and inputs is None:
            raise ParameterError(f"condition={self.condition!r} needs inputs (the batch of images).")
        x = conditioned_input(probs, targets if use_label else None, self.num_classes,
                              self.features(inputs) if use_input else None)
        return self.net(x).squeeze(1)


# --- the objective ----------------------------------------------------------------------------

class AdversarialDistillation(Objective):
    r"""Student loss ``w_adv * L_G + w_kd * T^2 KL + w_ce * CE`` against an owned discriminator.

    Args:
        teacher: the trained teacher (an ``nn.Module``, or a :class:`~kdlab.teacher.Teacher`).
        num_classes: K.
        temperature: T; both distributions shown to the discriminator are ``softmax(z / T)``.
        adv_weight, kd_weight, ce_weight: weights of the adversarial, KD (``T^2 KL``) and
            cross-entropy terms (each >= 0, not all 0).
        loss: ``"bce"``, ``"lsgan"`` or ``"hinge"`` (see the module docstring).
        d_lr: the discriminator's Adam learning rate (betas 0.5, 0.999, as is usual for GANs).
        d_hidden, condition, input_shape, input_pool: the :class:`Discriminator`'s architecture.
        d_steps: discriminator updates per student step.
        seed: seeds the discriminator's initial weights.

    Logs per batch (0-dim detached tensors): ``g_loss``, ``kd``, ``ce`` from ``forward`` and
    ``d_loss``, ``d_acc_real``, ``d_acc_fake``, ``d_acc`` from ``after_step`` (accuracy
    of the discriminator's last update, measured before that update).
    """

    def __init__(self, teacher: nn.Module | Teacher, num_classes: int, *, temperature: float = 4.0, adv_weight: float = 1.0,
                 kd_weight: float = 0.0, ce_weight: float = 0.0, loss: str = "bce", d_lr: float = 1e-3,
                 d_hidden: Sequence[int] = (64,), condition: str = "label",
                 input_shape: Sequence[int] | None = None, input_pool: int = 7, d_steps: int = 1,
                 seed: int = 0):
        super().__init__()
        self.teacher = as_teacher(teacher)
        self.temperature = validate.positive("temperature", temperature)
        self.adv_weight = validate.real("adv_weight", adv_weight, low=0.0)
        self.kd_weight = validate.real("kd_weight", kd_weight, low=0.0)
        self.ce_weight = validate.real("ce_weight", ce_weight, low=0.0)
        if self.adv_weight == self.kd_weight == self.ce_weight == 0.0:
            raise ParameterError("adv_weight, kd_weight and ce_weight are all 0: the student would learn "
                                 "nothing. Set at least one > 0.")
        self.loss = validate.choice("loss", loss, LOSSES)
        self.d_lr = validate.positive("d_lr", d_lr)
        if self.d_lr > 1.0:
            raise ParameterError(f"d_lr={d_lr!r} is outside the accepted range (0, 1.0] for Adam.")
        self.d_steps = validate.integer("d_steps", d_steps, low=1)
        self.seed = validate.integer("seed", seed, low=0)
        self.discriminator = Discriminator(num_classes, hidden=d_hidden, condition=condition,
                                           input_shape=input_shape, input_pool=input_pool, seed=self.seed)
        self._optimizer: torch.optim.Optimizer | None = None

    # The student's backward pass must not touch D: its parameters stop requiring grad while
    # the student's loss graph is built (autograd records requires_grad when each op runs).
    @contextmanager
    def _frozen(self):
        flags = [p.requires_grad for p in self.discriminator.parameters()]
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(self.discriminator.parameters(), flags):
                p.requires_grad_(flag)

    def _condition(self, targets, inputs):
        d = self.discriminator
        return (targets if "label" in d.condition else None), (inputs if "input" in d.condition else None)

    def forward(self, student_logits, batch):
        teacher_logits = self.teacher.logits(batch)  # (B, K)
        targets = batch.y
        y_cond, x_cond = self._condition(targets, batch.x)
        fake = losses.soft_targets(student_logits, self.temperature)
        with self._frozen():
            g = generator_loss(self.discriminator(fake, y_cond, x_cond), self.loss)
        if self.kd_weight > 0:
            kd = losses.kd_loss(student_logits, teacher_logits, self.temperature)
        else:
            with torch.no_grad():
                kd = losses.kd_loss(student_logits, teacher_logits, self.temperature)
        ce = F.cross_entropy(student_logits.float(), targets)
        loss = self.adv_weight * g
        if self.kd_weight > 0:
            loss = loss + self.kd_weight * kd
        if self.ce_weight > 0:
            loss = loss + self.ce_weight * ce
        return loss, {"g_loss": g.detach(), "kd": kd.detach(), "ce": ce.detach()}

    def optimizer(self) -> torch.optim.Optimizer:
        """The discriminator's Adam, created on first use where its parameters now live."""
        device = next(self.discriminator.parameters()).device
        if self._optimizer is None or self._optimizer_device != device:
            self._optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.d_lr, betas=(0.5, 0.999))
            self._optimizer_device = device
        return self._optimizer

    def after_step(self, student_logits, batch) -> dict[str, torch.Tensor]:
        """Train the discriminator ``d_steps`` times on this batch; returns its logs."""
        opt = self.optimizer()
        teacher_logits = self.teacher.logits(batch)  # the same tensor forward used: looked up once
        y_cond, x_cond = self._condition(batch.y, batch.x)
        with torch.no_grad():
            real = losses.soft_targets(teacher_logits, self.temperature)
            fake = losses.soft_targets(student_logits.detach(), self.temperature)
        self.discriminator.train()
        for _ in range(self.d_steps):
            real_scores = self.discriminator(real, y_cond, x_cond)
            fake_scores = self.discriminator(fake, y_cond, x_cond)
            d_loss = discriminator_loss(real_scores, fake_scores, self.loss)
            opt.zero_grad(set_to_none=True)
            d_loss.backward()
            opt.step()
        acc_real, acc_fake = discriminator_accuracy(real_scores.detach(), fake_scores.detach(), self.loss)
        return {"d_loss": d_loss.detach(), "d_acc_real": acc_real, "d_acc_fake": acc_fake,
                "d_acc": 0.5 * (acc_real + acc_fake)}

    def describe(self) -> dict:
        d = self.discriminator
        return {"objective": "AdversarialDistillation", "teacher_logits": self.teacher.mode, "temperature": self.temperature,
                "adv_weight": self.adv_weight, "kd_weight": self.kd_weight, "ce_weight": self.ce_weight,
                "loss": self.loss, "d_lr": self.d_lr, "d_hidden": list(d.hidden), "condition": d.condition,
                "input_pool": d.input_pool, "d_steps": self.d_steps, "d_seed": self.seed,
                "d_params": sum(p.numel() for p in d.parameters())}


# --- is the game healthy? -------------------------------------------------------------------------

@dataclass
class Diagnosis:
    """The verdict of :func:`diagnose`: ``verdict`` is one of ``VERDICTS``; ``reason`` says why."""

    verdict: str
    reason: str
    stats: dict = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.verdict == "balanced"

    def __str__(self) -> str:
        return f"{self.verdict}: {self.reason}"


VERDICTS = ("diverged", "collapsed", "discriminator won", "unstable", "balanced")


def _records(history) -> list[dict]:
    if hasattr(history, "records"):
        return list(history.records)
    if isinstance(history, Mapping) and "records" in history:
        return list(history["records"])
    if isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        return list(history)
    raise ParameterTypeError(f"history must be a kdlab History, its to_dict(), or a list of epoch records; "
                             f"got {type(history).__name__}.")


def diagnose(history, *, won_acc: float = 0.9, rise: float = 0.1, collapse_acc: float = 0.2,
             spike: float = 3.0, tail: float = 1 / 3) -> Diagnosis:
    """Classify an adversarial run from its per-epoch records (``fit``'s History).

    Checks, in this order, over the last ``tail`` fraction of epochs (at least one):

    1. **diverged**: a non-finite ``train_loss``, ``g_loss`` or ``d_loss`` anywhere.
    2. **collapsed**: the student's final training accuracy is below ``collapse_acc``
       (0.2, twice chance for 10 classes): its outputs no longer carry the class.
    3. **discriminator won**: the discriminator's mean accuracy (real and fake averaged)
       over the tail is at least ``won_acc`` (0.9): it tells the student from the teacher
       almost always, so the student's adversarial signal is saturated or noisy. The reason
       also says whether the student's ``g_loss`` rose, i.e. whether its tail mean exceeds its
       lowest epoch by more than ``rise`` (10%) -- the usual sign of a losing generator.
    4. **unstable**: the game swung on the way: in some epoch the discriminator's accuracy
       reached ``won_acc``, or the student's ``g_loss`` peaked above ``spike`` (3) times its
       median over the run, even though the tail looks calm.
    5. **balanced**: otherwise -- the discriminator is right often but not always, so
       the student keeps receiving a useful, steady signal.

    Returns a :class:`Diagnosis` (``str()`` gives "verdict: reason").
    """
    won_acc = validate.probability("won_acc", won_acc)
    rise = validate.real("rise", rise, low=0.0)
    collapse_acc = validate.probability("collapse_acc", collapse_acc)
    tail = validate.real("tail", tail, low=0.0, high=1.0, low_open=True)
    records = _records(history)
    if not records:
        raise ParameterError("history has no epochs to diagnose.")
    missing = [k for k in ("g_loss", "d_loss", "d_acc_real", "d_acc_fake") if k not in records[0]]
    if missing:
        raise ParameterError(f"history lacks {missing}: diagnose() needs a run trained with "
                             "AdversarialDistillation.")
    col = lambda key: [float(r.get(key, float("nan"))) for r in records]  # noqa: E731
    n_tail = max(1, math.ceil(tail * len(records)))
    g, d_loss = col("g_loss"), col("d_loss")
    acc = [(a + b) / 2 for a, b in zip(col("d_acc_real"), col("d_acc_fake"))]
    train_loss = col("train_loss") if "train_loss" in records[0] else []
    stats = {"epochs": len(records), "tail_epochs": n_tail}
    bad = [k for k, v in (("train_loss", train_loss), ("g_loss", g), ("d_loss", d_loss))
           if any(not math.isfinite(x) for x in v)]
    if bad:
        return Diagnosis("diverged", f"non-finite {', '.join(bad)} during training.", stats)
    d_acc = sum(acc[-n_tail:]) / n_tail
    g_tail = sum(g[-n_tail:]) / n_tail
    g_min = min(g)
    g_rising = g_tail > g_min * (1.0 + rise) + 1e-12 if g_min >= 0 else g_tail > g_min + rise * abs(g_min)
    stats.update(d_acc=d_acc, g_loss_tail=g_tail, g_loss_min=g_min, g_rising=g_rising)
    if "train_acc" in records[0]:
        stats["train_acc"] = float(records[-1]["train_acc"])
        if stats["train_acc"] < collapse_acc:
            return Diagnosis("collapsed", f"the student's training accuracy fell to {stats['train_acc']:.2f} "
                                          f"(< {collapse_acc:g}); D accuracy {d_acc:.2f}.", stats)
    if d_acc >= won_acc:
        trend = (f"G loss rising ({g_min:.3g} → {g_tail:.3g})" if g_rising else
                 f"G loss not rising ({g_min:.3g} → {g_tail:.3g})")
        return Diagnosis("discriminator won", f"D accuracy {d_acc:.2f} ≥ {won_acc:g} over the last {n_tail} "
                                              f"epoch(s), {trend}.", stats)
    g_sorted = sorted(g)
    g_median = g_sorted[len(g) // 2] if len(g) % 2 else 0.5 * (g_sorted[len(g) // 2 - 1] + g_sorted[len(g) // 2])
    peak_acc, peak_g = max(acc), max(g)
    stats.update(d_acc_max=peak_acc, g_loss_max=peak_g, g_loss_median=g_median)
    if peak_acc >= won_acc or (g_median > 0 and peak_g > spike * g_median):
        return Diagnosis("unstable", f"the game swung: D accuracy peaked at {peak_acc:.2f} (epoch "
                                     f"{acc.index(peak_acc) + 1}) and G loss at {peak_g:.3g} (median {g_median:.3g}), "
                                     f"though the last {n_tail} epoch(s) average D accuracy {d_acc:.2f}.", stats)
    return Diagnosis("balanced", f"D accuracy {d_acc:.2f} < {won_acc:g} over the last {n_tail} epoch(s): the "
                                 "student still fools the discriminator part of the time.", stats)
