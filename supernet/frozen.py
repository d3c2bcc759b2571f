"""The frozen-encoder regime (``--freeze-encoder``): only heads train, on encoder outputs computed once.

This is how sentence-embedding users often train a head (all-MiniLM-L6-v2 is a sentence-transformers
model): the encoder stays as pretrained, so each row's outputs never change, and computing them once
makes supernet training, retraining and every BO-HB trial cost seconds instead of fine-tunes.
``EncoderCache`` keeps, per row, the poolings of the encoder's output and (for token blocks) its
last hidden states, and hands out ``Features`` for any batch of rows.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import Encoded, pad_batch
from .model import Features, encoder_outputs
from .ops import POOLINGS


class EncoderCache:
    """Encoder outputs of every row of a split (eval mode, computed once, kept on the CPU)."""

    def __init__(self, encoder: nn.Module, data: Encoded, pad_id: int, keep_hidden: bool, device: str = "cpu",
                 batch_size: int = 128):
        self.keep_hidden, self.rows = keep_hidden, len(data)
        pooled: dict[str, list[torch.Tensor]] = {}
        self.hidden: list[torch.Tensor] = []  # per row: (T_i, H), its real tokens only
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                batch = {k: v.to(device) for k, v in pad_batch(data, np.arange(start, min(start + batch_size, len(data))),
                                                                pad_id).items()}
                hidden, pooler_output = encoder_outputs(encoder, batch)
                mask = batch["attention_mask"]
                for name, pool in POOLINGS.items():
                    if name != "pooler" or pooler_output is not None:
                        pooled.setdefault(name, []).append(pool(hidden, mask, pooler_output).float().cpu())
                if keep_hidden:
                    lengths = mask.sum(1).tolist()
                    self.hidden += [h[:n].float().cpu() for h, n in zip(hidden, lengths)]
        encoder.train(was_training)
        self.pooled = {name: torch.cat(chunks) for name, chunks in pooled.items()}

    def features(self, rows: np.ndarray, device: str | torch.device = "cpu") -> Features:
        """The ``Features`` of rows ``rows`` (hidden states padded to the longest of them)."""
        rows = np.asarray(rows)
        pooled = {name: t[rows].to(device) for name, t in self.pooled.items()}
        if not self.keep_hidden:
            return Features(pooled)
        seqs = [self.hidden[i] for i in rows]
        width = max(len(s) for s in seqs)
        hidden = torch.zeros(len(rows), width, seqs[0].shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            hidden[i, :len(s)], mask[i, :len(s)] = s, 1
        return Features(pooled, hidden.to(device), mask.to(device))

    def batches(self, batch_size: int = 128, device: str | torch.device = "cpu"):
        """(rows, Features) over every row, in order."""
        for start in range(0, self.rows, batch_size):
            rows = np.arange(start, min(start + batch_size, self.rows))
            yield rows, self.features(rows, device)
