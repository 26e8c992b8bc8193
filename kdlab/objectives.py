"""Training objectives: what the one training loop minimises.

:func:`kdlab.train.fit` runs the same loop for every method; only the objective
changes. An objective is an ``nn.Module`` (so it can own parameters, such as an
adversarial discriminator, and moves to the device with the student), called on each
batch as

    loss, logs = objective(student_logits, batch)      # (B, K) logits, a kdlab.data.Batch

``loss`` is a float32 scalar to minimise; ``logs`` maps names to detached 0-dim
tensors that the loop averages over the epoch without a host sync per batch.

A language model's logits are (B, L, V) and its batch's ``y`` (B, L): cross-entropy and
distillation then average over every position, leaving out padded ones (targets equal to
:data:`kdlab.losses.IGNORE_INDEX`); :mod:`kdlab.lm` has the objectives only sequences have.

An objective that learns from a teacher owns it, as a :class:`kdlab.teacher.Teacher`
in ``self.teacher``, and asks it for the batch's logits: ``self.teacher.logits(batch)``.
``fit`` calls :meth:`Objective.prepare` once before the first step (the teacher then
computes any cache it needs), and :meth:`Objective.after_step` after each optimiser
step (an adversarial objective trains its discriminator there).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import devices, losses, validate
from .data import Batch, Split
from .errors import ParameterError, ParameterTypeError
from .teacher import CACHE_LIMIT_BYTES, Teacher


def scored_positions(student_logits: torch.Tensor, batch: Batch) -> torch.Tensor | None:
    """For sequence logits (B, L, V): the (B, L) mask of positions that are not padding; None for (B, K)."""
    return batch.y != losses.IGNORE_INDEX if student_logits.dim() > 2 else None


def cross_entropy(student_logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """``F.cross_entropy`` on (B, K) or (B, L, V) logits, averaged over every scored position."""
    return F.cross_entropy(student_logits.float().flatten(0, -2), targets.flatten(), label_smoothing=label_smoothing,
                           ignore_index=losses.IGNORE_INDEX)


def as_teacher(teacher: nn.Module | Teacher) -> Teacher:
    """``teacher`` as a :class:`~kdlab.teacher.Teacher` (a trained model is wrapped with the default caching)."""
    return teacher if isinstance(teacher, Teacher) else Teacher(teacher)


class Objective(nn.Module):
    """Base class. Subclasses implement ``forward(student_logits, batch) -> (loss, logs)``;
    those that learn from a teacher set ``self.teacher``."""

    teacher: Teacher | None = None

    def forward(self, student_logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def prepare(self, split: Split, *, augment: bool, epochs: int, device: torch.device, amp: bool,
                num_classes: int) -> None:
        """Called by ``fit`` once before training on ``split``: readies the teacher, if any."""
        if self.teacher is not None:
            self.teacher.prepare(split, augment=augment, epochs=epochs, device=device, amp=amp,
                                 num_classes=num_classes)

    def after_step(self, student_logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Called by ``fit`` after each optimiser step with the detached logits; returns extra logs."""
        return {}

    def learnable_parameters(self) -> list[nn.Parameter]:
        """The objective's parameters that ``fit``'s optimiser trains together with the student's
        (a FitNets regressor); none by default. A part trained *against* the student (a
        discriminator) steps its own optimiser in :meth:`after_step` instead."""
        return []

    def describe(self) -> dict:
        """JSON-able description recorded in the training history and checkpoints."""
        return {"objective": type(self).__name__}


class CrossEntropy(Objective):
    """Plain supervised training on the true labels: ``CE(y, softmax(z_s))``."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = validate.real("label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True)

    def forward(self, student_logits, batch):
        loss = cross_entropy(student_logits, batch.y, self.label_smoothing)
        return loss, {"ce": loss.detach()}

    def describe(self) -> dict:
        return {"objective": "CrossEntropy", "label_smoothing": self.label_smoothing}


class Distillation(Objective):
    r"""Hinton et al. (2015) knowledge distillation, with kdlab's alpha on the **soft** term:

    .. math:: L = \alpha \cdot T^2 \, KL(p_t^T \,\|\, p_s^T) + (1 - \alpha) \cdot CE(y, z_s)

    Args:
        teacher: the trained teacher (an ``nn.Module``), or a :class:`~kdlab.teacher.Teacher`
            to choose how its logits are served (precomputed ``logits=``, ``cache=``).
        temperature: T > 0, softens both distributions.
        alpha: weight of the soft term, in [0, 1]; ``1 - alpha`` weighs cross-entropy
            on the true labels.
        soft_loss: the soft term as a function ``(student_logits, teacher_logits, T)``;
            default :func:`kdlab.losses.kd_loss`. Notebook 03 trains a student with the
            learner's own ``my_kd_loss`` through it.

    The soft term is :func:`kdlab.losses.kd_loss`, the function notebook 03 builds, so a
    breakpoint there stops inside ``fit``. The value equals :func:`kdlab.losses.distillation_loss`.
    """

    def __init__(self, teacher: nn.Module | Teacher, temperature: float = 4.0, alpha: float = 0.9,
                 soft_loss: Callable | None = None):
        super().__init__()
        self.teacher = as_teacher(teacher)
        if soft_loss is not None and not callable(soft_loss):
            raise TypeError(f"soft_loss={soft_loss!r} is not callable; pass a function "
                            "(student_logits, teacher_logits, T) -> loss, or None for kdlab.losses.kd_loss.")
        self.soft_loss = soft_loss
        # Checked once here, so the per-batch loss skips its own argument checks (check=False).
        self.temperature = validate.positive("temperature", temperature)
        self.alpha = validate.probability("alpha", alpha)

    def forward(self, student_logits, batch):
        teacher_logits = self.teacher.logits(batch)  # (B, K) or (B, L, V), no gradient
        if self.soft_loss is None:
            soft = losses.kd_loss(student_logits, teacher_logits, self.temperature,  # T² KL(p_t‖p_s)
                                  mask=scored_positions(student_logits, batch), check=False)
        else:
            soft = self.soft_loss(student_logits, teacher_logits, self.temperature)
        hard = cross_entropy(student_logits, batch.y)  # CE(y, z_s)
        loss = self.alpha * soft + (1.0 - self.alpha) * hard
        return loss, {"kd": soft.detach(), "ce": hard.detach()}

    def describe(self) -> dict:
        return {"objective": "Distillation", "temperature": self.temperature, "alpha": self.alpha,
                "teacher_logits": self.teacher.mode,
                "soft_loss": getattr(self.soft_loss, "__name__", "custom") if self.soft_loss else "kd_loss"}


class TeacherHardLabels(Objective):
    """Train on the teacher's argmax predictions ("hard pseudo-labels") instead of the
    true labels: ``CE(argmax z_t, z_s)``. The true labels are ignored (only logged
    against, as ``pseudo_label_acc``)."""

    def __init__(self, teacher: nn.Module | Teacher):
        super().__init__()
        self.teacher = as_teacher(teacher)

    def forward(self, student_logits, batch):
        pseudo = self.teacher.logits(batch).argmax(dim=-1)  # (B,)
        loss = F.cross_entropy(student_logits.float(), pseudo)
        agree = (pseudo == batch.y).float().mean()
        return loss, {"ce_pseudo": loss.detach(), "pseudo_label_acc": agree.detach()}

    def describe(self) -> dict:
        return {"objective": "TeacherHardLabels", "teacher_logits": self.teacher.mode}


class ReverseKL(Objective):
    r"""Distillation through the reverse KL, mode-seeking (:func:`kdlab.losses.reverse_kl_loss`):

    .. math:: L = \alpha \cdot T^2 \, KL(p_s^T \,\|\, p_t^T) + (1 - \alpha) \cdot CE(y, z_s)

    The same as :class:`Distillation` with the two distributions of the KL swapped. On
    sequences, every position that is not padding counts (token-level reverse KL, as in
    MiniLLM, Gu et al. 2024, without its sampling of the student's own text).
    """

    def __init__(self, teacher: nn.Module | Teacher, temperature: float = 1.0, alpha: float = 1.0):
        super().__init__()
        self.teacher = as_teacher(teacher)
        self.temperature = validate.positive("temperature", temperature)
        self.alpha = validate.probability("alpha", alpha)

    def forward(self, student_logits, batch):
        teacher_logits = self.teacher.logits(batch)
        soft = losses.reverse_kl_loss(student_logits, teacher_logits, self.temperature,  # T² KL(p_s‖p_t)
                                      mask=scored_positions(student_logits, batch), check=False)
        hard = cross_entropy(student_logits, batch.y)
        loss = self.alpha * soft + (1.0 - self.alpha) * hard
        return loss, {"reverse_kl": soft.detach(), "ce": hard.detach()}

    def describe(self) -> dict:
        return {"objective": "ReverseKL", "temperature": self.temperature, "alpha": self.alpha,
                "teacher_logits": self.teacher.mode}


# --- beyond logits: features, relations, decoupled KD (notebook 11) ------------------------------
#
# The loop hands an objective the student's logits only. A feature objective therefore
# reads the student's features from forward hooks on the student's modules, recorded
# during fit's training forward pass, and the teacher's from a FeatureTeacher, which
# serves them per batch as Teacher serves logits. The models name their feature layers:
# ``model.stages`` (the feature map after each stage) and ``model.embedding_layer`` (the
# representation the last layer classifies); kdlab's "cnn" and "resnet" have both.

def feature_modules(model: nn.Module, which: str = "stages", *, role: str = "model") -> list[nn.Module]:
    """``model.stages`` (``which="stages"``) or ``[model.embedding_layer]`` (``"embedding"``)."""
    validate.choice("which", which, ("stages", "embedding"))
    attribute = "stages" if which == "stages" else "embedding_layer"
    if not isinstance(model, nn.Module) or not hasattr(type(model), attribute):
        raise ParameterTypeError(f"{role} {type(model).__name__} does not name its feature layers ({attribute}); "
                                 "feature distillation needs a model that does, such as kdlab's 'cnn' or 'resnet'.")
    found = getattr(model, attribute)
    return list(found) if which == "stages" else [found]


def capture(model: nn.Module, modules: Sequence[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``model(x)`` once and return ``(logits, [output of each module])``; the hooks are
    removed afterwards. Runs as the caller set things up (mode, ``no_grad``)."""
    outputs: list[torch.Tensor | None] = [None] * len(modules)

    def keep(i):
        def hook(module, inputs, output):
            outputs[i] = output
        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(modules)]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    if any(o is None for o in outputs):
        raise ParameterError(f"{type(model).__name__}'s forward pass did not run through every feature module.")
    return logits, outputs


class StudentFeatures:
    """The outputs of some of the student's modules in its last *training* forward pass.

    A forward hook on each module keeps its output when the module is in train mode with
    gradients on, as in ``fit``'s training step, so the validation passes (eval mode, no
    gradient) never overwrite it. :meth:`take` hands them to the objective once. The hooks
    go when this object does (or on :meth:`remove`).
    """

    def __init__(self, modules: Sequence[nn.Module]):
        self.modules = list(modules)
        self.values: list[torch.Tensor | None] = [None] * len(self.modules)
        me = weakref.ref(self)  # the hooks must not keep this object (and its tensors) alive

        def keep(i):
            def hook(module, inputs, output):
                owner = me()
                if owner is not None and module.training and torch.is_grad_enabled():
                    owner.values[i] = output
            return hook

        self._handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(modules)]

    def take(self) -> list[torch.Tensor]:
        values, self.values = self.values, [None] * len(self.values)
        if any(v is None for v in values):
            raise ParameterError("the student's features were not recorded in this training step. The objective "
                                 "must be built with the model being trained (make_objective=lambda model, seed: "
                                 "...), in train mode, without TrainConfig(compile=True), whose compiled forward "
                                 "pass skips the hooks.")
        return values

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __del__(self):
        self.remove()


class FeatureTeacher:
    """Serves a trained teacher's features (the outputs of ``modules``) for each batch, the way
    :class:`~kdlab.teacher.Teacher` serves its logits.

    * **cached**: without augmentation, computed once on the training split, ``(N, ...)`` per
      module, when that fits in 1 GiB (``cache=None``; ``True`` insists, ``False`` never caches);
    * **online**: otherwise the teacher runs on every (augmented) batch.

    The teacher stays in ``eval()`` mode and runs without gradients; the features come back as float32.
    """

    def __init__(self, model: nn.Module, modules: Sequence[nn.Module], *, cache: bool | None = None):
        if not isinstance(model, nn.Module):
            raise ParameterTypeError(f"teacher must be a trained torch.nn.Module for feature distillation, got "
                                     f"{type(model).__name__} (a kdlab Teacher serves logits only).")
        if cache is not None and not isinstance(cache, bool):
            raise ParameterTypeError(f"cache must be True, False or None, got {cache!r}.")
        self.model, self.modules, self.cache = model, list(modules), cache
        self.mode = "not prepared"  # after prepare: "cached" or "online"
        self._tables: list[torch.Tensor] | None = None
        self._amp = False
        self._last: tuple[Batch | None, list[torch.Tensor] | None] = (None, None)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), devices.autocast(x.device, self._amp):
            _, outputs = capture(self.model, self.modules, x)
        return [o.float() for o in outputs]

    def prepare(self, split: Split, *, augment: bool, epochs: int, device: torch.device, amp: bool = False,
                num_classes: int | None = None) -> None:
        """Ready the teacher for training on ``split`` (called by ``fit``, through the objective, once)."""
        from .inference import eval_batch_size, validate_classes

        self.model.to(device).eval()
        validate_classes(self.model, split, num_classes, device, role="teacher")
        self._amp, self._last = amp, (None, None)
        if self.cache and augment:
            raise ParameterError("cache=True needs augment=False: the teacher's features of augmented images are "
                                 "computed online, batch by batch.")
        two = split.inputs(torch.arange(min(2, len(split)), device=split.device)).to(device)
        per_example = sum(f[0].numel() for f in self._features(two)) * 4  # bytes as float32
        use_cache = self.cache if self.cache is not None else (
            not augment and len(split) * per_example <= CACHE_LIMIT_BYTES)
        if not use_cache:
            self._tables, self.mode = None, "online"
            return
        parts: list[list[torch.Tensor]] = [[] for _ in self.modules]
        for batch in split.batches(eval_batch_size(device)):
            for part, f in zip(parts, self._features(batch.x.to(device))):
                part.append(f)
        self._tables, self.mode = [torch.cat(part) for part in parts], "cached"  # (N, ...) each, in split order

    def features(self, batch: Batch) -> list[torch.Tensor]:
        """The teacher's float32 features on the images of ``batch``, one tensor per module."""
        if batch is self._last[0]:
            return self._last[1]
        if self.mode == "not prepared":
            raise ParameterError("the feature teacher has not been prepared; fit calls prepare before training.")
        out = [t[batch.idx] for t in self._tables] if self._tables is not None else self._features(batch.x)
        self._last = (batch, out)
        return out

    def __repr__(self) -> str:
        return f"FeatureTeacher({type(self.model).__name__}, {len(self.modules)} module(s), mode={self.mode!r})"


class _FeatureObjective(Objective):
    """CE on the labels plus ``weight`` times a loss between student and teacher features."""

    def __init__(self, teacher: nn.Module, student: nn.Module, which: str, weight: float,
                 cache: bool | None = None, indices: Sequence[int] | None = None):
        super().__init__()
        if isinstance(teacher, Teacher):
            teacher = teacher.model
        if teacher is student:
            raise ParameterError("teacher and student are the same object; pass the trained teacher and the "
                                 "student being trained.")
        s_modules = feature_modules(student, which, role="student")
        t_modules = feature_modules(teacher, which, role="teacher")
        if len(s_modules) != len(t_modules):
            raise ParameterError(f"the student has {len(s_modules)} feature stages and the teacher "
                                 f"{len(t_modules)}; stage j of one is matched with stage j of the other.")
        if indices is not None:
            indices = validate.int_tuple("stages", indices, low=0)  # ints, not bools; no negative indices
            if not indices or max(indices) >= len(s_modules):
                raise ParameterError(f"stages={list(indices)!r} must be a non-empty list of stage indices from "
                                     f"0 to {len(s_modules) - 1}.")
            s_modules, t_modules = [s_modules[i] for i in indices], [t_modules[i] for i in indices]
        self.weight = validate.real("weight", weight, low=0.0)
        self.teacher = FeatureTeacher(teacher, t_modules, cache=cache)
        # Hooks on the student, not the student itself: its weights belong to the model, not the objective.
        self.student_features = StudentFeatures(s_modules)

    def feature_loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student_logits, batch):
        feature = self.feature_loss(self.student_features.take(), self.teacher.features(batch))
        ce = F.cross_entropy(student_logits.float(), batch.y)
        return ce + self.weight * feature, {"ce": ce.detach(), self.log_name: feature.detach()}


class HintDistillation(_FeatureObjective):
    r"""FitNets (Romero et al. 2015) hint training, in one stage with the labels:

    .. math:: L = CE(y, z_s) + w \cdot \mathrm{MSE}\big(r(v), u\big)

    ``u`` is the teacher's feature map after stage ``stage`` (the *hint*), ``v`` the student's
    after the same stage (the *guided* layer) and ``r`` a regressor, 3×3 convolution, BatchNorm
    and ReLU, that maps the student's channels to the teacher's (:func:`kdlab.losses.hint_loss`).
    The regressor belongs to the objective and ``fit`` trains it with the student
    (:meth:`learnable_parameters`); it is dropped after training. The paper first trains up to the
    guided layer on the hint alone, then the whole student with KD; the one-stage form is
    mdistiller's and RepDistiller's, whose weight w = 100 is the default.

    Args:
        teacher: the trained teacher (a model with ``stages``, e.g. kdlab's "cnn").
        student: the model ``fit`` will train (build the objective per run:
            ``make_objective=lambda model, seed: HintDistillation(teacher, model)``).
        stage: which stage's output is the hint (default 0, the middle of a two-stage CNN;
            FitNets guides a middle layer, as a deep hint over-constrains a thin student).
        weight: w. seed: the regressor's initial weights depend only on it.
    """

    log_name = "hint"

    def __init__(self, teacher: nn.Module, student: nn.Module, *, stage: int = 0, weight: float = 100.0,
                 seed: int = 0, cache: bool | None = None):
        super().__init__(teacher, student, "stages", weight, cache, indices=[validate.integer("stage", stage, low=0)])
        shape = getattr(student, "kdlab_spec", {}).get("input_shape")
        if shape is None:
            raise ParameterError("the student has no kdlab_spec['input_shape']; build it with kdlab.models.create.")
        c_s = _channels(student, self.student_features.modules, shape)
        c_t = _channels(self.teacher.model, self.teacher.modules, shape)
        self.stage = stage
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(validate.integer("seed", seed, low=0))
            self.regressor = nn.Sequential(nn.Conv2d(c_s, c_t, 3, padding=1, bias=False), nn.BatchNorm2d(c_t),
                                           nn.ReLU())

    def learnable_parameters(self) -> list[nn.Parameter]:
        return list(self.regressor.parameters())

    def feature_loss(self, student, teacher):
        return losses.hint_loss(self.regressor(student[0].float()), teacher[0])

    def describe(self) -> dict:
        return {"objective": "HintDistillation", "stage": self.stage, "weight": self.weight,
                "teacher_features": self.teacher.mode}


def _channels(model: nn.Module, modules: Sequence[nn.Module], input_shape) -> int:
    """Channels of the first module's output, from a dry run of ``model`` on two zero images."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, (out,) = capture(model, modules[:1], torch.zeros(2, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(out.shape[1])


class AttentionTransfer(_FeatureObjective):
    r"""Attention transfer (Zagoruyko & Komodakis 2017) with the labels:

    .. math:: L = CE(y, z_s) + \beta \sum_j \overline{\big(a(s_j) - a(t_j)\big)^2}

    over the stage outputs ``s_j``, ``t_j`` (:func:`kdlab.losses.attention_transfer_loss`): the
    student learns *where* the teacher's activations are large, stage by stage, whatever their
    number of channels. β = 1000 and p = 2 are the authors' (their code weighs β/2) and mdistiller's.
    ``stages``: which stages to match (default all).
    """

    log_name = "at"

    def __init__(self, teacher: nn.Module, student: nn.Module, *, weight: float = 1000.0, p: float = 2.0,
                 stages: Sequence[int] | None = None, cache: bool | None = None):
        super().__init__(teacher, student, "stages", weight, cache, indices=stages)
        self.p = validate.positive("p", p)
        self.stages = list(stages) if stages is not None else None

    def feature_loss(self, student, teacher):
        return losses.attention_transfer_loss(student, teacher, self.p)

    def describe(self) -> dict:
        return {"objective": "AttentionTransfer", "weight": self.weight, "p": self.p, "stages": self.stages,
                "teacher_features": self.teacher.mode}


class RelationalDistillation(_FeatureObjective):
    r"""Relational KD (Park et al. 2019) with the labels:

    .. math:: L = CE(y, z_s) + w \cdot \big(\lambda_D L_{distance} + \lambda_A L_{angle}\big)

    on the embeddings the last layers classify (``model.embedding_layer``), compared within each
    batch (:func:`kdlab.losses.rkd_loss`): the student keeps the teacher's distances and angles
    between examples, not its coordinates. λ_D = 25, λ_A = 50 and w = 1 are the authors' and
    mdistiller's. Batches must hold at least 2 examples.
    """

    log_name = "rkd"

    def __init__(self, teacher: nn.Module, student: nn.Module, *, weight: float = 1.0, distance_weight: float = 25.0,
                 angle_weight: float = 50.0, cache: bool | None = None):
        super().__init__(teacher, student, "embedding", weight, cache)
        self.distance_weight = validate.real("distance_weight", distance_weight, low=0.0)
        self.angle_weight = validate.real("angle_weight", angle_weight, low=0.0)

    def feature_loss(self, student, teacher):
        return losses.rkd_loss(student[0], teacher[0], self.distance_weight, self.angle_weight)

    def describe(self) -> dict:
        return {"objective": "RelationalDistillation", "weight": self.weight, "distance_weight": self.distance_weight,
                "angle_weight": self.angle_weight, "teacher_features": self.teacher.mode}


class DecoupledDistillation(Objective):
    r"""Decoupled KD (Zhao et al. 2022) with the labels:

    .. math:: L = w_{CE} \cdot CE(y, z_s) + \min(1, e / e_w) \, (\alpha \, \mathrm{TCKD} + \beta \, \mathrm{NCKD})

    (:func:`kdlab.losses.dkd_loss`; DKD's α and β are its own, not kdlab's ``alpha``). ``e`` is the
    number of epochs trained so far (counted in examples seen, so it grows within an epoch) and
    ``e_w = warmup_epochs``: the authors ramp the DKD term up over their first 20 of 240 epochs,
    because at β = 8 the NCKD term swamps the labels at the start (0: no ramp). Defaults: the
    authors' CIFAR-100 setting, α = 1, β = 8, T = 4, CE weight 1. The teacher's logits are
    served as for :class:`Distillation` (cached when they can be).
    """

    def __init__(self, teacher: nn.Module | Teacher, *, alpha: float = 1.0, beta: float = 8.0,
                 temperature: float = 4.0, ce_weight: float = 1.0, warmup_epochs: float = 0.0):
        super().__init__()
        self.teacher = as_teacher(teacher)
        self.alpha = validate.real("alpha", alpha, low=0.0)
        self.beta = validate.real("beta", beta, low=0.0)
        self.temperature = validate.positive("temperature", temperature)
        self.ce_weight = validate.real("ce_weight", ce_weight, low=0.0)
        self.warmup_epochs = validate.real("warmup_epochs", warmup_epochs, low=0.0)
        # Examples trained on so far (a buffer, so a resumed run continues the ramp), and per epoch.
        self.register_buffer("seen", torch.zeros((), dtype=torch.float64))
        self._per_epoch = 1

    def prepare(self, split, *, augment, epochs, device, amp, num_classes):
        super().prepare(split, augment=augment, epochs=epochs, device=device, amp=amp, num_classes=num_classes)
        self.seen.zero_()  # a new run (a resumed one loads its count after this)
        self._per_epoch = max(1, len(split))

    def forward(self, student_logits, batch):
        # fit checked the labels against the classes once; check=False spares every step that sync.
        tckd, nckd = losses.decoupled_kd_terms(student_logits, self.teacher.logits(batch), batch.y, self.temperature,
                                               check=False)
        tckd, nckd = tckd.mean(), nckd.mean()
        ce = F.cross_entropy(student_logits.float(), batch.y)
        ramp = 1.0
        if self.warmup_epochs > 0:
            self.seen += batch.y.shape[0]
            ramp = (self.seen / (self._per_epoch * self.warmup_epochs)).clamp(max=1.0).float()  # on the device
        loss = self.ce_weight * ce + ramp * (self.alpha * tckd + self.beta * nckd)
        return loss, {"ce": ce.detach(), "tckd": tckd.detach(), "nckd": nckd.detach()}

    def describe(self) -> dict:
        return {"objective": "DecoupledDistillation", "alpha": self.alpha, "beta": self.beta,
                "temperature": self.temperature, "ce_weight": self.ce_weight, "warmup_epochs": self.warmup_epochs,
                "teacher_logits": self.teacher.mode}
