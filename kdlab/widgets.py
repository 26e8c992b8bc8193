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
        img = self.images[index].float()
        img = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0) / 255.0
        ax_img.imshow(img, cmap="gray")
        ax_img.set_title(f"example {index}, label {self.class_names[int(self.labels[index])]}")
        ax_img.axis("off")
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
        from IPython.display import display

        t_slider = widgets.FloatLogSlider(value=4.0, base=10, min=np.log10(temperatures[0]),
                                          max=np.log10(temperatures[1]), step=0.05, description="T")
        picker = widgets.Dropdown(options=[(f"#{i}: label {self.class_names[int(self.labels[i])]}", i)
                                           for i in range(len(self.labels))], value=0, description="example")

        def show(index, temperature):
            fig = self.draw(index, temperature, log=log)
            display(fig)
            plt.close(fig)

        output = widgets.interactive_output(show, {"index": picker, "temperature": t_slider})
        return widgets.VBox([widgets.HBox([picker, t_slider]), output])
