"""Notebook 11's helpers: the students of each role, attention maps and their figure, paired verdicts.

The methods themselves live where every method lives: the losses in :mod:`kdlab.losses`
(``attention_transfer_loss``, ``hint_loss``, ``rkd_loss``, ``dkd_loss``) and the objectives
in :mod:`kdlab.objectives` (``HintDistillation``, ``AttentionTransfer``,
``RelationalDistillation``, ``DecoupledDistillation``), trained by the one loop. This module
only holds what the notebook's experiments need around them:

* :func:`architectures`: the student and the tiny student for a dataset (small CNNs for the
  digit datasets, thin ResNets for CIFAR), next to the kit's teacher;
* :func:`attention_maps`, :func:`attention_distance`, :func:`attention_figure`: what
  attention transfer matches, measured and drawn;
* :func:`non_target_weight`: the weight ``1 − p_t`` that classic KD puts on its
  non-target part (Zhao et al. 2022);
* :func:`versus`: :func:`kdlab.experiments.compare` on two sets of runs that share seeds.

References: Zagoruyko & Komodakis (ICLR 2017, attention transfer); Romero et al. (ICLR 2015,
FitNets); Park et al. (CVPR 2019, RKD); Zhao et al. (CVPR 2022, DKD); Furlanello et al.,
"Born-Again Neural Networks", ICML 2018; Mirzadeh et al., "Improved Knowledge Distillation via
Teacher Assistant", AAAI 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from . import data, experiments, losses, models, objectives, validate
from .data import Dataset, Split
from .errors import ParameterError


def architectures(dataset: str, smoke: bool = False) -> dict[str, dict]:
    """``{"student": spec, "tiny": spec}``: ``kdlab.models.create`` arguments of the notebook's
    student (also the teacher assistant) and of the tiny student, for ``dataset``.

    The teacher is the kit's (:func:`kdlab.lab.teacher_recipe`): a CNN with channels (32, 64)
    for the digit datasets, a ResNet-20 for CIFAR. The students keep its number of stages,
    so stage j of one can be matched with stage j of the other: CNNs with a quarter and an
    eighth of its channels, or ResNet-8s of width 16 and 4. Smoke mode: smaller still.
    """
    validate.choice("dataset", dataset, data.NAMES)  # the image datasets; text corpora have no stages to match
    if dataset.startswith("cifar"):
        return {"student": {"name": "resnet", "depth": 8, "width": 4 if smoke else 16},
                "tiny": {"name": "resnet", "depth": 8, "width": 2 if smoke else 4}}
    if smoke:
        return {"student": {"name": "cnn", "channels": (4, 8), "fc": 16},
                "tiny": {"name": "cnn", "channels": (2, 4), "fc": 8}}
    return {"student": {"name": "cnn", "channels": (8, 16), "fc": 64},
            "tiny": {"name": "cnn", "channels": (4, 8), "fc": 32}}


def builder(spec: Mapping, ds: Dataset, *, seed_offset: int = 0) -> Callable[[int], nn.Module]:
    """``make(seed)`` building the model of ``spec`` (from :func:`architectures`) for ``ds``, its initial
    weights drawn from ``seed + seed_offset`` (a born-again student starts elsewhere than its teacher)."""
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return lambda seed: models.create(spec["name"], num_classes=ds.num_classes, input_shape=ds.input_shape,
                                      seed=seed + seed_offset, **kwargs)


def attention_maps(model: nn.Module, x: torch.Tensor, p: float = 2.0) -> list[torch.Tensor]:
    """The attention map of each of ``model``'s stages on the images ``x`` (B, C, H, W): a list of
    (B, H_s, W_s) maps, each example's of unit length (:func:`kdlab.losses.attention_map`)."""
    modules = objectives.feature_modules(model, "stages")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, feats = objectives.capture(model, modules, x.to(device))
    finally:
        model.train(was_training)
    return [losses.attention_map(f, p).view(f.shape[0], *f.shape[2:]).cpu() for f in feats]


def attention_distance(student: nn.Module, teacher: nn.Module, split: Split, *, p: float = 2.0,
                       batch_size: int = 256) -> float:
    """The attention-transfer loss between ``student`` and ``teacher`` (summed over stages, as
    :class:`~kdlab.objectives.AttentionTransfer` trains it, without its weight), averaged over ``split``."""
    total, n = 0.0, 0
    for batch in split.batches(batch_size):
        s = attention_maps(student, batch.x, p)
        t = attention_maps(teacher, batch.x, p)
        if len(s) != len(t):
            raise ParameterError(f"the student has {len(s)} stages and the teacher {len(t)}; they must match.")
        total += sum(float((a - b).pow(2).flatten(1).mean(1).sum()) for a, b in zip(s, t))
        n += batch.x.shape[0]
    return total / n


def non_target_weight(teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per example, ``1 − p_t`` of the true class at ``temperature``: the weight classic KD puts on
    its non-target part, TCKD + (1 − p_t)·NCKD (:func:`kdlab.losses.decoupled_kd_terms`)."""
    probs = losses.soft_targets(teacher_logits, temperature)
    return 1.0 - probs.gather(1, targets.to(probs.device)[:, None]).squeeze(1)


def versus(rows_a: Sequence[dict], rows_b: Sequence[dict], names: tuple[str, str], *,
           metric: str = "accuracy") -> experiments.Comparison:
    """:func:`kdlab.experiments.compare` of one test metric of two :func:`~kdlab.experiments.run_seeds`
    results whose runs share seeds (paired): accuracy in percentage points. Which side is better
    follows the metric (:func:`kdlab.experiments.higher_is_better_for`): higher accuracy, agreement
    and F1; lower NLL, ECE and KL to the teacher. A metric with no better side is refused."""
    better = experiments.higher_is_better_for(metric)
    missing = any(metric not in r for r in [*rows_a, *rows_b])
    if better is None or missing:
        known = [k for k in (rows_a or rows_b or [{}])[0] if experiments.higher_is_better_for(k) is not None]
        why = "is not in every row" if missing else "has no better side to judge"
        raise ParameterError(f"metric={metric!r} {why}; accepted: {', '.join(known) or 'none'}.")
    seeds_a, seeds_b = experiments.column(rows_a, "seed"), experiments.column(rows_b, "seed")
    if seeds_a != seeds_b:
        raise ParameterError(f"{names[0]} ran seeds {seeds_a} and {names[1]} seeds {seeds_b}; a paired "
                             "comparison needs the same seeds in the same order.")
    accuracy = metric == "accuracy"
    return experiments.compare(experiments.column(rows_a, metric), experiments.column(rows_b, metric), paired=True,
                               names=names, metric=f"test {metric}", scale=100.0 if accuracy else 1.0,
                               unit=" pp" if accuracy else "", digits=2 if accuracy else 3,
                               higher_is_better=better)


def attention_figure(teacher: nn.Module, students: Mapping[str, nn.Module], x: torch.Tensor, *, p: float = 2.0):
    """A figure of attention maps: one row per image of ``x``, the image, then the teacher's map
    and each student's at every stage (each map scaled to its own maximum). Returns the figure."""
    import matplotlib.pyplot as plt

    rows = {"teacher": attention_maps(teacher, x, p), **{name: attention_maps(m, x, p) for name, m in students.items()}}
    n_stages = len(rows["teacher"])
    columns = 1 + n_stages * len(rows)
    fig, axes = plt.subplots(len(x), columns, figsize=(1.25 * columns, 1.3 * len(x)), squeeze=False)
    images = x.float().cpu()
    for i in range(len(x)):
        img = images[i] if images.shape[1] == 3 else images[i, :1]  # (C, H, W): colour, or the first channel
        img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-12)  # normalised inputs back to [0, 1]
        axes[i, 0].imshow(img.permute(1, 2, 0).squeeze(-1), cmap="gray")
        col = 1
        for stage in range(n_stages):
            for name, maps in rows.items():
                axes[i, col].imshow(maps[stage][i], cmap="magma")
                if i == 0:
                    axes[i, col].set_title(f"{name}\nstage {stage + 1}", fontsize=8)
                col += 1
    axes[0, 0].set_title("image", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
