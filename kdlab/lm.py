"""Distilling a language model: sampling, sequence-level and on-policy distillation, and the measures.

Token-level distillation needs nothing new: :class:`kdlab.objectives.Distillation` (forward KL,
mode-covering) and :class:`kdlab.objectives.ReverseKL` (mode-seeking) average their loss over
every position of ``(B, L, V)`` logits. This module holds what only text has:

* :func:`sample_next` and :func:`generate`: temperature sampling, with the model's KV cache
  (:mod:`kdlab.seqmodels`) so each new character costs one position, not the whole prefix;
* :func:`teacher_text`: **sequence-level** distillation's training data, text written by the
  teacher; a student trained on it with plain cross-entropy learns from the teacher's
  sequences instead of its per-character distributions (Kim & Rush 2016);
* :class:`OnPolicy`: **on-policy** distillation, where the student writes text and the
  teacher scores every character of it (GKD, Agarwal et al. 2024);
* :func:`evaluate`: bits per character, KL to the teacher (and to the true distribution of
  the synthetic language), entropy of the next-character distribution; and
  :func:`distinct_ngrams`, the diversity of generated text.

All of it trains through the one loop, :func:`kdlab.train.fit`.

References:
    Y. Kim, A. M. Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016, arXiv:1606.07947.
    R. Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated
    Mistakes" (GKD), ICLR 2024, arXiv:2306.13649.
    Y. Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024, arXiv:2306.08543.
    J. Li et al., "A Diversity-Promoting Objective Function for Neural Conversation Models",
    NAACL 2016 (distinct-n).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from . import devices, inference, losses, metrics, validate
from .data import Batch, Dataset, Split
from .errors import ParameterError, ParameterTypeError
from .objectives import Objective, as_teacher, scored_positions
from .teacher import Teacher
from .text import TextSplit, decode, with_windows

DIVERGENCES = ("forward", "reverse")
LN2 = math.log(2.0)


# --- the teacher ----------------------------------------------------------------------------

def teacher_path(checkpoint_dir: str | os.PathLike, recipe: dict) -> Path:
    """Where a teacher trained with ``recipe`` is kept: ``<checkpoint_dir>/lm_teacher_<dataset>_<hash>.pt``,
    the hash covering the whole recipe (the corpus's SHA-256 included), so any change trains a new one.
    The folder is :func:`kdlab.lab.checkpoint_folder`'s, as for notebook 01's teacher."""
    from .lab import checkpoint_folder

    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return checkpoint_folder(checkpoint_dir) / f"lm_teacher_{recipe['dataset']}_{digest}.pt"


def load_or_train_teacher(ds: Dataset, checkpoint_dir: str | os.PathLike, *, d_model: int = 128, n_layers: int = 4,
                          n_heads: int = 4, epochs: int = 2, lr: float = 3e-3, batch_size: int = 32, seed: int = 0,
                          device: str = "auto", progress: bool = True) -> tuple[nn.Module, dict]:
    """A transformer teacher for text dataset ``ds``: loaded if one was trained with the same recipe
    (see :func:`teacher_path`), else trained now with :func:`kdlab.train.fit` (AdamW, cosine decay
    after a warm-up of a tenth of an epoch) and saved. Returns ``(teacher, metadata)``; the
    metadata holds the recipe, the training ``records`` and ``train_seconds``, ``loaded`` (False
    when it was trained here) and ``path``. If a parallel run saves the same recipe first, its
    teacher is the one returned (:func:`kdlab.lab.load_or_train`)."""
    from . import models, train
    from .lab import load_or_train

    recipe = {"dataset": ds.name, "corpus_sha256": ds.info.get("sha256"), "context": ds.input_shape[0],
              "train_windows": len(ds.train), "d_model": d_model, "n_layers": n_layers, "n_heads": n_heads,
              "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    path = teacher_path(checkpoint_dir, recipe)

    def train_now():
        teacher = models.create("transformer", num_classes=ds.num_classes, input_shape=ds.input_shape, seed=seed,
                                d_model=d_model, n_layers=n_layers, n_heads=n_heads)
        history = train.fit(teacher, ds, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
                            progress=progress, config=train.TrainConfig(warmup_epochs=min(0.1, epochs / 10)))
        return teacher, {"recipe": recipe, "records": history.records, "train_seconds": history.total_seconds}

    teacher, meta, loaded = load_or_train(path, train_now, device=devices.resolve(device))
    return teacher, {**meta, "loaded": loaded, "path": str(path)}


# --- sampling -------------------------------------------------------------------------------

def sample_next(logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """One token id per row of ``logits`` ``(B, V)``, drawn from ``softmax(logits / T)``; greedy
    (the argmax) at ``temperature=0``. Lower T sharpens the distribution towards its mode,
    higher T flattens it. ``generator`` makes the draw repeatable."""
    temperature = validate.real("temperature", temperature, low=0.0)
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


@torch.no_grad()
def generate(model: nn.Module, prompt: torch.Tensor, new_tokens: int, *, temperature: float = 1.0,
             generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """``prompt`` ``(B, P)`` followed by ``new_tokens`` sampled tokens: ``(B, P + new_tokens)``.

    With ``use_cache`` the model decodes one new token per step through its state (a
    transformer's KV cache, a GRU's hidden state); without it, every step runs the model on the
    whole sequence so far. Both give the same tokens (tested); the cache is much faster
    (docs/BENCHMARKS.md, section 7). The model runs in eval mode and is left as it was.
    A transformer reads at most its ``context``: ``P + new_tokens`` may exceed it by one, the
    last token, which is sampled but never read. A GRU has no such limit.
    """
    new_tokens = validate.integer("new_tokens", new_tokens, low=0)
    if not isinstance(prompt, torch.Tensor) or prompt.dtype != torch.long or prompt.dim() != 2 or prompt.shape[1] < 1:
        got = f"{prompt.dtype} {tuple(prompt.shape)}" if isinstance(prompt, torch.Tensor) else type(prompt).__name__
        raise ParameterError(f"prompt must be int64 token ids of shape (batch, length >= 1), got {got}.")
    # Only a model with a position table has a context (the transformer; a GRU reads any length).
    context, read = getattr(model, "context", None), prompt.shape[1] + new_tokens - 1  # the last token is never read
    if context is not None and read > context:
        raise ParameterError(f"prompt length {prompt.shape[1]} + new_tokens={new_tokens} needs {read} positions; "
                             f"the model reads at most context={context}.")
    was_training = model.training
    model.eval()
    try:
        if new_tokens == 0:
            return prompt.clone()
        out = [prompt]
        if use_cache:
            logits, state = model.decode(prompt)  # (B, P, V)
            for step in range(new_tokens):
                token = sample_next(logits[:, -1], temperature, generator)  # (B,)
                out.append(token[:, None])
                if step + 1 < new_tokens:
                    logits, state = model.decode(token[:, None], state)  # (B, 1, V)
        else:
            for _ in range(new_tokens):
                token = sample_next(model(torch.cat(out, dim=1))[:, -1], temperature, generator)
                out.append(token[:, None])
        return torch.cat(out, dim=1)
    finally:
        model.train(was_training)


def characters_per_second(model: nn.Module, prompt: torch.Tensor, new_tokens: int, *, use_cache: bool = True,
                          repeats: int = 3, seed: int = 0) -> float:
    """Generated characters per second (all rows of ``prompt`` together), the best of ``repeats`` runs."""
    best = 0.0
    for _ in range(validate.integer("repeats", repeats, low=1)):
        gen = torch.Generator(device=prompt.device).manual_seed(seed)
        if prompt.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate(model, prompt, new_tokens, generator=gen, use_cache=use_cache)
        if prompt.device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, prompt.shape[0] * new_tokens / (time.perf_counter() - t0))
    return best


def samples(model: nn.Module, split: TextSplit, *, n: int = 4, prompt_length: int = 16, temperature: float = 1.0,
            seed: int = 0, windows: Sequence[int] | None = None) -> list[str]:
    """``n`` texts the model writes after the first ``prompt_length`` characters of ``n`` windows of
    ``split`` (``windows``, or evenly spaced ones), each filling a window; prompt included."""
    device = next(model.parameters()).device
    idx = list(windows) if windows is not None else [round(i * (len(split) - 1) / max(1, n - 1)) for i in range(n)]
    prompt = split.x[idx, :prompt_length].to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, prompt, split.x.shape[1] + 1 - prompt_length, temperature=temperature, generator=gen)
    return [decode(row, split.vocab) for row in out.cpu()]


# --- sequence-level distillation ------------------------------------------------------------

def teacher_text(teacher: nn.Module, split: TextSplit, *, temperature: float = 1.0, prompt_length: int = 8,
                 seed: int = 0, batch_size: int = 512) -> TextSplit:
    """Sequence-level distillation's training data (Kim & Rush 2016): for every window of ``split``,
    the teacher continues its first ``prompt_length`` characters to a full window, sampling at
    ``temperature`` (0: greedy). The result has as many windows as ``split``, so a student
    trained on it with cross-entropy takes the same number of steps per epoch."""
    if not isinstance(split, TextSplit):
        raise ParameterTypeError(f"split must be a kdlab.text.TextSplit (ds.train of a text dataset), got "
                                 f"{type(split).__name__}.")
    context = split.x.shape[1]
    prompt_length = validate.integer("prompt_length", prompt_length, low=1)
    if prompt_length >= context:
        raise ParameterError(f"prompt_length={prompt_length} must be shorter than the windows ({context} characters).")
    device = next(teacher.parameters()).device
    gen = torch.Generator(device=device).manual_seed(validate.integer("seed", seed, low=0))
    rows = []
    for start in range(0, len(split), validate.integer("batch_size", batch_size, low=1)):
        prompt = split.x[start:start + batch_size, :prompt_length].to(device)
        rows.append(generate(teacher, prompt, context + 1 - prompt_length, temperature=temperature,
                             generator=gen).cpu())  # (b, context + 1)
    return with_windows(split, torch.cat(rows), name=f"teacher text (T={temperature:g})")


# --- on-policy distillation -----------------------------------------------------------------

class OnPolicy(Objective):
    r"""On-policy distillation (GKD, Agarwal et al. 2024): part of every step is spent on text the
    student wrote itself, scored character by character by the teacher.

    .. math:: L = (1 - \lambda)\, T^2 KL(p_t \| p_s)_{\text{real text}} + \lambda\, D(p_t, p_s)_{\text{student's text}}

    Every ``refresh_every`` steps the first ``prompt_length`` characters of ``n_sequences``
    windows of the batch prompt the student (no gradient, sampling at T = 1) to finish those
    windows, and the teacher reads that text once (no gradient). Every step the student reads
    it again, with gradient, and ``D`` (``divergence``: ``"forward"`` T²·KL(p_t‖p_s) or
    ``"reverse"`` T²·KL(p_s‖p_t)) is averaged over the positions that follow a character the
    student wrote. A student trained only on real text never sees its own mistakes in its
    context; here it learns what the teacher would say after them.

    Writing the text is the expensive part (one decoding step per character, and a teacher
    pass), so it is refreshed every few steps rather than every step: the text is then at most
    ``refresh_every - 1`` steps older than the student, nearly on-policy.

    Args:
        teacher: the trained teacher (its logits on real text are cached like Distillation's).
        student: the model being trained (it writes the text; it is not a submodule).
        temperature, mix: T, and λ, the weight of the student's own text.
        n_sequences, prompt_length: how many windows the student writes, after how many real characters.
        refresh_every: steps between two writings (1: every step, exactly on-policy).
        seed: the student's sampling draws from its own generator, seeded here.
    """

    def __init__(self, teacher: nn.Module | Teacher, student: nn.Module, *, temperature: float = 1.0,
                 mix: float = 0.5, n_sequences: int = 8, prompt_length: int = 8, refresh_every: int = 4,
                 divergence: str = "forward", seed: int = 0):
        super().__init__()
        self.teacher = as_teacher(teacher)
        if not isinstance(student, nn.Module) or not hasattr(student, "decode"):
            raise ParameterTypeError(f"student must be a language model of kdlab.seqmodels, got "
                                     f"{type(student).__name__}.")
        self._student = (student,)  # a tuple: not registered as a submodule of the objective
        self.temperature = validate.positive("temperature", temperature)
        self.mix = validate.probability("mix", mix)
        self.n_sequences = validate.integer("n_sequences", n_sequences, low=1)
        self.prompt_length = validate.integer("prompt_length", prompt_length, low=1)
        self.refresh_every = validate.integer("refresh_every", refresh_every, low=1)
        self.divergence = validate.choice("divergence", divergence, DIVERGENCES)
        self.seed = validate.integer("seed", seed, low=0)
        self._generator: torch.Generator | None = None
        self._amp = False
        self._steps = 0
        self._own: tuple[torch.Tensor, torch.Tensor] | None = None  # the student's text (n, L), the teacher's logits

    def prepare(self, split: Split, *, augment: bool, epochs: int, device: torch.device, amp: bool,
                num_classes: int) -> None:
        super().prepare(split, augment=augment, epochs=epochs, device=device, amp=amp, num_classes=num_classes)
        if self.prompt_length >= split.x.shape[1]:
            raise ParameterError(f"prompt_length={self.prompt_length} must be shorter than the windows "
                                 f"({split.x.shape[1]} characters).")
        self._generator = torch.Generator(device=device).manual_seed(self.seed)
        self._amp, self._steps, self._own = amp, 0, None

    def forward(self, student_logits: torch.Tensor, batch: Batch):
        student = self._student[0]
        real = losses.kd_loss(student_logits, self.teacher.logits(batch), self.temperature,
                              mask=scored_positions(student_logits, batch), check=False)
        if self._steps % self.refresh_every == 0:
            prompt = batch.x[: self.n_sequences, : self.prompt_length]
            own = generate(student, prompt, batch.x.shape[1] - self.prompt_length, generator=self._generator)  # (n, L)
            with torch.no_grad(), devices.autocast(own.device, self._amp):
                self._own = own, self.teacher.model(own).float()  # (n, L), (n, L, V)
        self._steps += 1
        own, teacher_own = self._own
        with devices.autocast(own.device, self._amp):
            own_logits = student(own).float()  # (n, L, V), with gradient
        written = torch.zeros(own.shape, dtype=torch.bool, device=own.device)
        written[:, self.prompt_length:] = True  # positions whose context holds a character the student wrote
        divergence = losses.kd_loss if self.divergence == "forward" else losses.reverse_kl_loss
        on_own = divergence(own_logits, teacher_own, self.temperature, mask=written, check=False)
        loss = (1.0 - self.mix) * real + self.mix * on_own
        return loss, {"kd": real.detach(), "kd_own_text": on_own.detach()}

    def describe(self) -> dict:
        return {"objective": "OnPolicy", "temperature": self.temperature, "mix": self.mix,
                "n_sequences": self.n_sequences, "prompt_length": self.prompt_length,
                "refresh_every": self.refresh_every, "divergence": self.divergence, "teacher_logits": self.teacher.mode}


# --- measures -------------------------------------------------------------------------------

def evaluate(model: nn.Module, split: TextSplit, *, teacher_logits: torch.Tensor | None = None,
             truth: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> dict:
    """A language model's measures on ``split``, in bits, averaged over every character that is not padding:

    * ``bpc``: bits per character, the cross-entropy of the real next characters, ``-log2 p_s(y)``;
    * ``entropy``: entropy of the model's next-character distribution, ``H(p_s)``; low values
      mean a peaked, mode-seeking model;
    * ``accuracy``: how often the most likely next character is the real one;
    * with ``teacher_logits`` ``(N, L, V)``: ``kl_to_teacher`` ``KL(p_t‖p_s)`` (what the forward KL
      minimises), ``reverse_kl_to_teacher`` ``KL(p_s‖p_t)``, and the teacher's ``teacher_entropy``;
    * with ``truth`` (probabilities ``(N, L, V)``, :func:`kdlab.text.truth`): ``kl_to_truth``
      ``KL(p_true‖p_s)``, how far the model is from the language itself.

    ``bpc``, ``accuracy``, ``characters`` and ``kl_to_teacher`` are :func:`kdlab.metrics.evaluate`'s
    ``nll``, ``accuracy``, ``n`` and ``kl_to_teacher`` in bits, so the two always agree; ``logits``
    (precomputed ``(N, L, V)``) skips the model's forward pass.
    """
    if logits is None:
        logits = inference.predict_logits(model, split)  # (N, L, V)
    kit = metrics.evaluate(model, split, logits=logits, teacher_logits=teacher_logits, device=logits.device)
    scored = (split.y != losses.IGNORE_INDEX).to(logits.device)
    log_p = logits[scored].log_softmax(-1)  # (n, V), one row per scored character
    out = {"bpc": kit["nll"] / LN2, "entropy": float(losses.entropy(log_p.exp()).mean()),
           "accuracy": kit["accuracy"], "characters": kit["n"]}
    if teacher_logits is not None:
        log_t = teacher_logits.to(logits.device)[scored].float().log_softmax(-1)
        out["kl_to_teacher"] = max(0.0, kit["kl_to_teacher"]) / LN2  # rounding can leave -1e-9 for equal models
        out["reverse_kl_to_teacher"] = float(losses.reverse_kl_loss(log_p, log_t, 1.0, check=False)) / LN2
        out["teacher_entropy"] = float(losses.entropy(log_t.exp()).mean())
    if truth is not None:
        p_true = truth.to(logits.device)[scored].float()
        kl = (p_true * (p_true.clamp_min(1e-30).log() - log_p)).sum(-1).mean()
        out["kl_to_truth"] = float(kl) / LN2
    return out


def distinct_ngrams(texts: Sequence[str], n: int = 4) -> float:
    """Distinct-n (Li et al. 2016): unique character n-grams over all n-grams of ``texts``, in [0, 1].
    Repetitive, mode-seeking text scores low; varied text high."""
    n = validate.integer("n", n, low=1)
    grams = [t[i:i + n] for t in texts for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")
