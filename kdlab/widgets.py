"""Interactive explorers for the notebooks, built on plain callbacks that tests can call.

Each explorer separates the drawing (a function of plain arguments that returns
a matplotlib Figure, callable from pytest without a browser) from the widgets
(ipywidgets controls wired with ``interactive_output``). Readers without
widgets see the same figure through the static fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import losses

#: Temperatures a slider offers: round values, so it starts at exactly 4 and shows "4", not "3.97164".
TEMPERATURES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)


def temperature_slider(bounds: tuple[float, float] = (0.5, 50.0), value: float = 4.0):
    """A slider over the round temperatures in ``bounds``, starting at ``value``."""
    import ipywidgets as widgets

    options = [t for t in TEMPERATURES if bounds[0] <= t <= bounds[1]]
    if value not in options:
        raise ValueError(f"value={value!r} is not one of the slider's temperatures {options}.")
    return widgets.SelectionSlider(options=[(f"{t:g}", t) for t in options], value=value, description="T",
                                   continuous_update=False)


def _live(draw, controls: dict):
    """Wire ``controls`` (name -> widget) to ``draw(**values) -> Figure`` and return the output area."""
    import ipywidgets as widgets
    from IPython.display import display

    def show(**values):
        fig = draw(**values)
        display(fig)
        plt.close(fig)

    return widgets.interactive_output(show, controls)



def _show_image(ax, image: torch.Tensor, title: str) -> None:
    """Draw one (C, H, W) image, grey or colour (uint8 0-255 or float), without axes."""
    img = image.float()
    img = (img[0] if img.shape[0] == 1 else img.permute(1, 2, 0) / 255.0).numpy()
    ax.imshow(img, cmap="gray")
    ax.set_title(title)
    ax.axis("off")

class SoftTargetExplorer:
    """Explore a teacher's soft targets: pick a test example and a temperature T.

    Args:
        logits: the teacher's logits ``(N, K)`` for the examples on offer.
        images: the matching images ``(N, C, H, W)`` (uint8 or float), shown beside the bars.
        labels: true labels ``(N,)``.
        class_names: K names.
    """

    def __init__(self, logits: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]):
        self.logits = logits.detach().float().cpu()
        self.images = images.detach().cpu()
        self.labels = labels.detach().cpu()
        self.class_names = list(class_names)

    def probabilities(self, index: int, temperature: float) -> np.ndarray:
        """Soft targets of example ``index`` at ``temperature``."""
        return losses.soft_targets(self.logits[index], temperature).numpy()

    def draw(self, index: int = 0, temperature: float = 4.0, log: bool = True):
        """The callback: image on the left, soft targets at ``temperature`` on the right."""
        probs = self.probabilities(index, temperature)
        entropy = float(losses.entropy(torch.from_numpy(probs)))
        fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(8, 2.8), gridspec_kw={"width_ratios": [1, 3]})
        _show_image(ax_img, self.images[index], f"example {index}, label {self.class_names[int(self.labels[index])]}")
        ax_bar.bar(range(len(probs)), probs, color="tab:blue")
        ax_bar.set_xticks(range(len(probs)), self.class_names)
        if log:
            ax_bar.set_yscale("log")
            ax_bar.set_ylim(1e-8, 1.5)
        ax_bar.set(ylabel="probability", title=f"soft targets at T = {temperature:g}  (entropy {entropy:.2f} bits)")
        fig.tight_layout()
        return fig

    def widget(self, temperatures: tuple[float, float] = (0.5, 50.0), log: bool = True):
        """A slider for T (log scale), a picker for the example, and the live figure."""
        import ipywidgets as widgets

        t_slider = temperature_slider(temperatures)
        picker = widgets.Dropdown(options=[(f"#{i}: label {self.class_names[int(self.labels[i])]}", i)
                                           for i in range(len(self.labels))], value=0, description="example")

        output = _live(lambda index, temperature: self.draw(index, temperature, log=log),
                       {"index": picker, "temperature": t_slider})
        return widgets.VBox([widgets.HBox([picker, t_slider]), output])


class LossExplorer:
    """T and alpha against one example: soft targets, the two loss terms and the gradient.

    Args:
        student_logits: one example's student logits ``(K,)``.
        teacher_logits: the teacher's logits for it ``(K,)``.
        label: its true class.
        class_names: K names.

    The loss is kdlab's :func:`~kdlab.losses.distillation_loss`:
    ``alpha * T² KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, z_s)``.
    """

    def __init__(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, label: int,
                 class_names: Sequence[str]):
        self.z_s = student_logits.detach().float().cpu().reshape(1, -1)
        self.z_t = teacher_logits.detach().float().cpu().reshape(1, -1)
        self.label = torch.tensor([int(label)])
        self.class_names = list(class_names)

    def terms(self, temperature: float, alpha: float) -> dict:
        """The weighted soft and hard terms and their gradients with respect to the student's logits."""
        out = {}
        for name, weight in (("soft", alpha), ("hard", 1.0 - alpha)):
            z = self.z_s.clone().requires_grad_(True)
            if name == "soft":
                value = weight * losses.kd_loss(z, self.z_t, temperature)
            else:
                value = weight * torch.nn.functional.cross_entropy(z, self.label)
            value.backward()
            out[name] = (value.item(), z.grad[0].numpy())
        return out

    def draw(self, temperature: float = 4.0, alpha: float = 0.9):
        """Left: both soft targets at T. Middle: the two weighted terms. Right: their gradients."""
        p_t = losses.soft_targets(self.z_t[0], temperature).numpy()
        p_s = losses.soft_targets(self.z_s[0], temperature).numpy()
        terms = self.terms(temperature, alpha)
        k = np.arange(len(self.class_names))
        fig, (ax_p, ax_l, ax_g) = plt.subplots(1, 3, figsize=(12, 3.2), gridspec_kw={"width_ratios": [3, 1.2, 3]})
        ax_p.bar(k - 0.2, p_t, 0.4, label="teacher")
        ax_p.bar(k + 0.2, p_s, 0.4, label="student")
        ax_p.set_xticks(k, self.class_names)
        ax_p.set(ylim=(0, 1.02), ylabel="probability", title=f"soft targets at T = {temperature:g} "
                 f"(true class {self.class_names[int(self.label)]})")
        ax_p.legend(fontsize=8)
        names = ["α·T²·KL", "(1-α)·CE"]
        ax_l.bar(names, [terms["soft"][0], terms["hard"][0]], color=["tab:purple", "tab:gray"])
        ax_l.set(title=f"loss terms (α = {alpha:g})")
        ax_g.bar(k - 0.2, terms["soft"][1], 0.4, color="tab:purple", label="from the soft term")
        ax_g.bar(k + 0.2, terms["hard"][1], 0.4, color="tab:gray", label="from the hard term")
        ax_g.axhline(0, color="black", lw=0.5)
        ax_g.set_xticks(k, self.class_names)
        ax_g.set(title="gradient on each student logit")
        ax_g.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def widget(self, temperatures: tuple[float, float] = (0.5, 50.0)):
        """Sliders for T and alpha, and the live figure."""
        import ipywidgets as widgets

        t_slider = temperature_slider(temperatures)
        a_slider = widgets.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.05, description="alpha",
                                       continuous_update=False)
        output = _live(self.draw, {"temperature": t_slider, "alpha": a_slider})
        return widgets.VBox([widgets.HBox([t_slider, a_slider]), output])


class ComparisonExplorer:
    """Pick a test image; see several models' predicted distributions side by side.

    Args:
        images: the images on offer ``(N, C, H, W)``.
        labels: their true labels ``(N,)``.
        probabilities: model name -> its probabilities ``(N, K)`` on those images.
        class_names: K names.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, probabilities: dict, class_names: Sequence[str]):
        self.images = images.detach().cpu()
        self.labels = labels.detach().cpu()
        self.probabilities = {name: torch.as_tensor(p).detach().float().cpu().numpy() for name, p in probabilities.items()}
        self.class_names = list(class_names)
        for name, p in self.probabilities.items():
            if p.shape != (len(self.labels), len(self.class_names)):
                raise ValueError(f"probabilities[{name!r}] has shape {p.shape}; expected "
                                 f"{(len(self.labels), len(self.class_names))} (images x classes).")

    def draw(self, index: int = 0):
        """The image, then one bar group per class with a bar per model."""
        fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(10, 2.8), gridspec_kw={"width_ratios": [1, 4]})
        _show_image(ax_img, self.images[index], f"test image {index}, label {self.class_names[int(self.labels[index])]}")
        k = np.arange(len(self.class_names))
        width = 0.8 / len(self.probabilities)
        for i, (name, p) in enumerate(self.probabilities.items()):
            guess = self.class_names[int(p[index].argmax())]
            ax_bar.bar(k + (i - (len(self.probabilities) - 1) / 2) * width, p[index], width,
                       label=f"{name} (says {guess}, {p[index].max():.0%})")
        ax_bar.set_xticks(k, self.class_names)
        ax_bar.set(ylim=(0, 1.02), ylabel="probability")
        ax_bar.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def widget(self):
        """A picker over the images (label and whether the models disagree), and the live figure."""
        import ipywidgets as widgets

        guesses = np.stack([p.argmax(1) for p in self.probabilities.values()])  # (models, N)
        options = []
        for i in range(len(self.labels)):
            note = "models disagree" if len(set(guesses[:, i])) > 1 else "models agree"
            options.append((f"#{i}: label {self.class_names[int(self.labels[i])]}, {note}", i))
        picker = widgets.Dropdown(options=options, value=0, description="image")
        output = _live(self.draw, {"index": picker})
        return widgets.VBox([picker, output])
