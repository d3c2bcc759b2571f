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
search scores candidates on (``supernet.scoring.candidates``), retraining and BO-HB trials
(``retrain``). What a cache holds is ``Needs`` (``supernet.nn.reading``): the last layer's poolings and
token states, every layer's poolings, a pair's texts encoded apart.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from supernet.core import distributed
from supernet.core.metrics import compute_metrics
from supernet.data.encoded import Encoded, pad_batch
from supernet.data.tasks import TaskSpec
from supernet.nn.encoder import encoder_outputs
from supernet.nn.reading import EncodeFn, Features, Needs, pooled_view
from supernet.train.loop import EpochBatches, Loop, Progress, make_optimizer, steps_per_epoch

BATCH = 128  # rows per encoder forward while caching, and per head forward in ``outputs``
PROGRESS_ROWS = 4096  # splits of at least this many rows show a progress bar while they are encoded


def apply_regime(encoder: nn.Module, freeze: bool) -> None:
    """The frozen-encoder regime, set in one place: the pretrained encoder gets no gradient, so its
    outputs on a row never change and callers cache them (``make_optimizer`` leaves it out too)."""
    if freeze:
        encoder.requires_grad_(False)


class EncoderCache:
    """One split's encoder outputs, computed once in eval mode without gradients, kept on the CPU: what
    ``Needs`` asked for, as ``Features`` of any rows."""

    def __init__(self, pooled: dict[str, torch.Tensor], tokens: torch.Tensor | None, lengths: np.ndarray,
                 layered: dict[str, torch.Tensor] | None = None, sides: tuple["EncoderCache", ...] | None = None):
        self.pooled = pooled          # pooling -> (N, H), rows in order
        self.tokens = tokens          # (sum of lengths, H): row i's states at offsets[i]:offsets[i]+lengths[i]
        self.lengths = lengths        # (N,) real tokens per row
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.layered = layered        # pooling -> (N, L+1, H): every layer's poolings (layer choices)
        self.sides = sides            # a pair's texts encoded apart: one cache each (siamese / cosine heads)

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def keeps_hidden(self) -> bool:
        return self.tokens is not None

    @classmethod
    @torch.no_grad()
    def build(cls, encode: EncodeFn | nn.Module, data: Encoded, pad_id: int, needs: Needs = Needs(),
              device: str | torch.device = "cpu", modules: tuple[nn.Module, ...] = ()) -> "EncoderCache":
        """Run ``encode`` (a HF encoder, or a function of a batch and ``all_layers``) over ``data`` in
        batches of consecutive rows; ``modules`` (default: the encoder given) are in eval mode meanwhile."""
        if isinstance(encode, nn.Module):
            modules, encode = modules or (encode,), (lambda batch, all_layers, enc=encode:
                                                     encoder_outputs(enc, batch, all_layers))
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            joint = _encode_rows(encode, data, pad_id, needs, device) if needs.joint else ({}, None, None)
            sides = None
            if needs.sides:
                if data.sides is None:
                    raise ValueError("siamese and cosine heads read two text columns; this split has one")
                apart = replace(needs, hidden=False)  # token blocks read the joint encoding only
                sides = tuple(cls.from_rows(_encode_rows(encode, part, pad_id, apart, device), part.lengths)
                              for part in data.sides)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return cls.from_rows(joint, data.lengths, sides)

    @classmethod
    def from_rows(cls, parts: tuple, lengths: np.ndarray, sides: tuple | None = None) -> "EncoderCache":
        pooled, tokens, layered = parts
        return cls(pooled, tokens, lengths, layered, sides)

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
        layered = {name: t[rows].to(device) for name, t in self.layered.items()} if self.layered else None
        sides = tuple(side.features(rows, device) for side in self.sides) if self.sides else None
        if self.tokens is None:
            return Features(pooled, layered=layered, sides=sides)
        lengths = torch.from_numpy(self.lengths[rows])
        width = int(lengths.max())
        positions = torch.arange(width)
        mask = (positions[None, :] < lengths[:, None]).long()                              # (B, T)
        index = torch.from_numpy(self.offsets[rows])[:, None] + positions[None, :] * mask   # pads read row start
        hidden = self.tokens[index] * mask[..., None]                                       # (B, T, H)
        return Features(pooled, hidden.to(device), mask.to(device), layered, sides)

    def subset(self, rows: np.ndarray) -> "EncoderCache":
        """The cache of ``rows`` only (e.g. the fit and selection rows of a training split's cache)."""
        rows = np.asarray(rows, np.int64)
        tokens = None
        if self.tokens is not None:
            tokens = torch.cat([self.tokens[o:o + n] for o, n in zip(self.offsets[rows], self.lengths[rows])])
        layered = {k: v[rows] for k, v in self.layered.items()} if self.layered else None
        sides = tuple(side.subset(rows) for side in self.sides) if self.sides else None
        return EncoderCache({k: v[rows] for k, v in self.pooled.items()}, tokens, self.lengths[rows], layered, sides)

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


@torch.no_grad()
def _encode_rows(encode: EncodeFn, data: Encoded, pad_id: int, needs: Needs, device) -> tuple:
    """(poolings (N, H), packed token states or None, every layer's poolings (N, L+1, H) or None) of
    one view of ``data``: ``encode`` over batches of consecutive rows.

    Each output is allocated once at its final size and filled batch by batch. Collecting per-batch
    chunks and concatenating them held twice the cache at the end, and a chunk that was a view (the
    [CLS] pooling is ``hidden[:, 0]``) kept its batch's whole hidden-state tensor alive: on SST-2's
    67,349 rows the process peaked at 8.3 GiB for a 1.7 GiB cache."""
    pooled: dict[str, torch.Tensor] = {}
    layered: dict[str, torch.Tensor] = {}
    tokens = None
    filled = 0  # token states written so far
    starts = range(0, len(data), BATCH)
    # a bar only where encoding takes a while (a full SST-2 is minutes on a CPU); smaller splits stay quiet
    for start in tqdm(starts, desc=f"encoding {len(data):,} rows", unit="batch", leave=False, dynamic_ncols=True,
                      disable=len(data) < PROGRESS_ROWS or not distributed.is_main()):
        rows = np.arange(start, min(start + BATCH, len(data)))
        batch = {k: v.to(device) for k, v in pad_batch(data, rows, pad_id).items()}
        f = pooled_view(encode(batch, needs.layers), batch["attention_mask"], needs, needs.hidden)
        for out, got in ((pooled, f.pooled), (layered, f.layered or {})):
            for name, value in got.items():
                if name not in out:
                    out[name] = torch.empty((len(data), *value.shape[1:]), dtype=torch.float32)
                out[name][rows[0]:rows[-1] + 1] = value  # a copy: no reference to the batch survives
        if needs.hidden:
            real = f.hidden[f.mask.bool()]  # real tokens, row by row
            if tokens is None:
                tokens = torch.empty((int(data.lengths.sum()), real.shape[-1]), dtype=torch.float32)
            tokens[filled:filled + len(real)] = real
            filled += len(real)
    if tokens is not None and filled != len(tokens):
        raise RuntimeError(f"the encoder's mask kept {filled} tokens; the rows' lengths sum to {len(tokens)}")
    return pooled, tokens, layered if needs.layers else None


def frozen_caches(encoder: nn.Module, splits: tuple[Encoded, ...], pad_id: int, needs: Needs,
                  device: str | torch.device = "cpu") -> tuple[EncoderCache, ...]:
    """A frozen pretrained encoder's outputs on each split (e.g. training and evaluation rows): what
    the heads to train read (``Needs``). The encoder is moved to ``device`` (the batches go there)."""
    return tuple(EncoderCache.build(encoder.to(device), split, pad_id, needs, device) for split in splits)


def supernet_cache(supernet: nn.Module, data: Encoded, pad_id: int, device: str | torch.device = "cpu",
                   choices: Mapping[str, Any] | None = None) -> EncoderCache:
    """A split's outputs of a supernet's encoder (in a backbone space: the encoder of ``choices``),
    holding what its space's heads read."""
    return EncoderCache.build(lambda batch, all_layers: supernet.encode(batch, choices, all_layers), data, pad_id,
                              supernet.space.needs(), device, modules=(supernet,))


def warm_up_heads(model: nn.Module, data: Encoded, pad_id: int, needs: Needs, cfg: Any, seed: int,
                  loss: Callable[[int, np.ndarray, Features], torch.Tensor], desc: str = "head warm-up"
                  ) -> dict[str, float]:
    """LP-FT's linear-probe stage: ``model``'s head(s) train ``cfg.head_warmup_epochs`` epochs on the
    frozen encoder's outputs over ``data`` (cached once), through the one loop, with the encoder left
    out of the optimizer; ``loss(step, rows, features)`` is a step's loss. Returns its wall and CPU seconds."""
    t0, cpu0 = time.time(), time.process_time()
    cache = EncoderCache.build(model.encoder, data, pad_id, needs, cfg.device)
    head_only = replace(cfg, freeze_encoder=True, head_warmup_epochs=0.0)
    total = max(1, math.ceil(cfg.head_warmup_epochs * steps_per_epoch(len(data), cfg.batch_size)))
    optimizer, scheduler = make_optimizer(model, head_only, total)
    batches = EpochBatches(data, cfg.batch_size, seed + 7)  # not the fine-tune's order: a stage of its own

    def step(s: int) -> torch.Tensor:
        rows = batches(s)
        with cfg.autocast():
            return loss(s, rows, cache.features(rows, cfg.device))
    Loop(model, optimizer, scheduler, total, cfg.grad_clip, desc).run(step, Progress())
    return {"seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0}


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
