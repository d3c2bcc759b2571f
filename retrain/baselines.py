"""Baselines that are not fine-tuned for a budget, in the frozen-encoder regime: a linear probe fitted to
convergence, and a sentence pair's cosine similarity.

- ``linear_probe``: mean pooling + one linear layer (the sentence-transformers convention), fitted by
  full-batch L-BFGS until its gradient vanishes, its L2 strength chosen on the selection split from a
  grid, then refitted on every training row; what a converged logistic (or ridge) regression on the
  embeddings gives. A searched head that only beats a linear head trained for a few epochs has not
  beaten the linear head (issue #30).
- ``cosine``: cos(u, v) of the two texts encoded apart, mean-pooled, with no trained parameter: the
  score for a regression task (STS-B: Pearson is blind to scale and offset), and for a binary task
  "positive above a threshold", the threshold chosen on the training rows.

Both are deterministic: every report seed gets the same score (a std of 0).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from supernet.core.metrics import compute_metrics
from supernet.data.splits import TaskData
from supernet.train.frozen import EncoderCache
from supernet.train.probe import select_and_refit

POOL = "mean"


def _metrics(task: TaskData, outputs: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    return compute_metrics(task.spec.metrics, outputs.detach().numpy(), labels)


def linear_probe(task: TaskData, caches: dict[str, EncoderCache]) -> dict[str, Any]:
    """The converged linear probe (module docstring): the L2 strength by the selection split, then a
    refit on every training row, reported on the dev split. ``caches``: fit, val, train and dev."""
    t0, cpu0 = time.time(), time.process_time()
    y = lambda labels: torch.from_numpy(np.asarray(labels))
    read = lambda split: (caches[split].pooled[POOL], y(getattr(task, split).labels))
    score = lambda out, labels: _metrics(task, out, labels.numpy())[task.spec.main_metric]
    head, best, selection = select_and_refit(read("fit"), read("val"), read("train"), task.spec.num_labels, score)
    return {"metrics": _metrics(task, head(caches["dev"].pooled[POOL]), task.dev.labels), "l2": best,
            "selection": {str(k): v for k, v in selection.items()}, "parameters": sum(p.numel() for p in
                                                                                       head.parameters()),
            "seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0}


def cosine(task: TaskData, caches: dict[str, EncoderCache]) -> dict[str, Any] | None:
    """The zero-parameter cosine of a pair task (None for one text column or more than two classes)."""
    train, dev = caches["train"], caches["dev"]
    if dev.sides is None or task.spec.num_labels > 2:
        return None
    t0, cpu0 = time.time(), time.process_time()
    cos = lambda c: F.cosine_similarity(c.sides[0].pooled[POOL], c.sides[1].pooled[POOL], dim=-1)
    out: dict[str, Any] = {"threshold": None}
    if task.spec.is_regression:
        outputs = cos(dev)[:, None]
    else:  # positive above a threshold chosen on the training rows (the report split is never read)
        train_cos, labels = cos(train), task.train.labels
        candidates = torch.quantile(train_cos, torch.linspace(0.01, 0.99, 99))
        score = lambda t: _metrics(task, _two_class(train_cos, t), labels)[task.spec.main_metric]
        out["threshold"] = float(max(candidates.tolist(), key=score))
        outputs = _two_class(cos(dev), out["threshold"])
    return {**out, "metrics": _metrics(task, outputs, task.dev.labels), "parameters": 0,
            "seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0}


def _two_class(cos: torch.Tensor, threshold: float) -> torch.Tensor:
    """Logits whose argmax is class 1 where the cosine is above ``threshold``."""
    return torch.stack([torch.zeros_like(cos), cos - threshold], -1)
