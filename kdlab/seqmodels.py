"""Character-level language models: a small decoder-only transformer and a GRU.

Both map token ids ``(B, L)`` (int64) to next-token logits ``(B, L, V)``: position ``t``
predicts token ``t + 1`` from tokens ``0..t`` only. They are built by name through
:func:`kdlab.models.create` (``"transformer"``, ``"gru"``) with ``num_classes=V`` (the
vocabulary size) and ``input_shape=(context,)`` (the longest sequence they read), like
every other model of the kit, so checkpoints, ``fit`` and the teacher cache treat them
as they treat image models.

For generation, each model also decodes incrementally: ``model.decode(x, state)`` takes
the next tokens ``(B, l)`` and the state left by the previous call (``None`` at the
start) and returns ``(logits (B, l, V), state)``. The transformer's state is a
:class:`KVCache` (each layer's keys and values so far, so a new token attends to the
past without recomputing it); the GRU's is its hidden state. :func:`kdlab.lm.generate`
samples with it; docs/BENCHMARKS.md (section 7) measures what the cache saves.

Attention is ``F.scaled_dot_product_attention``, which picks a fused kernel (flash
attention on recent CUDA GPUs in bf16, a fused CPU kernel otherwise).

References:
    A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (self-attention).
    A. Radford et al., "Language Models are Unsupervised Multitask Learners", 2019
    (GPT-2: pre-LayerNorm blocks, weight tying, the 0.02 initialisation).
    A. Karpathy, nanoGPT (the layout of this file).
    K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder", EMNLP 2014 (the GRU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import validate
from .errors import ParameterError


def _check_tokens(model: nn.Module, x: torch.Tensor) -> None:
    if x.dtype != torch.long or x.dim() != 2:
        raise ParameterError(f"{type(model).__name__} reads token ids of shape (batch, length) and dtype int64, got "
                             f"{x.dtype} {tuple(x.shape)}; load text with kdlab.data.load('pydoc').")


@dataclass
class KVCache:
    """Keys and values of every layer for the positions decoded so far.

    ``keys[i]`` and ``values[i]`` are ``(B, H, context, head_dim)``, allocated at the layer's
    first write in the dtype of its keys (bf16 under autocast); the first ``length``
    positions are filled. Decoding ``l`` new tokens writes their keys and values at
    ``length .. length + l`` and attends over ``0 .. length + l``.
    """

    context: int
    keys: list[torch.Tensor | None]
    values: list[torch.Tensor | None]
    length: int = 0

    @classmethod
    def empty(cls, n_layers: int, context: int) -> KVCache:
        return cls(context, [None] * n_layers, [None] * n_layers)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` ``(B, H, l, hd)`` after the cached positions; return all keys and values so far."""
        if self.keys[layer] is None:
            shape = (k.shape[0], k.shape[1], self.context, k.shape[3])
            self.keys[layer], self.values[layer] = k.new_zeros(shape), v.new_zeros(shape)
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]  # (B, H, end, hd)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, l, d = x.shape
        q, k, v = (t.view(b, l, self.n_heads, d // self.n_heads).transpose(1, 2)
                   for t in self.qkv(x).split(d, dim=2))  # each (B, H, l, hd)
        dropout = self.dropout if self.training else 0.0
        mask, causal = None, True
        if cache is not None:
            start = cache.length
            k, v = cache.write(layer, k, v)  # (B, H, start + l, hd)
            if start > 0:
                # is_causal aligns the mask to the top-left corner, which is wrong once the queries
                # start later than the keys; one new token sees everything, so no mask is needed.
                causal = False
                if l > 1:
                    seen = torch.arange(start + l, device=x.device)[None, :]
                    mask = seen <= (start + torch.arange(l, device=x.device))[:, None]  # (l, start+l)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, l, d))  # (B, l, D)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class TransformerLM(nn.Module):
    """A GPT-style decoder: token and position embeddings, ``n_layers`` pre-LN blocks, a
    final LayerNorm and an output layer that shares the token embedding's weights.

    Args:
        num_classes: the vocabulary size V.
        input_shape: ``(context,)``, the longest sequence the model reads (its position table).
        d_model, n_layers, n_heads: width, depth and attention heads (``d_model % n_heads == 0``).
        dropout: on attention weights and block outputs while training.
    """

    input_rank = 1  # input_shape is (context,): kdlab.models.create checks it

    def __init__(self, num_classes: int, input_shape: Sequence[int], d_model: int = 128, n_layers: int = 4,
                 n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        d_model, n_layers = validate.integer("d_model", d_model, low=1), validate.integer("n_layers", n_layers, low=1)
        n_heads = validate.integer("n_heads", n_heads, low=1)
        if d_model % n_heads:
            raise ParameterError(f"d_model={d_model} is not a multiple of n_heads={n_heads}; accepted: a multiple of "
                                 f"{n_heads}, as each head gets d_model / n_heads of the dimensions.")
        self.context, self.num_classes = int(input_shape[0]), num_classes
        self.n_layers, self.n_heads = n_layers, n_heads
        self.tok = nn.Embedding(num_classes, d_model)
        self.pos = nn.Embedding(self.context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes, bias=False)
        self.head.weight = self.tok.weight  # weight tying (GPT-2): one table for reading and writing tokens
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                # GPT-2: residual branches start small, so the sum over depth keeps its scale.
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _run(self, x: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        _check_tokens(self, x)
        if start + x.shape[1] > self.context:
            raise ParameterError(f"{type(self).__name__} reads at most context={self.context} tokens; got "
                                 f"{start + x.shape[1]} (positions {start} to {start + x.shape[1] - 1}).")
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        h = self.drop(self.tok(x) + self.pos(positions))  # (B, l, D)
        for i, block in enumerate(self.blocks):
            h = block(h, cache, i)
        return self.head(self.ln_f(h))  # (B, l, V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L) token ids -> (B, L, V) logits
        return self._run(x, 0, None)

    def decode(self, x: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Logits of the next tokens ``x`` ``(B, l)`` after the ones ``state`` has seen; the updated cache."""
        if state is None:
            state = KVCache.empty(self.n_layers, self.context)
        logits = self._run(x, state.length, state)
        state.length += x.shape[1]
        return logits, state


class GRULM(nn.Module):
    """A recurrent language model: token embedding, a GRU of ``n_layers`` layers, a linear output layer.

    Args:
        num_classes: the vocabulary size V.
        input_shape: ``(context,)``, the windows of the data it is built for (kept in ``kdlab_spec`` for
            checkpoints); a GRU reads, and :func:`kdlab.lm.generate` writes, sequences of any length.
        d_model: embedding width; hidden_size: the GRU's state size.
    """

    input_rank = 1

    def __init__(self, num_classes: int, input_shape: Sequence[int], d_model: int = 32, hidden_size: int = 128,
                 n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes  # no self.context: nothing limits the length a GRU reads
        self.tok = nn.Embedding(num_classes, d_model)
        self.rnn = nn.GRU(d_model, hidden_size, num_layers=n_layers, batch_first=True,
                          dropout=dropout if n_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L) token ids -> (B, L, V) logits
        return self.decode(x)[0]

    def decode(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the next tokens ``x`` ``(B, l)`` after the hidden state ``state``; the new state."""
        _check_tokens(self, x)
        out, state = self.rnn(self.tok(x), state)  # (B, l, hidden), (layers, B, hidden)
        return self.head(out), state
