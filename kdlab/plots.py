"""Every figure the notebooks draw. Each function returns the matplotlib Figure.

Functions take data (tensors, dicts, lists), not models, so they are cheap to
test and reuse. Nothing here changes global matplotlib state (no rcParams at
import time). ``import kdlab`` leaves this module (and pyplot) unloaded until first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .metrics import mean_ci


def _images(x: torch.Tensor) -> np.ndarray:
    """uint8 or float (N, C, H, W) -> (N, H, W[, 3]) floats in [0, 1] for imshow."""
    x = x.detach().cpu().float()
    if x.max() > 1.5:  # raw uint8 pixels
        x = x / 255.0
    else:  # normalised inputs: rescale each image to [0, 1]
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def show_images(x: torch.Tensor, labels: Sequence | None = None, *, ncols: int = 10, size: float = 1.1,
                title: str | None = None):
    """A grid of images with optional captions (``labels`` may be strings or ints)."""
    imgs = _images(x)
    n = len(imgs)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(imgs[i], cmap="gray" if imgs[i].ndim == 2 else None)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, *, title: str | None = None):
    """Training loss, and train/validation accuracy, per epoch."""
    epochs = history["epoch"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(epochs, history["train_loss"], marker="o", label="train loss")
    if "val_loss" in history.records[0]:
        ax_loss.plot(epochs, history["val_loss"], marker="o", label="validation loss")
    ax_loss.set(xlabel="epoch", ylabel="loss (nats)", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, history["train_acc"], marker="o", label="train (augmented batches)")
    if "val_acc" in history.records[0]:
        ax_acc.plot(epochs, history["val_acc"], marker="o", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(cm: torch.Tensor | np.ndarray, class_names: Sequence[str], *, title: str = "confusion matrix"):
    """Confusion matrix with counts; the diagonal is dimmed so the mistakes stand out."""
    cm = np.asarray(cm)
    off = cm.copy().astype(float)
    np.fill_diagonal(off, np.nan)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(off, cmap="Reds")
    fig.colorbar(im, ax=ax, label="count (off-diagonal)")
    k = len(class_names)
    ax.set_xticks(range(k), class_names, rotation=90 if max(map(len, class_names)) > 3 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="gray" if i == j else "black")
    fig.tight_layout()
    return fig


def plot_reliability(curves: Mapping[str, dict], *, title: str = "reliability diagram"):
    """Accuracy against confidence per bin, one line per model (``curves`` maps a name to
    :func:`kdlab.metrics.reliability` output), above the number of images in each bin.

    The diagonal is perfect calibration. A point's accuracy is only as good as its bin is
    full, so the lower panel shows every bin's count (log scale): with an accurate model most
    images sit in the top bin, and the other points rest on a few images each. The legend sits
    outside the axes, so it hides no point.
    """
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6.8, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    n_models = max(1, len(curves))
    for k, (name, rel) in enumerate(curves.items()):
        used = rel["count"] > 0
        line, = ax.plot(rel["confidence"][used], rel["accuracy"][used], marker="o",
                        label=f"{name} (ECE {rel['ece']:.3f})")
        edges = np.asarray(rel["edges"])
        width = (edges[1:] - edges[:-1]) / (n_models + 1)
        ax_n.bar(edges[:-1] + width * (k + 0.5), rel["count"], width=width, align="edge", color=line.get_color(),
                 label=name)
    ax.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
    ax_n.set(xlabel="confidence (bins of equal width)", ylabel="images per bin\n(log scale)")
    ax_n.set_yscale("log")
    fig.legend(*ax.get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8)
    fig.tight_layout()
    return fig


def plot_soft_targets(probs_by_t: Mapping[float, torch.Tensor], class_names: Sequence[str], *, log: bool = True,
                      title: str | None = None, axes=None):
    """Bar charts of one example's class distribution at several temperatures (one panel each).
    A log scale makes the small probabilities (the "dark knowledge") visible."""
    temps = list(probs_by_t)
    # The log axis reaches down to the smallest probability shown, so no bar is cut off.
    smallest = min(float(torch.as_tensor(p).clamp_min(1e-38).min()) for p in probs_by_t.values())
    if axes is None:
        fig, axes = plt.subplots(1, len(temps), figsize=(2.6 * len(temps), 2.6), sharey=True, squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    for ax, T in zip(axes, temps):
        p = torch.as_tensor(probs_by_t[T]).detach().cpu().numpy()
        ax.bar(range(len(p)), p, color="tab:blue")
        ax.set_xticks(range(len(p)), class_names, fontsize=7)
        ax.set_title(f"T = {T:g}")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(smallest / 3, 1.5)
        else:
            ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("probability" + (" (log scale)" if log else ""))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ci_lines(x: Sequence[float], series: Mapping[str, Sequence[Sequence[float]]], *, xlabel: str, ylabel: str,
                  reference: Sequence[float] | None = None, reference_label: str = "reference", logx: bool = False,
                  scale: float = 1.0, title: str | None = None, ax=None):
    """Mean ± 95% CI against ``x`` for each series (``series[name][i]`` = per-seed values at
    ``x[i]``), with an optional reference: a band (mean ± CI) for several ``reference`` values,
    a dashed line for a single one."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.8))
    if reference is not None:
        m, h = mean_ci([v * scale for v in reference])
        if len(reference) > 1:  # a band only where there is a spread to show
            ax.axhspan(m - h, m + h, color="gray", alpha=0.25, label=f"{reference_label} (mean ± 95% CI)")
            ax.axhline(m, color="gray", lw=1)
        else:
            ax.axhline(m, color="gray", lw=1.5, ls="--", label=reference_label)
    for name, values in series.items():
        stats = [mean_ci([v * scale for v in vs]) for vs in values]
        means = np.array([s[0] for s in stats])
        half = np.nan_to_num(np.array([s[1] for s in stats]))
        ax.plot(x, means, marker="o", label=name)
        ax.fill_between(x, means - half, means + half, alpha=0.2)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.legend(fontsize=8)
    return fig if fig is not None else ax.figure
