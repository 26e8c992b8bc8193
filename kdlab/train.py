"""The one training loop: plain training, distillation and every later variant.

``fit(model, data, ...)`` trains any ``nn.Module`` that maps the dataset's
inputs to logits. What it minimises is an :mod:`kdlab.objectives` object:
cross-entropy by default, Hinton distillation when a ``teacher`` is given, or
any objective passed as ``objective=``. Nothing else about the loop changes
between methods, so a comparison between methods is a comparison of objectives.

Speed (see docs/BENCHMARKS.md): data stays on the device as uint8 and batches
are index slices of a device ``randperm``; per-batch statistics are summed into
device tensors and read once per epoch, so the loop never waits on the GPU
inside an epoch. Convolutional models train in channels_last where that pays
(CUDA, and x86-64 CPUs with oneDNN). On CUDA it adds bf16 autocast (losses in
float32) and ``cudnn.benchmark``; ``compile=True`` opts in to ``torch.compile``
and falls back to eager if that fails.

Faults: a non-finite loss stops training with the epoch and batch where it
first happened and restores the last good weights; ``KeyboardInterrupt`` (the
notebook's stop button) returns the history so far with the last completed
epoch's weights; ``checkpoint_path=`` saves a resumable training state after
every epoch and ``resume_from=`` continues from one, bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from . import devices, validate
from .data import Dataset, Split
from .errors import IncompatibleModelError, NonFiniteLossError, ParameterError, ParameterTypeError
from .objectives import CrossEntropy, Distillation, Objective

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "onecycle")


@dataclass
class History:
    """Per-epoch training record returned by :func:`fit`.

    ``records`` holds one dict per epoch with ``epoch``, ``train_loss``,
    ``train_acc``, ``val_loss``, ``val_acc``, ``lr``, ``seconds`` (the whole
    epoch, evaluation included), ``samples_per_s`` and the objective's own terms.
    ``history["val_acc"]`` gives one column as a list.
    """

    records: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    interrupted: bool = False

    def __getitem__(self, key: str) -> list:
        if not self.records or key not in self.records[0]:
            known = ", ".join(self.records[0]) if self.records else "none yet"
            raise KeyError(f"history has no column {key!r}; columns: {known}.")
        return [r[key] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict:
        return self.records[-1] if self.records else {}

    @property
    def total_seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.records))

    def to_dict(self) -> dict:
        return {"records": self.records, "config": self.config, "interrupted": self.interrupted}

    def __repr__(self) -> str:
        if not self.records:
            return "History(no epochs)"
        cols = ["epoch", "train_loss", "train_acc", "val_acc", "seconds", "samples_per_s"]
        lines = ["  ".join(f"{c:>13}" for c in cols)]
        for r in self.records:
            lines.append("  ".join(f"{r.get(c, float('nan')):>13.4g}" for c in cols))
        flag = " (interrupted)" if self.interrupted else ""
        return f"History{flag}\n" + "\n".join(lines)


def _lr_at(step: int, total: int, base_lr: float, schedule: str, warmup: int) -> float:
    """Learning rate for optimisation step ``step`` of ``total``."""
    if schedule == "constant":
        return base_lr
    if schedule == "onecycle":
        # Linear ramp up over the first 25% of steps, then linear decay to 0 (airbench-style).
        peak = max(1, total // 4)
        return base_lr * (step + 1) / peak if step < peak else base_lr * max(0.0, (total - step) / (total - peak))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _make_optimizer(name: str, params: list, device: torch.device, *, lr: float, weight_decay: float,
                    momentum: float) -> torch.optim.Optimizer:
    """AdamW or SGD, with PyTorch's fused kernel on CPU and CUDA.

    The fused step updates every element in one pass with no temporaries: on the
    reference 2-core CPU it is several times faster than the default per-tensor step
    for the 800-800 MLP, a large share of its training step. It also removed most of
    the measured cost of distillation over cross-entropy there: the default step's
    ``sqrt`` of the second-moment buffer ran 2.5x longer in distilled students, whose
    buffers hold many exact zeros (dead ReLU units), and ``sqrt(0.0)`` is slow on those
    CPUs. Measured in docs/BENCHMARKS.md, section 2 (benchmarks/optimizer_step.py).
    Same update rule; results differ from the unfused step only by float rounding.
    Other devices (MPS), and anything the fused kernel refuses, keep the default step.
    """
    # By device type: "cuda" and the parameters' "cuda:0" are different torch.devices.
    fused = device.type in ("cpu", "cuda")
    make = (lambda **kw: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kw)) if name == "adamw" else (
        lambda **kw: torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0,
                                     weight_decay=weight_decay, **kw))
    if fused:
        try:
            return make(fused=True)
        except (RuntimeError, ValueError):  # a build without the fused kernel: the default step is correct too
            pass
    return make()


def _snapshot(model: nn.Module, into: dict | None = None) -> dict:
    """A copy of ``model.state_dict()``, written into ``into``'s tensors when they match
    (no new 5 MB allocation each epoch for an 800-800 MLP), else a fresh deep copy."""
    state = model.state_dict()
    if (into is None or into.keys() != state.keys()
            or any(not isinstance(v, torch.Tensor) or into[k].shape != v.shape or into[k].dtype != v.dtype
                   or into[k].device != v.device for k, v in state.items())):
        return copy.deepcopy(state)
    with torch.no_grad():
        for k, v in state.items():
            into[k].copy_(v)
    return into


def _output_classes(model: nn.Module, split: Split, device: torch.device, role: str) -> int:
    """Run one small batch through ``model`` and return its number of outputs, turning
    shape errors into a message that names the model and the dataset's input shape."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(split.inputs(torch.arange(min(2, len(split)), device=split.device)).to(device))
    except RuntimeError as err:
        raise IncompatibleModelError(
            f"{role} {type(model).__name__} cannot take this dataset's inputs of shape "
            f"{tuple(split.x.shape[1:])}: {err}. Build it with input_shape=ds.input_shape.") from err
    finally:
        model.train(was_training)
    if out.dim() != 2:
        raise IncompatibleModelError(f"{role} {type(model).__name__} returns shape {tuple(out.shape)}; "
                                     "expected logits of shape (batch, num_classes).")
    return int(out.shape[1])


def _seed_for(seed: int, epoch: int) -> int:
    # Every epoch draws from its own seed, so a run resumed at epoch e replays exactly
    # the batches and augmentations the uninterrupted run would have drawn.
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@contextlib.contextmanager
def _channels_last(model: nn.Module, enabled: bool):
    """``model`` in the channels_last memory format inside the block, as it was after it.

    A model that is already channels_last (``fit`` leaves it so where that pays) is not
    touched; another one is converted for the block and converted back after it, so that
    evaluating a model never changes its layout behind the caller's back."""
    if not enabled:
        yield
        return
    before = [p.stride() for p in model.parameters() if p.dim() == 4]
    model.to(memory_format=torch.channels_last)
    changed = before != [p.stride() for p in model.parameters() if p.dim() == 4]
    try:
        yield
    finally:
        if changed:
            model.to(memory_format=torch.contiguous_format)


def eval_batch_size(device: torch.device) -> int:
    """Batch size for inference when none is given: 1024 on a GPU; 256 on the CPU, where
    batches of 1,024 28x28 images made the CNN teacher 1.7x slower than batches of 256,
    because its activations no longer fit the caches (docs/BENCHMARKS.md, section 1)."""
    return 256 if device.type == "cpu" else 1024


def predict_logits(model: nn.Module, split: Split, *, batch_size: int | None = None,
                   device: torch.device | None = None, amp: bool = False) -> torch.Tensor:
    """Float32 logits ``(N, K)`` of ``model`` on ``split`` (eval mode, no grad), on ``device``.

    ``batch_size=None`` picks :func:`eval_batch_size`. A convolutional model runs in
    channels_last where that pays (:func:`kdlab.devices.channels_last_pays`), and is left
    in the memory format it came in."""
    device = device or next(model.parameters()).device
    batch_size = eval_batch_size(device) if batch_size is None else validate.integer("batch_size", batch_size, low=1)
    split = split.to(device)
    use_cl = _has_conv(model) and devices.channels_last_pays(device)
    was_training = model.training
    model.eval()
    out = []
    autocast = devices.autocast(device, amp and device.type in ("cuda", "cpu"))
    try:
        # Converted outside inference_mode: weights made inside it could not be trained afterwards.
        with _channels_last(model, use_cl), torch.inference_mode(), autocast:
            for x, _, _ in split.batches(batch_size):
                if use_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(model(x).float())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 0, device=device)


def view_logits(model: nn.Module, split: Split, *, batch_size: int | None = None,
                device: torch.device | None = None, amp: bool = False) -> torch.Tensor:
    """Float32 logits ``(N, V, K)`` of ``model`` on every augmented view of every image of
    ``split`` (``V = split.num_views``), so training can look up ``[idx, view]`` instead of
    running ``model`` on each augmented batch."""
    device = device or next(model.parameters()).device
    split = split.to(device)
    n = len(split)
    out = []
    for v in range(split.num_views):
        views = torch.full((n,), v, dtype=torch.long, device=device)
        shifted, _ = split.augment_batch(split.x, None, views=views)
        out.append(predict_logits(model, replace(split, x=shifted, augment="none"), batch_size=batch_size,
                                  device=device, amp=amp))
    return torch.stack(out, dim=1)


def _compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)``, falling back to eager with a warning if compiling fails, at
    wrap time or at the first call (where most compile errors surface)."""
    try:
        compiled = torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any compile failure means: run eager
        warnings.warn(f"torch.compile failed ({err!r}); training in eager mode.", stacklevel=3)
        return model
    state = {"forward": compiled, "checked": False}

    def forward(x: torch.Tensor) -> torch.Tensor:
        if state["checked"]:
            return state["forward"](x)
        try:
            out = state["forward"](x)
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"torch.compile failed at the first step ({type(err).__name__}: {err}); "
                          "training in eager mode.", stacklevel=2)
            state["forward"] = model
            out = model(x)
        state["checked"] = True
        return out

    return forward


def fit(model: nn.Module, data: Dataset | Split, *, teacher: nn.Module | None = None, temperature: float = 4.0,
        alpha: float = 0.9, objective: Objective | None = None, epochs: int = 5, lr: float = 1e-3,
        batch_size: int = 128, optimizer: str = "adamw", weight_decay: float = 0.0, momentum: float = 0.9,
        schedule: str = "cosine", warmup_epochs: float = 0.0, augment: bool = False,
        device: str | torch.device = "auto", seed: int = 0, progress: bool = True, amp: bool | None = None,
        channels_last: bool | None = None, compile: bool = False, evaluate_every: int = 1,
        teacher_cache: bool | None = None, teacher_logits: torch.Tensor | None = None,
        checkpoint_path: str | Path | None = None, resume_from: str | Path | None = None,
        callback: Callable[[dict], None] | None = None) -> History:
    """Train ``model`` on ``data`` and return its per-epoch :class:`History`.

    Args:
        model: any ``nn.Module`` mapping the dataset's inputs ``(B, C, H, W)`` to logits ``(B, K)``.
        data: a :class:`~kdlab.data.Dataset` (trains on ``.train``, validates on ``.val``)
            or a single :class:`~kdlab.data.Split` to train on without validation.
        teacher: a trained model. When given (and ``objective`` is not), the student is
            distilled with :class:`~kdlab.objectives.Distillation`. The teacher is put in
            ``eval()`` mode and run under ``no_grad``; its logits are computed once and
            cached when ``augment=False``, or online on the same augmented views otherwise.
        temperature: distillation temperature T (> 0), used when ``teacher`` is given.
        alpha: weight of the **soft** (distillation) term, in [0, 1]:
            ``loss = alpha * T^2 * KL + (1 - alpha) * CE``. (Some projects put alpha on
            the hard term instead.)
        objective: what to minimise; overrides ``teacher``/``temperature``/``alpha`` as
            the loss (a teacher is still needed if ``objective.uses_teacher``).
        epochs, lr, batch_size: the usual; ``lr`` is the peak learning rate.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov, ``momentum``).
        schedule: ``"cosine"`` (to 0, after ``warmup_epochs`` of linear warm-up),
            ``"onecycle"`` or ``"constant"``; the LR is updated every step.
        augment: apply the dataset's batch augmentation (shifts for digits, crop and
            flip for CIFAR) on the device.
        device: ``"auto"`` (cuda, then mps, then cpu; ``$KDLAB_DEVICE`` overrides), or a name.
        seed: the batch order, augmentation and dropout depend only on it (and on the
            model's initial weights): the same seed gives the same numbers on CPU.
        progress: show a tqdm progress bar over epochs.
        amp, channels_last: bf16 autocast and the channels_last memory format. ``amp=None``
            means on for CUDA, off elsewhere; ``amp=True`` also works on CPUs with native
            bf16 (Intel AMX, AVX512-BF16: :func:`kdlab.devices.cpu_has_native_bf16`),
            where it trained the 800-800 MLP 1.5x and the CNN 2.1x faster than float32
            (docs/BENCHMARKS.md, section 1). ``channels_last=None`` means on for
            convolutional models where it pays (CUDA, and x86-64 CPUs with oneDNN:
            :func:`kdlab.devices.channels_last_pays`). The model (and teacher) stay in
            that format after training. On the CPU, fit flushes denormal floats to zero
            while it trains and restores the previous setting afterwards
            (:func:`kdlab.devices.flush_denormals` says why).
        compile: wrap the model in ``torch.compile`` (falls back to eager with a warning).
        teacher_cache: with ``augment=True``, precompute the teacher's logits on every
            distinct augmented view of every training image (25 shifts for digits) and
            look them up, instead of running the teacher on each batch. ``None`` does
            this when it costs fewer teacher forward passes than ``epochs`` online epochs
            and fits in 1 GiB; the logits are the same either way, up to float rounding.
        teacher_logits: the teacher's logits on the training split, precomputed once and
            shared by many runs: ``predict_logits(teacher, ds.train)`` ``(N, K)`` for
            ``augment=False``, or ``view_logits(teacher, ds.train)`` ``(N, V, K)`` for
            ``augment=True``. Row ``i`` must belong to training image ``i``.
        evaluate_every: validate every this many epochs (and always after the last).
        checkpoint_path: save a resumable training state here after each epoch (atomically).
        resume_from: a training state saved through ``checkpoint_path``; training continues
            after its last completed epoch.
        callback: called with each epoch's record (for live plots).
    """
    if not isinstance(model, nn.Module):
        raise ParameterTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if teacher is not None and not isinstance(teacher, nn.Module):
        raise ParameterTypeError(f"teacher must be a torch.nn.Module or None, got {type(teacher).__name__}.")
    if teacher is model:
        raise ParameterError("teacher is the same object as model; pass the trained teacher as teacher= "
                             "and a separate student as model.")
    if isinstance(data, Dataset):
        train_split, val_split, num_classes = data.train, data.val, data.num_classes
    elif isinstance(data, Split):
        train_split, val_split, num_classes = data, None, None
    else:
        raise ParameterTypeError(f"data must be a kdlab Dataset or Split (from kdlab.data.load), "
                                 f"got {type(data).__name__}.")
    if teacher is not None and objective is None:
        objective = Distillation(temperature=temperature, alpha=alpha)  # validates both
    elif teacher is not None:
        validate.positive("temperature", temperature)
        validate.probability("alpha", alpha)
    objective = objective if objective is not None else CrossEntropy()
    if not isinstance(objective, Objective):
        raise ParameterTypeError(f"objective must be a kdlab.objectives.Objective, got {type(objective).__name__}.")
    if objective.uses_teacher and teacher is None:
        raise ParameterError(f"objective {type(objective).__name__} needs teacher logits, but teacher=None; "
                             "pass teacher=<trained model>.")
    if teacher is not None and not objective.uses_teacher:
        raise ParameterError(f"teacher was given but objective {type(objective).__name__} does not use one; "
                             "drop teacher= or use objectives.Distillation.")
    epochs = validate.integer("epochs", epochs, low=1)
    batch_size = validate.integer("batch_size", batch_size, low=1)
    lr = validate.positive("lr", lr)
    weight_decay = validate.real("weight_decay", weight_decay, low=0.0)
    momentum = validate.real("momentum", momentum, low=0.0, high=1.0, high_open=True)
    warmup_epochs = validate.real("warmup_epochs", warmup_epochs, low=0.0)
    seed = validate.integer("seed", seed, low=0)
    evaluate_every = validate.integer("evaluate_every", evaluate_every, low=1)
    validate.choice("optimizer", optimizer, OPTIMIZERS)
    validate.choice("schedule", schedule, SCHEDULES)
    if teacher_cache is not None and not isinstance(teacher_cache, bool):
        raise ParameterTypeError(f"teacher_cache must be True, False or None, got {teacher_cache!r}.")
    for flag_name, flag in (("augment", augment), ("progress", progress), ("compile", compile)):
        if not isinstance(flag, bool):
            raise ParameterTypeError(f"{flag_name} must be True or False, got {flag!r}.")
    if len(train_split) == 0:
        raise ParameterError("data has an empty training split; nothing to train on.")
    device = devices.resolve(device)

    # --- model, teacher and data on the device, checked against each other ----------
    model.to(device)
    train_split = train_split.to(device)
    val_split = val_split.to(device) if val_split is not None and len(val_split) else None
    student_k = _output_classes(model, train_split, device, "model")
    if num_classes is not None and student_k != num_classes:
        raise IncompatibleModelError(f"model outputs {student_k} logits but dataset {data.name!r} has "
                                     f"{num_classes} classes; build it with num_classes={num_classes}.")
    if teacher is not None:
        teacher.to(device).eval()
        teacher_k = _output_classes(teacher, train_split, device, "teacher")
        if teacher_k != student_k:
            raise IncompatibleModelError(f"teacher outputs {teacher_k} classes but the student outputs "
                                         f"{student_k}; both must be built for the same classes.")
    objective.to(device)
    use_amp = devices.check_amp(amp, device)
    use_cl = (devices.channels_last_pays(device) and _has_conv(model)) if channels_last is None else bool(channels_last)
    memory_format = torch.channels_last if use_cl else torch.contiguous_format
    if use_cl:
        model.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    autocast = lambda: devices.autocast(device, use_amp)  # noqa: E731 - a fresh context per use

    # --- optimiser and schedule ------------------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, device, lr=lr, weight_decay=weight_decay, momentum=momentum)
    steps_per_epoch = math.ceil(len(train_split) / batch_size)
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))

    config = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "optimizer": optimizer,
              "weight_decay": weight_decay, "schedule": schedule, "warmup_epochs": warmup_epochs,
              "augment": augment, "seed": seed, "device": str(device), "amp": use_amp,
              "fused_optimizer": bool(opt.defaults.get("fused")),
              "channels_last": use_cl, **objective.describe()}
    history = History(config=config)
    start_epoch = 0
    if resume_from is not None:
        state = ckpt.load_training_state(resume_from, model=model, optimizer=opt, objective=objective)
        if state["config"].get("seed") != seed or state["config"].get("epochs") != epochs:
            raise ParameterError(
                f"resume_from={str(resume_from)!r} was saved with seed={state['config'].get('seed')} and "
                f"epochs={state['config'].get('epochs')}; resume with the same values (got seed={seed}, "
                f"epochs={epochs}).")
        history.records = state["records"]
        start_epoch = len(history.records)

    # --- teacher logits: cached once when inputs are not augmented, or per augmented view --
    cached_teacher = None  # (N, K), or (N, V, K) with one row of logits per augmented view
    views = train_split.num_views if augment else 1
    if teacher_logits is not None:
        if teacher is None:
            raise ParameterError("teacher_logits was given without teacher=; pass the teacher they came from.")
        expected = (len(train_split), student_k) if views == 1 else (len(train_split), views, student_k)
        if tuple(teacher_logits.shape) != expected:
            how = "predict_logits(teacher, ds.train)" if views == 1 else "view_logits(teacher, ds.train)"
            raise ParameterError(f"teacher_logits has shape {tuple(teacher_logits.shape)}; with augment={augment} "
                                 f"and this training split it must be {expected}, from kdlab.train.{how}.")
        cached_teacher = teacher_logits.to(device=device, dtype=torch.float32)
        config["teacher_logits"] = "given"
    elif teacher is not None:
        fits = len(train_split) * views * student_k * 4 <= 2**30
        use_cache = (views == 1) if not augment else (
            views <= epochs and fits if teacher_cache is None else bool(teacher_cache))
        if use_cache and views == 1:
            cached_teacher = predict_logits(teacher, train_split, device=device, amp=use_amp)
        elif use_cache:
            cached_teacher = view_logits(teacher, train_split, device=device, amp=use_amp)
        config["teacher_logits"] = "online" if cached_teacher is None else (
            "cached" if views == 1 else f"cached ({views} views)")
    # Without augmentation every epoch would convert the same uint8 images to floats
    # again; a small split (under 256 MiB as floats, e.g. all of MNIST) is converted once.
    float_inputs = None
    if not augment and train_split.x[:1].numel() * len(train_split) * 4 <= 256 * 2**20:
        float_inputs = train_split.inputs()
    forward = _compiled(model) if compile else model
    aux_step = getattr(objective, "auxiliary_step", None)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, initial=start_epoch, desc="epochs", unit="epoch", leave=True)

    last_good = copy.deepcopy(model.state_dict())
    cudnn_before = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    generator = torch.Generator(device=device)
    step = start_epoch * steps_per_epoch
    scope = contextlib.ExitStack()  # restored in the finally below, however training ends
    scope.enter_context(devices.flush_denormals(device.type == "cpu"))
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            generator.manual_seed(_seed_for(seed, epoch))
            model.train()
            # Per-batch statistics stay on the device, one row per batch (loss, correct, the
            # objective's logs), written with a single copy and read once per epoch.
            rows: torch.Tensor | None = None
            log_keys: list[str] = []
            sizes: list[int] = []
            with torch.random.fork_rng(devices=[]) if device.type == "cpu" else nullcontext():
                torch.manual_seed(_seed_for(seed, epoch))  # dropout draws from the global RNG
                for batch_index, (x, y, idx, view) in enumerate(train_split.batches(
                        batch_size, shuffle=True, augment=augment, generator=generator, return_views=True,
                        normalized=float_inputs)):
                    if use_cl:
                        x = x.contiguous(memory_format=memory_format)
                    lr_now = _lr_at(step, total_steps, lr, schedule, warmup_steps)
                    for group in opt.param_groups:
                        group["lr"] = lr_now
                    teacher_logits = None
                    if teacher is not None:
                        if cached_teacher is not None:
                            teacher_logits = cached_teacher[idx] if cached_teacher.dim() == 2 else cached_teacher[idx, view]
                        else:
                            with torch.no_grad(), autocast():
                                teacher_logits = teacher(x).float()
                    with autocast():
                        logits = forward(x)
                    loss, logs = objective(logits, y, teacher_logits, inputs=x)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if aux_step is not None:
                        aux_logs = aux_step(logits.detach(), y, teacher_logits, inputs=x)
                        logs = {**logs, **(aux_logs or {})}
                    step += 1
                    sizes.append(y.shape[0])
                    if rows is None:
                        log_keys = list(logs)
                        rows = torch.zeros(steps_per_epoch, 2 + len(log_keys), device=device)
                    correct = (logits.detach().argmax(dim=1) == y).sum()
                    rows[batch_index] = torch.stack([loss.detach().float(), correct.float(),
                                                     *(logs[k].float() for k in log_keys)])
            rows = rows[: len(sizes)]
            non_finite = (~torch.isfinite(rows[:, 0])).nonzero()
            if len(non_finite):
                bad = int(non_finite[0])
                model.load_state_dict(last_good)
                raise NonFiniteLossError(
                    f"the training loss became non-finite (NaN or inf) at epoch {epoch + 1}, batch {bad + 1}. "
                    f"The model was restored to its last good weights (after epoch {epoch}). Try a smaller "
                    f"learning rate (lr={lr:g})" + (f" or a moderate temperature (temperature={objective.temperature:g})"
                                                   if hasattr(objective, "temperature") else "") + ".",
                    epoch=epoch + 1, batch=bad + 1)
            seen = sum(sizes)
            weights = torch.tensor(sizes, device=device, dtype=torch.float32)
            means = ((rows * weights[:, None]).sum(0) / seen).tolist()  # size-weighted epoch means
            record = {"epoch": epoch + 1, "train_loss": means[0], "train_acc": float(rows[:, 1].sum()) / seen,
                      "lr": lr_now}
            record.update(zip(log_keys, means[2:]))
            if val_split is not None and ((epoch + 1) % evaluate_every == 0 or epoch + 1 == epochs):
                val_logits = predict_logits(model, val_split, device=device, amp=use_amp)
                record["val_loss"] = float(torch.nn.functional.cross_entropy(val_logits, val_split.y))
                record["val_acc"] = float((val_logits.argmax(1) == val_split.y).float().mean())
            seconds = time.perf_counter() - t0
            record["seconds"] = seconds
            record["samples_per_s"] = seen / seconds
            history.records.append(record)
            last_good = _snapshot(model, last_good)
            if checkpoint_path is not None:
                ckpt.save_training_state(checkpoint_path, model=model, optimizer=opt, objective=objective,
                                         records=history.records, config=config)
            if bar is not None:
                bar.set_postfix({k: round(record[k], 4) for k in ("train_loss", "val_acc") if k in record})
                bar.update(1)
            if callback is not None:
                callback(record)
    except KeyboardInterrupt:
        # Keep what was learned: the weights of the last completed epoch and its history.
        model.load_state_dict(last_good)
        history.interrupted = True
        print(f"Training interrupted; kept the weights after epoch {len(history.records)} of {epochs}.")
    finally:
        torch.backends.cudnn.benchmark = cudnn_before
        scope.close()
        if bar is not None:
            bar.close()
    model.eval()
    return history


def history_json(history: History) -> str:
    """The history as JSON (for metrics files)."""
    return json.dumps(history.to_dict(), indent=2)
