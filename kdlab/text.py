"""Text for character-level language models, offline and deterministic.

Corpora (``kdlab.data.load(name, context=64)`` returns them as a :class:`~kdlab.data.Dataset`):

* ``pydoc``: the Python documentation topics that ship with every Python in the standard
  library's ``pydoc_data`` (about 465,000 characters; what ``help("with")`` prints). The
  text changes between Python versions, so ``ds.info`` records the version and a SHA-256.
* ``synthetic``: a made-up language of 16 symbols produced by a known order-2 Markov chain
  (each symbol depends on the two before it), so the true next-character distribution is
  known at every position: :func:`truth` gives it, and a model can be compared with the
  truth itself, not only with a teacher. The chain and the text are fixed.

Splits are contiguous blocks, never shuffled characters: the corpus is cut into
``N_BLOCKS`` equal blocks and each block into train, validation and test parts, in that
order, so every split samples the whole corpus and no window crosses from one split into
another. The test part (5% of each block) does not depend on ``seed`` or ``val_fraction``.

Each split is a :class:`TextSplit` of windows: row ``i`` holds ``context`` characters as
``x`` and the same characters shifted by one as ``y`` (position t is trained to predict
character t + 1). The last window of each block's part is padded: its padded inputs are
``0`` and their targets :data:`~kdlab.losses.IGNORE_INDEX`, which every loss and metric of
the kit leaves out.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import validate
from .data import Batch, Dataset, Split
from .errors import DataCorruptError, ParameterError
from .losses import IGNORE_INDEX

NAMES = ("pydoc", "synthetic")
N_BLOCKS = 20  # contiguous blocks the corpus is cut into before splitting (each gives train, val, test)
TEST_FRACTION = 0.05  # the end of every block, whatever the seed

# The synthetic language: its chain and its text are drawn once from these fixed seeds.
SYNTHETIC_SYMBOLS = "abcdefghijklmno "  # 16 symbols
SYNTHETIC_LENGTH = 150_000  # characters
SYNTHETIC_CONCENTRATION = 0.3  # Dirichlet concentration per context: a few likely next symbols, many rare ones
_SYNTHETIC_SEED = 150302531  # Hinton et al.'s arXiv number, 1503.02531


@dataclass(repr=False)
class TextSplit(Split):
    """One split of a text corpus: windows of token ids ``x`` ``(N, L)`` and next-token targets ``y`` ``(N, L)``.

    A :class:`~kdlab.data.Split` to ``fit``, the teacher cache and the metrics: ``batches``
    yields :class:`~kdlab.data.Batch` es of whole windows, ``inputs()`` are the token ids.
    ``vocab`` holds the characters, token id ``i`` being ``vocab[i]``. Text has no
    augmentation.
    """

    mean: torch.Tensor = field(default_factory=lambda: torch.zeros(1))  # unused: token ids are not normalised
    std: torch.Tensor = field(default_factory=lambda: torch.ones(1))
    vocab: tuple[str, ...] = ()

    def __post_init__(self):
        if self.x.dtype != torch.long or self.x.dim() != 2:
            raise DataCorruptError(f"TextSplit {self.name!r}: x must be int64 token ids (N, L), got "
                                   f"{self.x.dtype} {tuple(self.x.shape)}.")
        if self.y.shape != self.x.shape or self.y.dtype != torch.long:
            raise DataCorruptError(f"TextSplit {self.name!r}: y must be int64 of x's shape {tuple(self.x.shape)}, "
                                   f"got {self.y.dtype} {tuple(self.y.shape)}.")
        validate.choice("augmentation", self.augmentation, ("none",))

    def __repr__(self) -> str:
        return (f"TextSplit({self.name!r}, windows={len(self)}, context={self.x.shape[1]}, "
                f"characters={self.num_targets}, device={self.x.device.type})")

    @property
    def num_targets(self) -> int:
        """Characters scored in this split (padding left out)."""
        return int((self.y != IGNORE_INDEX).sum())

    def normalize(self, x_uint8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return x_uint8  # token ids stay ids

    def inputs(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        return self.x if idx is None else self.x[idx]

    @property
    def num_augmentations(self) -> int:
        return 1

    def apply_augmentation(self, x_uint8, generator=None, aug=None):
        raise ParameterError("text has no augmentation; train with augment=False.")

    def batches(self, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, normalized: torch.Tensor | None = None,
                memory_format: torch.memory_format = torch.contiguous_format) -> Iterator[Batch]:
        """Yield :class:`~kdlab.data.Batch` es ``(x (B, L), y (B, L), idx, aug)`` covering the split once."""
        if augment:
            raise ParameterError("augment=True: text has no augmentation; train with augment=False.")
        n = len(self)
        order = (torch.randperm(n, device=self.x.device, generator=generator) if shuffle
                 else torch.arange(n, device=self.x.device))
        no_aug = torch.zeros(min(batch_size, n), dtype=torch.long, device=self.x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield Batch(self.x[idx], self.y[idx], idx, no_aug[: len(idx)])

    def text(self, i: int, length: int | None = None) -> str:
        """Window ``i`` as a string (its first ``length`` characters)."""
        return decode(self.x[i, :length], self.vocab)


def encode(text: str, vocab: Sequence[str]) -> torch.Tensor:
    """Token ids ``(len(text),)`` of ``text`` in ``vocab``; an error names any character outside it."""
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise ParameterError(f"text has characters outside the vocabulary: {''.join(unknown)!r}; accepted: "
                             f"{''.join(vocab)!r}.")
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def decode(ids: torch.Tensor | Sequence[int], vocab: Sequence[str]) -> str:
    """The characters of token ids ``ids`` (padding and out-of-range ids are left out)."""
    values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return "".join(vocab[i] for i in values if 0 <= i < len(vocab))


# --- the corpora ----------------------------------------------------------------------------

def pydoc_text() -> str:
    """The topics of ``pydoc_data.topics`` joined in key order, blank-line separated."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some distributions package the docs separately
        raise DataCorruptError("dataset='pydoc' needs the standard library's pydoc_data module, which this Python "
                               f"({platform.python_version()}) lacks: {err}. Use dataset='synthetic'.") from err
    return "\n\n".join(topics[key].strip() for key in sorted(topics))


@dataclass(frozen=True)
class MarkovLanguage:
    """An order-2 Markov chain over ``symbols``: ``probs[a, b]`` is the distribution of the
    symbol after ``a, b``; ``pair_prior[b]`` the stationary distribution of ``a`` given that
    the next symbol is ``b`` (what a reader who sees only ``b`` knows of ``a``); ``stationary[b]``
    the stationary probability of ``b``. The arrays are read-only: the chain is shared."""

    symbols: str
    probs: np.ndarray  # (V, V, V)
    pair_prior: np.ndarray  # (V, V): [b, a] = P(previous = a | current = b), stationary
    stationary: np.ndarray  # (V,): [b] = P(current = b), stationary

    @property
    def entropy_rate(self) -> float:
        """Bits per symbol of the chain: the lowest bits per character any model can reach with full context."""
        joint = self.pair_prior.T * self.stationary[None, :]  # [a, b] = P(a, b)
        h = -(self.probs * np.log2(np.clip(self.probs, 1e-300, None))).sum(-1)  # (V, V)
        return float((joint * h).sum())


def _stationary_pairs(probs: np.ndarray) -> np.ndarray:
    """The stationary distribution of consecutive pairs ``[a, b]`` (power iteration on 256 states)."""
    v = probs.shape[0]
    pairs = np.full((v, v), 1.0 / v**2)
    for _ in range(2000):
        nxt = np.einsum("ab,abc->bc", pairs, probs)
        if np.abs(nxt - pairs).max() < 1e-13:
            break
        pairs = nxt
    return pairs


@functools.cache  # fixed seeds: the same chain every call, so it is drawn and solved once per process
def synthetic_language() -> MarkovLanguage:
    """The fixed chain of the ``synthetic`` corpus (one shared object: its arrays are read-only)."""
    v = len(SYNTHETIC_SYMBOLS)
    rng = np.random.default_rng(_SYNTHETIC_SEED)
    probs = rng.dirichlet(np.full(v, SYNTHETIC_CONCENTRATION), size=(v, v))  # (V, V, V)
    pairs = _stationary_pairs(probs)  # [a, b]
    prior = (pairs / pairs.sum(0, keepdims=True)).T  # [b, a] = P(a | b)
    arrays = probs, prior, pairs.sum(0)
    for array in arrays:
        array.setflags(write=False)  # a change by one caller would reach every later load("synthetic")
    return MarkovLanguage(SYNTHETIC_SYMBOLS, *arrays)


def synthetic_text(language: MarkovLanguage | None = None, length: int = SYNTHETIC_LENGTH) -> str:
    """``length`` symbols sampled from the chain with a fixed seed."""
    language = language or synthetic_language()
    rng = np.random.default_rng(_SYNTHETIC_SEED + 1)
    cumulative = np.cumsum(language.probs, axis=-1).tolist()  # nested lists: bisect on them is fast
    draws = rng.random(length).tolist()
    a, b = 0, 1
    out = []
    for u in draws:
        row = cumulative[a][b]
        c = min(bisect.bisect_right(row, u * row[-1]), len(row) - 1)
        out.append(c)
        a, b = b, c
    return "".join(language.symbols[i] for i in out)


def truth(split: TextSplit, language: MarkovLanguage | None = None) -> torch.Tensor:
    """The synthetic language's true next-symbol probabilities ``(N, L, V)`` at every position of
    ``split``, given what a model reading the window sees: both previous symbols from position
    1 on; at position 0 only one, so the unseen one is averaged out under the chain's
    stationary distribution. Padded positions hold the uniform distribution (they are not scored)."""
    language = language or synthetic_language()
    v = len(language.symbols)
    if len(split.vocab) != v or "".join(split.vocab) != language.symbols:
        raise ParameterError(f"truth() needs a split of the synthetic corpus; this one's vocabulary is "
                             f"{''.join(split.vocab)!r}.")
    probs = torch.tensor(language.probs, dtype=torch.float32)  # (V, V, V), a copy: the chain's arrays are read-only
    first = torch.from_numpy(np.einsum("ba,abc->bc", language.pair_prior, language.probs)).float()  # (V, V)
    x = split.x.cpu()
    out = torch.empty(*x.shape, v)
    out[:, 0] = first[x[:, 0]]
    out[:, 1:] = probs[x[:, :-1], x[:, 1:]]
    out[split.y.cpu() == IGNORE_INDEX] = 1.0 / v
    return out


# --- loading --------------------------------------------------------------------------------

def _windows(ids: torch.Tensor, context: int, name: str, vocab: tuple[str, ...]) -> TextSplit:
    """``ids`` cut into windows of ``context`` inputs and their next-character targets; the last one padded."""
    n = max(1, -(-(len(ids) - 1) // context))
    x = torch.zeros(n * context, dtype=torch.long)
    y = torch.full((n * context,), IGNORE_INDEX, dtype=torch.long)
    x[: len(ids) - 1] = ids[:-1]
    y[: len(ids) - 1] = ids[1:]
    return TextSplit(x.view(n, context), y.view(n, context), name=name, vocab=vocab)


def load(name: str, *, context: int = 64, val_fraction: float = 0.1) -> Dataset:
    """Corpus ``name`` (``"pydoc"`` or ``"synthetic"``) as a :class:`~kdlab.data.Dataset` of
    :class:`TextSplit` s of ``context``-character windows; call it through :func:`kdlab.data.load`.

    ``val_fraction``: share of each block's non-test part held out for validation.
    ``ds.num_classes`` is the vocabulary size, ``ds.class_names`` the characters,
    ``ds.input_shape`` is ``(context,)``.
    """
    validate.choice("name", name, NAMES)
    context = validate.integer("context", context, low=2)
    validate.real("val_fraction", val_fraction, low=0.0, high=0.5, low_open=True)
    if name == "pydoc":
        corpus = pydoc_text()
        vocab = tuple(sorted(set(corpus)))
        info = {"source": "the Python documentation topics in the standard library's pydoc_data.topics",
                "python_version": platform.python_version()}
    else:
        corpus = synthetic_text()
        vocab = tuple(SYNTHETIC_SYMBOLS)
        info = {"source": f"an order-2 Markov chain over {len(vocab)} symbols (kdlab.text.synthetic_language)",
                "entropy_rate_bits": synthetic_language().entropy_rate}
    info.update(characters=len(corpus), sha256=hashlib.sha256(corpus.encode("utf-8")).hexdigest(),
                blocks=N_BLOCKS, splits="contiguous: train, val, test inside each block")
    ids = encode(corpus, vocab)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    edges = np.linspace(0, len(ids), N_BLOCKS + 1).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        test_start = hi - int(round(TEST_FRACTION * (hi - lo)))
        val_start = test_start - int(round(val_fraction * (test_start - lo)))
        parts["train"].append(ids[lo:val_start])
        parts["val"].append(ids[val_start:test_start])
        parts["test"].append(ids[test_start:hi])
    # Windows never cross a block boundary: each block's part is cut on its own, then stacked.
    splits = {}
    for split_name, pieces in parts.items():
        cut = [_windows(p, context, split_name, vocab) for p in pieces if len(p) > 1]
        splits[split_name] = TextSplit(torch.cat([c.x for c in cut]), torch.cat([c.y for c in cut]), name=split_name,
                                       vocab=vocab)
    return Dataset(name=name, train=splits["train"], val=splits["val"], test=splits["test"], num_classes=len(vocab),
                   input_shape=(context,), class_names=list(vocab), info=info)


def with_windows(split: TextSplit, x: torch.Tensor, name: str) -> TextSplit:
    """A split of the same vocabulary holding the windows ``x`` ``(N, L + 1)``: inputs ``x[:, :-1]``,
    targets ``x[:, 1:]`` (how :func:`kdlab.lm.teacher_text` turns generated text into a training split)."""
    return replace(split, x=x[:, :-1].contiguous(), y=x[:, 1:].contiguous(), name=name)
