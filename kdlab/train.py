"""The one training loop: plain training, distillation and every later variant.

``fit(model, data, ...)`` trains any ``nn.Module`` that maps the dataset's inputs to
logits, by minimising an objective (:mod:`kdlab.objectives`): cross-entropy by default,
Hinton distillation when a ``teacher`` is given, or any ``objective=``. Nothing else
changes between methods, so comparing methods is comparing objectives. A batch reaches
the loss a learner writes in notebook 03 in three calls:
``fit`` -> ``objectives.Distillation.forward`` -> ``losses.kd_loss``.

Speed (measured in docs/BENCHMARKS.md): data stays on the device as uint8 and batches
are slices of a device ``randperm``; per-batch statistics stay on the device and are
read once per epoch, so the loop never waits for a GPU inside an epoch; the device's
speed settings (bf16, channels_last, compile, cuDNN, denormals) come from one call,
:func:`kdlab.devices.tuned`.

Faults: a non-finite loss stops training with the epoch and batch where it first
happened and restores the last good weights; ``KeyboardInterrupt`` (the notebook's stop
button) returns the history so far with the last completed epoch's weights;
``TrainConfig(checkpoint_path=...)`` saves a resumable state after every epoch and
``TrainConfig(resume_from=...)`` continues one, bit-identically on the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from . import devices, inference, validate
from .data import Dataset, Split
from .errors import NonFiniteLossError, ParameterError, ParameterTypeError
from .losses import IGNORE_INDEX
from .objectives import CrossEntropy, Distillation, Objective

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant", "onecycle")


@dataclass
class TrainConfig:
    """The settings of :func:`fit` that most runs leave alone."""

    optimizer: str = "adamw"  # or "sgd" (with Nesterov momentum)
    momentum: float = 0.9  # SGD only
    schedule: str = "cosine"  # "cosine" (decays to 0), "onecycle" or "constant"; the LR is set every step
    warmup_epochs: float = 0.0  # linear warm-up before the cosine decay
    amp: bool | None = None  # bf16 autocast; None: on CUDA only (True also on CPUs with native bf16)
    channels_last: bool | None = None  # NHWC layout for CNNs; None: where it pays and is safe (devices.channels_last_for)
    compile: bool = False  # torch.compile the forward pass (eager if compiling fails)
    evaluate_every: int = 1  # validate every this many epochs, and after the last
    checkpoint_path: str | Path | None = None  # save a resumable training state here after each epoch
    resume_from: str | Path | None = None  # continue a state saved through checkpoint_path
    callback: Callable[[dict], None] | None = None  # called with each epoch's record (live plots)

    def __post_init__(self):
        validate.choice("optimizer", self.optimizer, OPTIMIZERS)
        validate.choice("schedule", self.schedule, SCHEDULES)
        self.momentum = validate.real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        self.warmup_epochs = validate.real("warmup_epochs", self.warmup_epochs, low=0.0)
        self.evaluate_every = validate.integer("evaluate_every", self.evaluate_every, low=1)
        for name in ("amp", "channels_last"):
            if not (getattr(self, name) is None or isinstance(getattr(self, name), bool)):
                raise ParameterTypeError(f"{name} must be True, False or None, got {getattr(self, name)!r}.")
        if not isinstance(self.compile, bool):
            raise ParameterTypeError(f"compile must be True or False, got {self.compile!r}.")
        if self.callback is not None and not callable(self.callback):
            raise ParameterTypeError(f"callback must be callable or None, got {self.callback!r}.")


@dataclass
class History:
    """Per-epoch training record returned by :func:`fit`.

    ``records`` holds one dict per epoch with ``epoch``, ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc``, ``lr``, ``seconds`` (the whole epoch, evaluation
    included), ``samples_per_s`` and the objective's own logs (``kd``, ``ce``, ...).
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
        lines += ["  ".join(f"{r.get(c, float('nan')):>13.4g}" for c in cols) for r in self.records]
        return f"History{' (interrupted)' if self.interrupted else ''}\n" + "\n".join(lines)


def fit(model: nn.Module, data: Dataset | Split, *, teacher: nn.Module | None = None, temperature: float = 4.0,
        alpha: float = 0.9, objective: Objective | None = None, epochs: int = 5, lr: float = 1e-3,
        batch_size: int = 128, weight_decay: float = 0.0, augment: bool = False, device: str | torch.device = "auto",
        seed: int = 0, progress: bool = True, config: TrainConfig | None = None) -> History:
    """Train ``model`` on ``data`` and return its per-epoch :class:`History`.

    Args:
        model: any ``nn.Module`` mapping the dataset's inputs ``(B, C, H, W)`` to logits ``(B, K)``, or,
            for text (:mod:`kdlab.text`), token ids ``(B, L)`` to next-token logits ``(B, L, V)``.
        data: a :class:`~kdlab.data.Dataset` (trains on ``.train``, validates on ``.val``)
            or a single :class:`~kdlab.data.Split` to train on without validation.
        teacher, temperature, alpha: the short form of
            ``objective=Distillation(teacher, temperature, alpha)``: kdlab's ``alpha``
            weighs the **soft** term, ``loss = alpha * T^2 * KL + (1 - alpha) * CE``
            (some projects put alpha on the hard term instead).
        objective: what to minimise (:mod:`kdlab.objectives`); default cross-entropy.
        epochs, lr, batch_size, weight_decay: the usual; ``lr`` is the peak learning rate.
        augment: apply the dataset's augmentation (shifts for digits, crop and flip for
            CIFAR) to every batch, on the device.
        device: ``"auto"`` (cuda, then mps, then cpu; ``$KDLAB_DEVICE`` overrides), or a name.
        seed: batch order, augmentation and dropout depend only on it (and on the model's
            initial weights): the same seed gives the same numbers on the CPU.
        progress: show a progress bar over epochs.
        config: a :class:`TrainConfig` with the rarer settings (optimizer, schedule,
            bf16, checkpoints, a per-epoch callback, ...).
    """
    config = _validate_config(config)
    train_split, val_split, num_classes = _validate_data(data)
    epochs, batch_size, lr, weight_decay, seed = _validate_numbers(epochs, batch_size, lr, weight_decay, seed)
    objective = _objective(model, objective, teacher, temperature, alpha)
    for name, flag in (("augment", augment), ("progress", progress)):
        if not isinstance(flag, bool):
            raise ParameterTypeError(f"{name} must be True or False, got {flag!r}.")
    device = devices.resolve(device)
    model.to(device)
    num_classes = inference.validate_classes(model, train_split, num_classes, device)
    objective.to(device)

    with devices.tuned(model, device, amp=config.amp, channels_last=config.channels_last,
                       compile=config.compile) as tune:
        objective.prepare(train_split, augment=augment, epochs=epochs, device=device, amp=tune.amp,
                          num_classes=num_classes)
        train_split, val_split = train_split.to(device), val_split.to(device) if val_split is not None else None
        opt = make_optimizer(config.optimizer, model, lr=lr, weight_decay=weight_decay, momentum=config.momentum,
                             extra=objective.learnable_parameters())  # e.g. a FitNets regressor
        steps = math.ceil(len(train_split) / batch_size)  # per epoch
        history = History(config={**_settings(epochs, lr, batch_size, weight_decay, augment, seed, config), "device":
                                  str(device), "amp": tune.amp, "channels_last": tune.channels_last,
                                  "fused_optimizer": bool(opt.defaults.get("fused")), **objective.describe()})
        if config.resume_from is not None:
            history.records = ckpt.resume_training(config.resume_from, model=model, optimizer=opt,
                                                   objective=objective, seed=seed, epochs=epochs)
        # Without augmentation every epoch would convert the same uint8 images again: a
        # split under 256 MiB as floats (all of MNIST) is converted once.
        inputs = train_split.inputs() if not augment and train_split.x.numel() * 4 <= 2**28 else None
        generator = torch.Generator(device=device)
        last_good = _snapshot(model)
        bar = _progress_bar(progress, epochs, len(history))
        try:
            for epoch in range(len(history), epochs):
                t0 = time.perf_counter()
                model.train()
                stats = _EpochStats(steps, device)
                generator.manual_seed(_seed_for(seed, epoch))
                with _dropout_seeded(_seed_for(seed, epoch), device):
                    for i, batch in enumerate(train_split.batches(
                            batch_size, shuffle=True, augment=augment, generator=generator, normalized=inputs,
                            memory_format=tune.memory_format)):
                        lr_now = _set_lr(opt, _lr_at(epoch * steps + i, epochs * steps, lr, config, steps))
                        with tune.autocast():
                            logits = tune.forward(batch.x)  # (B, K), or (B, L, V) for text
                        loss, logs = objective(logits, batch)  # scalar, {name: 0-dim tensor}
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        logs.update(objective.after_step(logits.detach(), batch))
                        stats.add(loss, logits, batch.y, logs)
                bad_batch = stats.first_non_finite()
                if bad_batch is not None:
                    model.load_state_dict(last_good)
                    raise _non_finite(epoch, bad_batch, lr, objective, history)
                record = {"epoch": epoch + 1, **stats.means(), "lr": lr_now}
                if val_split is not None and ((epoch + 1) % config.evaluate_every == 0 or epoch + 1 == epochs):
                    record.update(_validate(model, val_split, device, tune.amp))
                record["seconds"] = time.perf_counter() - t0
                record["samples_per_s"] = stats.seen / record["seconds"]
                history.records.append(record)
                last_good = _snapshot(model, into=last_good)
                if config.checkpoint_path is not None:
                    ckpt.save_training_state(config.checkpoint_path, model=model, optimizer=opt, objective=objective,
                                             records=history.records, config=history.config)
                bar.show(record)
                if config.callback is not None:
                    config.callback(record)
        except KeyboardInterrupt:
            # Keep what was learned: the weights of the last completed epoch and its history.
            model.load_state_dict(last_good)
            history.interrupted = True
            print(f"Training interrupted; kept the weights after epoch {len(history)} of {epochs}.")
        finally:
            bar.close()
    model.eval()
    return history


# --- fit's helpers, in the order fit uses them ---------------------------------------------

def _validate_data(data) -> tuple[Split, Split | None, int | None]:
    if isinstance(data, Dataset):
        train_split, val_split, num_classes = data.train, (data.val if len(data.val) else None), data.num_classes
    elif isinstance(data, Split):
        train_split, val_split, num_classes = data, None, None
    else:
        raise ParameterTypeError(f"data must be a kdlab Dataset or Split (from kdlab.data.load), "
                                 f"got {type(data).__name__}.")
    if len(train_split) == 0:
        raise ParameterError("data has an empty training split; nothing to train on.")
    return train_split, val_split, num_classes


def _validate_numbers(epochs, batch_size, lr, weight_decay, seed) -> tuple[int, int, float, float, int]:
    return (validate.integer("epochs", epochs, low=1), validate.integer("batch_size", batch_size, low=1),
            validate.positive("lr", lr), validate.real("weight_decay", weight_decay, low=0.0),
            validate.integer("seed", seed, low=0))


def _validate_config(config) -> TrainConfig:
    if config is None:
        return TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ParameterTypeError(f"config must be a kdlab.train.TrainConfig or None, got {type(config).__name__}; "
                                 "e.g. config=TrainConfig(optimizer='sgd').")
    return config


def _objective(model, objective, teacher, temperature, alpha) -> Objective:
    """The objective to train with: ``objective``, or distillation from ``teacher``, or cross-entropy."""
    if not isinstance(model, nn.Module):
        raise ParameterTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if teacher is not None and objective is not None:
        raise ParameterError("pass either teacher= (distillation with temperature and alpha) or objective=, not "
                             "both; an objective that needs a teacher takes it itself, e.g. Distillation(teacher).")
    if teacher is model:
        raise ParameterError("teacher is the same object as model; pass the trained teacher as teacher= "
                             "and a separate student as model.")
    if teacher is not None:
        objective = Distillation(teacher, temperature=temperature, alpha=alpha)  # checks all three
    objective = objective if objective is not None else CrossEntropy()
    if not isinstance(objective, Objective):
        raise ParameterTypeError(f"objective must be a kdlab.objectives.Objective, got {type(objective).__name__}.")
    if objective.teacher is not None and objective.teacher.model is model:
        raise ParameterError("the objective's teacher is the model being trained; give it a separate trained teacher.")
    return objective


def make_optimizer(name: str, model: nn.Module, *, lr: float, weight_decay: float,
                   momentum: float = 0.9, extra=()) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) over ``model``'s trainable parameters, and ``extra`` ones trained
    with them (an objective's :meth:`~kdlab.objectives.Objective.learnable_parameters`), with PyTorch's
    fused kernel on the CPU and CUDA: several times faster per step on a CPU, same update rule
    (docs/BENCHMARKS.md, section 2). Elsewhere, or where the kernel is missing, the default step."""
    params = [p for p in model.parameters() if p.requires_grad]
    seen = {id(p) for p in params}
    params += [p for p in extra if p.requires_grad and id(p) not in seen]
    if name == "adamw":
        make = lambda **kw: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kw)  # noqa: E731
    else:
        make = lambda **kw: torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0,  # noqa: E731
                                            weight_decay=weight_decay, **kw)
    if params and params[0].device.type in ("cpu", "cuda"):
        try:
            return make(fused=True)
        except (RuntimeError, ValueError):  # a build without the fused kernel: the default step is correct too
            pass
    return make()


def _settings(epochs, lr, batch_size, weight_decay, augment, seed, config: TrainConfig) -> dict:
    kept = ("optimizer", "momentum", "schedule", "warmup_epochs", "evaluate_every")
    return {"epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay,
            "augment": augment, "seed": seed, **{k: v for k, v in asdict(config).items() if k in kept}}


def _snapshot(model: nn.Module, into: dict | None = None) -> dict:
    """A copy of ``model.state_dict()``, written into ``into``'s tensors when they match
    (no new allocation every epoch), else a fresh deep copy."""
    state = model.state_dict()
    if into is None or into.keys() != state.keys() or any(
            not isinstance(v, torch.Tensor) or into[k].shape != v.shape or into[k].dtype != v.dtype
            or into[k].device != v.device for k, v in state.items()):
        return copy.deepcopy(state)
    with torch.no_grad():
        for k, v in state.items():
            into[k].copy_(v)
    return into


class _ProgressBar:
    def __init__(self, bar):
        self.bar = bar

    def show(self, record: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: round(record[k], 4) for k in ("train_loss", "val_acc") if k in record})
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_bar(enabled: bool, epochs: int, done: int) -> _ProgressBar:
    if not enabled:
        return _ProgressBar(None)
    from tqdm.auto import tqdm
    return _ProgressBar(tqdm(total=epochs, initial=done, desc="epochs", unit="epoch", leave=True))


def _seed_for(seed: int, epoch: int) -> int:
    # Every epoch draws from its own seed, so a run resumed at epoch e replays exactly
    # the batches and augmentations the uninterrupted run would have drawn.
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


@contextlib.contextmanager
def _dropout_seeded(seed: int, device: torch.device):
    """Dropout draws from the global RNG: seed it for the epoch, and on the CPU give the
    caller's RNG state back afterwards."""
    if device.type != "cpu":
        torch.manual_seed(seed)
        yield
        return
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only: torch.manual_seed would also reseed (and not restore) every
        # accelerator's generators, at about 1 ms a call, for a model that never uses them.
        torch.default_generator.manual_seed(seed)
        yield


def _lr_at(step: int, total: int, base_lr: float, config: TrainConfig, steps_per_epoch: int) -> float:
    """Learning rate for optimisation step ``step`` of ``total``."""
    if config.schedule == "constant":
        return base_lr
    if config.schedule == "onecycle":
        # Linear ramp up over the first 25% of steps, then linear decay to 0 (airbench-style).
        peak = max(1, total // 4)
        return base_lr * (step + 1) / peak if step < peak else base_lr * max(0.0, (total - step) / (total - peak))
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


class _EpochStats:
    """Per-batch loss, correct and scored counts and the objective's logs, one row per batch,
    kept on the device (no host sync) and read once at the end of the epoch. For text every
    position that is not padding is scored; an image is always scored. Each op here runs every
    batch, so there are few of them (docs/BENCHMARKS.md, section 1)."""

    def __init__(self, steps: int, device: torch.device):
        self.steps, self.device = steps, device
        self.per_batch: torch.Tensor | None = None  # (steps, 3 + number of logs)
        self.keys: list[str] = []
        self.sizes: list[int] = []
        self.text = False

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, logs: dict) -> None:
        if self.per_batch is None:
            self.keys, self.text = list(logs), y.dim() > 1  # only text has padding to leave unscored
            self.per_batch = torch.zeros(self.steps, 3 + len(self.keys), device=self.device)
            self._unused = torch.zeros((), device=self.device)  # images: the scored count is the batch size
        hits = logits.detach().argmax(dim=-1) == y  # (B,) or (B, L)
        if self.text:
            scored = y != IGNORE_INDEX
            counts = ((hits & scored).sum(dtype=torch.float32), scored.sum(dtype=torch.float32))
        else:
            counts = (hits.sum(dtype=torch.float32), self._unused)
        torch.stack([loss.detach().float(), *counts, *(logs[k].float() for k in self.keys)],
                    out=self.per_batch[len(self.sizes)])
        self.sizes.append(y.shape[0])

    @property
    def seen(self) -> int:
        return sum(self.sizes)

    def first_non_finite(self) -> int | None:
        bad = (~torch.isfinite(self.per_batch[: len(self.sizes), 0])).nonzero()
        return int(bad[0]) if len(bad) else None

    def means(self) -> dict:
        per_batch = self.per_batch[: len(self.sizes)]
        weights = torch.tensor(self.sizes, device=self.device, dtype=torch.float32)
        means = ((per_batch * weights[:, None]).sum(0) / self.seen).tolist()  # size-weighted epoch means
        scored = max(1.0, float(per_batch[:, 2].sum())) if self.text else self.seen  # characters, or examples
        return {"train_loss": means[0], "train_acc": float(per_batch[:, 1].sum()) / scored,
                **dict(zip(self.keys, means[3:]))}


def _non_finite(epoch: int, batch: int, lr: float, objective: Objective, history: History) -> NonFiniteLossError:
    hint = f"Try a smaller learning rate (lr={lr:g})"
    if hasattr(objective, "temperature"):
        hint += f" or a moderate temperature (temperature={objective.temperature:g})"
    err = NonFiniteLossError(
        f"the training loss became non-finite (NaN or inf) at epoch {epoch + 1}, batch {batch + 1}. The model "
        f"was restored to its last good weights (after epoch {epoch}). {hint}.", epoch=epoch + 1, batch=batch + 1)
    err.history = history  # the epochs that did finish
    return err


def _validate(model: nn.Module, split: Split, device: torch.device, amp: bool) -> dict:
    logits = inference.predict_logits(model, split, device=device, amp=amp)  # (N, K), or (N, L, V) for text
    scored = split.y != IGNORE_INDEX  # text: padded positions are not scored
    correct = (logits.argmax(-1) == split.y) & scored
    return {"val_loss": float(torch.nn.functional.cross_entropy(logits.flatten(0, -2), split.y.flatten())),
            "val_acc": float(correct.float().sum() / scored.float().sum())}
