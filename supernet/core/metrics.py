"""Official GLUE metrics in plain numpy (no hub download as `evaluate` would need)."""
from __future__ import annotations

from typing import Callable

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((pred == gold).mean())


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    tp = float(((pred == 1) & (gold == 1)).sum())
    fp = float(((pred == 1) & (gold != 1)).sum())
    fn = float(((pred != 1) & (gold == 1)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def macro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    scores = []
    for c in np.unique(gold):
        tp = float(((pred == c) & (gold == c)).sum())
        denom = float((pred == c).sum() + (gold == c).sum())
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores))


def matthews_corr(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation for binary labels (CoLA); 0 when undefined, as sklearn does."""
    tp = float(((pred == 1) & (gold == 1)).sum())
    tn = float(((pred == 0) & (gold == 0)).sum())
    fp = float(((pred == 1) & (gold == 0)).sum())
    fn = float(((pred == 0) & (gold == 1)).sum())
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else float((tp * tn - fp * fn) / denom)


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    pred, gold = np.asarray(pred, np.float64), np.asarray(gold, np.float64)
    if pred.std() == 0 or gold.std() == 0:
        return 0.0
    return float(np.corrcoef(pred, gold)[0, 1])


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (scipy.stats.rankdata 'average')."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, first, counts = np.unique(sorted_x, return_index=True, return_counts=True)
    for start, n in zip(first, counts):
        if n > 1:
            ranks[order[start:start + n]] = start + (n + 1) / 2
    return ranks


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return pearson(_rank(np.asarray(pred, np.float64)), _rank(np.asarray(gold, np.float64)))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy, "f1": f1, "macro_f1": macro_f1,
    "matthews_corr": matthews_corr, "pearson": pearson, "spearman": spearman,
}


def compute_metrics(names: tuple[str, ...], outputs: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Score model outputs: logits (N, C) are arg-maxed, a regression output (N,) or (N, 1) is used as is."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        pred = outputs.argmax(-1)
    else:
        pred = outputs.reshape(-1)
    return {name: METRICS[name](pred, np.asarray(gold)) for name in names}