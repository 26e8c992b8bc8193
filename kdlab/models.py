"""Models created by name: MLPs, a small CNN teacher, a CIFAR ResNet, a linear model.

``create(name, num_classes=..., input_shape=..., **kwargs)`` builds a model and
records how it was built in ``model.kdlab_spec`` so :mod:`kdlab.checkpoint` can
rebuild it. Every model maps a float batch ``(B, C, H, W)`` to logits ``(B, K)``.

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (the
    CIFAR ResNet-6n+2 family: ResNet-8/20/56).
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015
    (the 800-800 MLP student on MNIST).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from . import validate
from .errors import ParameterError, ParameterTypeError
from .files import jsonable
from .seqmodels import GRULM, TransformerLM


class MLP(nn.Module):
    """Fully connected network: flatten -> [Linear -> ReLU -> Dropout] * len(hidden) -> Linear."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], hidden: Sequence[int] = (800, 800),
                 dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.net(x)

    @property
    def hidden_layers(self) -> list[nn.Linear]:
        """The hidden ``nn.Linear`` layers in order (the output layer excluded)."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        return linears[:-1]

    @property
    def output_layer(self) -> nn.Linear:
        return [m for m in self.net if isinstance(m, nn.Linear)][-1]


class Linear(nn.Module):
    """Multinomial logistic regression: one weight template per class, ``logits = W x + b``."""

    def __init__(self, num_classes: int, input_shape: Sequence[int]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.fc = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.fc(x.flatten(1))

    def templates(self) -> torch.Tensor:
        """Per-class weights reshaped to images: ``(K, C, H, W)``."""
        return self.fc.weight.detach().view(-1, *self.input_shape)


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class CNN(nn.Module):
    """Small VGG-style teacher for digit images (28x28, and 8x8 in smoke mode).

    Two stages of [conv3x3-BN-ReLU x2, maxpool], then a hidden dense layer with
    dropout. About 0.9M parameters at the default widths, so it trains to ~99%
    on MNIST-sized inputs in minutes on a laptop CPU.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], channels: Sequence[int] = (32, 64),
                 fc: int = 256, dropout: float = 0.3):
        super().__init__()
        c_in, h, w = input_shape
        layers: list[nn.Module] = []
        for c in channels:
            layers += _conv_bn(c_in, c) + _conv_bn(c, c) + [nn.MaxPool2d(2)]
            c_in, h, w = c, h // 2, w // 2
        if h < 1 or w < 1:
            raise ParameterError(f"input_shape={tuple(input_shape)} is too small for {len(channels)} "
                                 f"pooling stages; use fewer channels entries or larger images.")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, fc), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(fc, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.features(x))

    @property
    def stages(self) -> list[nn.Module]:
        """The modules whose outputs end each stage, shallow to deep: the pooled feature maps
        (B, C_s, H_s, W_s) that feature distillation hooks into (:mod:`kdlab.objectives`)."""
        return [m for m in self.features if isinstance(m, nn.MaxPool2d)]

    @property
    def embedding_layer(self) -> nn.Module:
        """The module whose output is the (B, fc) representation the last layer classifies (before dropout)."""
        return self.head[2]


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut; a 1x1 conv shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. 2016: three stages of n blocks at widths
    w, 2w, 4w (w=16), global average pooling, one linear layer."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], depth: int = 20, width: int = 16):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ParameterError(f"depth={depth!r} is not accepted; a CIFAR ResNet has depth 6n+2 "
                                 "with n >= 1: 8, 14, 20, 32, 44, 56, 110.")
        n = (depth - 2) // 6
        c_in = input_shape[0]
        self.stem = nn.Sequential(*_conv_bn(c_in, width))
        blocks: list[nn.Module] = []
        c = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(BasicBlock(c, c_out, stride=2 if (stage > 0 and i == 0) else 1))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        return self.head(self.blocks(self.stem(x)))

    @property
    def stages(self) -> list[nn.Module]:
        """The last block of each of the three stages, shallow to deep: their outputs are the
        feature maps (B, C_s, H_s, W_s) that feature distillation hooks into (:mod:`kdlab.objectives`)."""
        n = len(self.blocks) // 3
        return [self.blocks[n - 1], self.blocks[2 * n - 1], self.blocks[3 * n - 1]]

    @property
    def embedding_layer(self) -> nn.Module:
        """The module whose output is the pooled (B, 4w) representation the last layer classifies."""
        return self.head[1]


# Language models (notebook 12) live in their own module; they read token ids of shape (context,).
_REGISTRY: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "linear": Linear,
                                                  "transformer": TransformerLM, "gru": GRULM}


def names() -> list[str]:
    """The model names :func:`create` accepts."""
    return sorted(_REGISTRY)


def register(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``create(name, ...)`` build models with ``builder(num_classes, input_shape, **kwargs)``."""
    _REGISTRY[name] = builder


def create(name: str, *, num_classes: int, input_shape: Sequence[int], seed: int | None = None,
           **kwargs) -> nn.Module:
    """Build a model by name.

    Args:
        name: ``"mlp"`` (kwargs ``hidden=(800, 800)``, ``dropout=0.0``), ``"cnn"``
            (``channels=(32, 64)``, ``fc=256``, ``dropout=0.3``), ``"resnet"``
            (``depth=20``, ``width=16``) or ``"linear"``; for text (:mod:`kdlab.seqmodels`),
            ``"transformer"`` (``d_model=128``, ``n_layers=4``, ``n_heads=4``, ``dropout=0.0``)
            or ``"gru"`` (``d_model=32``, ``hidden_size=128``, ``n_layers=1``, ``dropout=0.0``).
        num_classes: number of output logits (the vocabulary size for text).
        input_shape: ``(C, H, W)`` of one input, e.g. ``ds.input_shape``; ``(context,)`` for text.
        seed: if given, the initial weights depend only on it (the global RNG is
            left as it was).
    """
    validate.choice("name", name, names())
    num_classes = validate.integer("num_classes", num_classes, low=2)
    input_shape = validate.int_tuple("input_shape", input_shape)
    builder = _REGISTRY[name]
    if len(input_shape) != getattr(builder, "input_rank", 3):
        raise ParameterError(f"input_shape={input_shape!r} must be " + (
            "(context,) for a language model, e.g. ds.input_shape of a text dataset."
            if getattr(builder, "input_rank", 3) == 1 else "(channels, height, width)."))
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", "input_shape")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ParameterTypeError(f"model {name!r} got unexpected argument(s) {', '.join(unknown)}; "
                                 f"accepted: {', '.join(accepted) or 'none'}.")
    if "hidden" in kwargs:
        kwargs["hidden"] = validate.int_tuple("hidden", kwargs["hidden"])
    if "dropout" in kwargs:
        validate.real("dropout", kwargs["dropout"], low=0.0, high=1.0, high_open=True)
    if seed is None:
        model = builder(num_classes, input_shape, **kwargs)
    else:
        validate.integer("seed", seed, low=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(num_classes, input_shape, **kwargs)
    model.kdlab_spec = {"name": name, "num_classes": num_classes, "input_shape": list(input_shape),
                        "kwargs": {k: jsonable(v) for k, v in kwargs.items()}}
    return model


def count_params(model: nn.Module, *, trainable_only: bool = False, nonzero: bool = False) -> int:
    """Number of parameters (optionally only trainable ones, or only non-zero entries,
    which is what pruning reduces)."""
    total = 0
    for p in model.parameters():
        if trainable_only and not p.requires_grad:
            continue
        total += int(torch.count_nonzero(p)) if nonzero else p.numel()
    return total


def output_shape(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of ``model``'s output for one input of ``input_shape``, found with a
    dry run in eval mode on a zero batch of 2 (BatchNorm needs more than one)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, device=device))
    finally:
        model.train(was_training)
    return tuple(out.shape[1:])
