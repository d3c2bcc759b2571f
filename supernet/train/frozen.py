"""The frozen-encoder regime and the one cache of encoder outputs that every stage reads.

With ``--freeze-encoder`` only heads train, on encoder outputs computed once. This is how
sentence-embedding users often train a head (all-MiniLM-L6-v2 is a sentence-transformers model): the
encoder stays as pretrained, so each row's outputs never change, and computing them once makes
supernet training, retraining and every BO-HB trial cost seconds instead of fine-tunes.

- ``apply_regime`` is the one switch: the encoder gets no gradient (and ``make_optimizer`` no group).
- ``EncoderCache`` holds one split's encoder outputs: every pooling the heads may read (``(N, H)`` per
  pooling, in row order) and, for token blocks, the last hidden states of every real token, packed
  into one ``(tokens, H)`` tensor with per-row offsets (no padding is stored; a batch is padded to
  its own longest row when it is handed out). ``features(rows)`` serves training batches and
  ``outputs(fn)`` runs a head over the whole split in row order (scoring, evaluation).

Every stage builds its caches here: supernet training (frozen) and its probes, the search state a
search scores candidates on (``supernet.scoring.candidates``), retraining and BO-HB trials (``retrain``). What a
cache holds is ``CacheNeeds``: the place where a second text column (sentence pairs encoded apart)
or several encoder layers are added.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from supernet.core.metrics import compute_metrics
from supernet.data.encoded import Encoded, pad_batch
from supernet.data.tasks import TaskSpec
from supernet.nn.encoder import encoder_outputs
from supernet.nn.head import Features
from supernet.nn.ops import POOLINGS

# a batch -> (last hidden state (B, T, H), pooler output (B, H) or None)
EncodeFn = Callable[[Mapping[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor | None]]
BATCH = 128  # rows per encoder forward while caching, and per head forward in ``outputs``


def apply_regime(encoder: nn.Module, freeze: bool) -> None:
    """The frozen-encoder regime, set in one place: the pretrained encoder gets no gradient, so its
    outputs on a row never change and callers cache them (``make_optimizer`` leaves it out too)."""
    if freeze:
        encoder.requires_grad_(False)


@dataclass(frozen=True)
class CacheNeeds:
    """What the heads of a stage read from the encoder: which poolings, and whether the token states."""

    pools: tuple[str, ...] = tuple(POOLINGS)
    hidden: bool = False


class EncoderCache:
    """One split's encoder outputs, computed once in eval mode without gradients, kept on the CPU."""

    def __init__(self, pooled: dict[str, torch.Tensor], tokens: torch.Tensor | None, lengths: np.ndarray):
        self.pooled = pooled          # pooling -> (N, H), rows in order
        self.tokens = tokens          # (sum of lengths, H): row i's states at offsets[i]:offsets[i]+lengths[i]
        self.lengths = lengths        # (N,) real tokens per row
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def keeps_hidden(self) -> bool:
        return self.tokens is not None

    @classmethod
    @torch.no_grad()
    def build(cls, encode: EncodeFn | nn.Module, data: Encoded, pad_id: int, needs: CacheNeeds = CacheNeeds(),
              device: str | torch.device = "cpu", modules: tuple[nn.Module, ...] = ()) -> "EncoderCache":
        """Run ``encode`` (a HF encoder, or a function of a batch) over ``data`` in batches of
        consecutive rows; ``modules`` (default: the encoder given) are put in eval mode meanwhile."""
        if isinstance(encode, nn.Module):
            modules, encode = modules or (encode,), (lambda batch, enc=encode: encoder_outputs(enc, batch))
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        pooled: dict[str, list[torch.Tensor]] = {}
        states: list[torch.Tensor] = []
        try:
            for start in range(0, len(data), BATCH):
                rows = np.arange(start, min(start + BATCH, len(data)))
                batch = {k: v.to(device) for k, v in pad_batch(data, rows, pad_id).items()}
                hidden, pooler_output = encode(batch)
                mask = batch["attention_mask"]
                for name in needs.pools:
                    if name != "pooler" or pooler_output is not None:
                        pooled.setdefault(name, []).append(POOLINGS[name](hidden, mask, pooler_output).float().cpu())
                if needs.hidden:
                    states.append(hidden[mask.bool()].float().cpu())  # real tokens, row by row
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return cls({name: torch.cat(chunks) for name, chunks in pooled.items()},
                   torch.cat(states) if needs.hidden else None, data.lengths)

    @classmethod
    def of(cls, pooled: dict[str, torch.Tensor], hidden: torch.Tensor | None = None,
           mask: torch.Tensor | None = None) -> "EncoderCache":
        """A cache of outputs already computed: poolings (N, H) and, for token blocks, hidden states
        (N, T, H) with their padding mask (N, T)."""
        rows = len(next(iter(pooled.values())))
        lengths = mask.sum(1).numpy().astype(np.int64) if mask is not None else np.ones(rows, np.int64)
        return cls(dict(pooled), hidden[mask.bool()].float() if hidden is not None else None, lengths)

    def features(self, rows: np.ndarray, device: str | torch.device = "cpu") -> Features:
        """The ``Features`` of ``rows``: their poolings and (if kept) their hidden states, padded to the
        longest of them, gathered in one indexing op."""
        rows = np.asarray(rows)
        pooled = {name: t[rows].to(device) for name, t in self.pooled.items()}
        if self.tokens is None:
            return Features(pooled)
        lengths = torch.from_numpy(self.lengths[rows])
        width = int(lengths.max())
        positions = torch.arange(width)
        mask = (positions[None, :] < lengths[:, None]).long()                              # (B, T)
        index = torch.from_numpy(self.offsets[rows])[:, None] + positions[None, :] * mask   # pads read row start
        hidden = self.tokens[index] * mask[..., None]                                       # (B, T, H)
        return Features(pooled, hidden.to(device), mask.to(device))

    def batches(self, batch_size: int = BATCH, device: str | torch.device = "cpu"):
        """(rows, Features) over every row, in order."""
        for start in range(0, self.rows, batch_size):
            rows = np.arange(start, min(start + batch_size, self.rows))
            yield rows, self.features(rows, device)

    @torch.no_grad()
    def outputs(self, fn: Callable[[Features], torch.Tensor], device: str | torch.device = "cpu",
                batch_size: int = BATCH) -> torch.Tensor:
        """``fn`` over every row, in row order (CPU, float): a head's outputs on the whole split."""
        return torch.cat([fn(f).float().cpu() for _, f in self.batches(batch_size, device)])


def frozen_caches(encoder: nn.Module, splits: tuple[Encoded, ...], pad_id: int, hidden: bool,
                  device: str | torch.device = "cpu") -> tuple[EncoderCache, ...]:
    """A frozen pretrained encoder's outputs on each split (e.g. training and evaluation rows): every
    pooling a plain head may read, and the token states if a head runs a token block."""
    return tuple(EncoderCache.build(encoder, split, pad_id, CacheNeeds(hidden=hidden), device) for split in splits)


def needs_of(space: Any) -> CacheNeeds:
    """What the heads of ``space`` read: its poolings, and the token states if it searches token blocks."""
    return CacheNeeds(tuple(space.pool), bool(space.has_tokens))


def supernet_cache(supernet: nn.Module, data: Encoded, pad_id: int, device: str | torch.device = "cpu",
                   choices: Mapping[str, Any] | None = None) -> EncoderCache:
    """A split's outputs of a supernet's encoder (in a backbone space: the encoder of ``choices``),
    holding what its space's heads read."""
    return EncoderCache.build(lambda batch: supernet.encode(batch, choices), data, pad_id, needs_of(supernet.space),
                              device, modules=(supernet,))


def evaluate_cached(model: nn.Module, cache: EncoderCache, labels: np.ndarray, spec: TaskSpec) -> dict[str, float]:
    """The task's metrics of a plain model (``FrozenModel``) on a split's cached encoder outputs."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        outputs = cache.outputs(lambda f: model(features=f), device)
    finally:
        model.train(was_training)
    return compute_metrics(spec.metrics, outputs.numpy(), labels)


@torch.no_grad()
def score_heads(head: nn.Module, spec: TaskSpec, cache: EncoderCache, labels: np.ndarray,
                archs: list[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Official metrics of several heads of a super head on one cache (batch-norm statistics as they
    are: probes during supernet training)."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    try:
        return [compute_metrics(spec.metrics, cache.outputs(lambda f, a=a: head(f, a), device).numpy(), labels)
                for a in archs]
    finally:
        head.train(was_training)
