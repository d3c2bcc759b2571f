"""What a candidate costs: parameters, latency, and the accuracy-vs-cost Pareto front.

- Parameters are exact: the frozen model's count, computed without building it.
- Latency during a search comes from a lookup table (FBNet / ProxylessNAS practice): each block
  kind (embeddings, attention, each conv kernel, FFN, pooler) is timed once on a dev batch, and a
  candidate's latency is the sum over its layers. Thousands of candidates then cost nothing to
  time, and a candidate's number does not depend on the machine's load at the moment it ran.
- Exported architectures are also timed for real: a whole dev-set pass of the frozen model.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from supernet.core.errors import InputError
from supernet.data.encoded import Encoded, batch_indices, pad_batch

PENALTIES = ("none", "params", "latency")
COST_KEYS = {"params": "params", "latency": "latency_ms"}  # penalty -> the score key it reads


@dataclass(frozen=True)
class Objective:
    """What a search maximises: the main metric minus ``weight`` x the candidate's cost relative to
    the reference model (the full encoder with a linear head). ``weight`` is thus the metric one
    would give up to remove the whole reference model's cost."""

    penalty: str = "none"
    weight: float = 0.0

    def __post_init__(self):
        if self.penalty not in PENALTIES:
            raise InputError(f"--penalty must be one of {list(PENALTIES)}, got {self.penalty!r}")
        if not self.weight >= 0:
            raise InputError(f"--penalty-weight must be >= 0, got {self.weight}")
        if self.weight > 0 and self.penalty == "none":
            raise InputError("--penalty-weight needs --penalty params or --penalty latency")
        if self.penalty != "none" and self.weight == 0:  # else the penalty is silently off
            raise InputError(f"--penalty {self.penalty} needs --penalty-weight > 0 (the metric points traded for the "
                             "reference model's whole cost, e.g. 0.05)")

    @property
    def active(self) -> bool:
        return self.penalty != "none" and self.weight > 0

    def __call__(self, scores: Mapping[str, float], metric: str, reference: Mapping[str, float]) -> float:
        if not self.active:
            return scores[metric]
        key = COST_KEYS[self.penalty]
        return scores[metric] - self.weight * scores[key] / reference[key]


def _median_ms(fn, repeats: int, device: torch.device | str = "cpu") -> float:
    # CUDA kernels run asynchronously: without a sync the clock would time their launch only
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    fn()  # warm-up: first calls allocate
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


@torch.no_grad()
def latency_table(backbone: nn.Module, batch: Mapping[str, torch.Tensor], repeats: int = 7) -> dict[str, float]:
    """Milliseconds per example of each block kind of a ``SuperBackbone`` on ``batch`` (eval mode).
    All layers have the same shape, so layer 0's blocks stand for every layer's."""
    from supernet.nn.space import MIXERS
    was_training = backbone.training
    backbone.eval()
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
    n, dev = ids.shape[0], ids.device
    x = backbone.embeddings(input_ids=ids, token_type_ids=types)
    layer = backbone.layers[0]
    table = {"embeddings": _median_ms(lambda: backbone.embeddings(input_ids=ids, token_type_ids=types), repeats, dev) / n,
             "ffn": _median_ms(lambda: layer.ffn(x), repeats, dev) / n,
             "pooler": _median_ms(lambda: backbone.pooler(x), repeats, dev) / n if backbone.pooler is not None else 0.0}
    for mixer in backbone.space.mixer:
        kernel = MIXERS[mixer]
        run = (lambda: layer.attention(x, mask)) if kernel is None else (lambda k=kernel: layer.conv(x, mask, k))
        table[mixer] = _median_ms(run, repeats, dev) / n
    backbone.train(was_training)
    return table


def predicted_latency(space, table: Mapping[str, float], choices: Mapping[str, Any]) -> float:
    """Milliseconds per example of the encoder of ``choices`` from a ``latency_table``."""
    from supernet.nn.space import backbone_label
    full = space.backbone_choices(choices)
    total = table["embeddings"] + table["pooler"]
    for j in range(space.encoder_layers):
        total += table[full[backbone_label("mixer", j)]]
        total += table["ffn"] if full[backbone_label("ffn", j)] == "keep" else 0.0
    return total


LATENCY_ROWS = 64  # rows a latency measurement runs over: a sample (3 passes, the median), not the split


@torch.no_grad()
def dev_latency_ms(model: nn.Module, data: Encoded, pad_id: int, device: str = "cpu", batch_size: int = 32,
                   repeats: int = 3) -> float:
    """Measured milliseconds per example of a plain model over the split's first ``LATENCY_ROWS``
    rows (median of ``repeats`` passes)."""
    data = data.head(LATENCY_ROWS)
    was_training = model.training
    model.eval()
    sides = bool(getattr(model, "needs", None) and model.needs.sides)  # a siamese head encodes both texts
    batches = [{k: v.to(device) for k, v in pad_batch(data, idx, pad_id, sides).items() if k != "labels"}
               for idx in batch_indices(data, batch_size, shuffle=False, bucket=False)]

    def one_pass():
        for b in batches:
            model(**b)
    ms = _median_ms(one_pass, repeats, device) / len(data)
    model.train(was_training)
    return ms


def model_costs(model: nn.Module, data: Encoded, pad_id: int, device: str = "cpu") -> dict[str, float]:
    """What a plain model costs for real: its parameters and measured dev latency (ms / example)."""
    return {"params": sum(p.numel() for p in model.parameters()),
            "dev_latency_ms": dev_latency_ms(model, data, pad_id, device)}


def pareto_front(points: list[dict[str, Any]], cost: str, metric: str) -> list[dict[str, Any]]:
    """The points no other point beats on both (lower ``cost``, higher ``metric``), by increasing cost."""
    front, best = [], -np.inf
    for p in sorted(points, key=lambda p: (p[cost], -p[metric])):
        if p[metric] > best:
            front.append(p)
            best = p[metric]
    return front


def plot_pareto(points: list[dict[str, Any]], metric: str, path: Path, reference: dict[str, Any] | None = None) -> None:
    """Metric vs parameters (and vs latency when known): every candidate, the front, the reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    axes_keys = [k for k in ("params", "latency_ms") if all(k in p for p in points)]
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(6.5 * len(axes_keys), 4.5), squeeze=False)
    labels = {"params": "parameters (millions)", "latency_ms": "latency (ms / example, lookup table)"}
    scale = {"params": 1e-6, "latency_ms": 1.0}
    for ax, key in zip(axes[0], axes_keys):
        xs = [p[key] * scale[key] for p in points]
        ax.scatter(xs, [p[metric] for p in points], s=12, alpha=0.45, color="C0", label="candidate")
        front = pareto_front(points, key, metric)
        ax.step([p[key] * scale[key] for p in front], [p[metric] for p in front], where="post", color="C1", lw=2,
                marker="o", ms=4, label="Pareto front")
        if reference and key in reference:
            ax.scatter([reference[key] * scale[key]], [reference[metric]], marker="*", s=180, color="C3", zorder=5,
                       label="full encoder + linear head")
        ax.set_xlabel(labels[key])
        ax.set_ylabel(f"dev {metric} (inherited weights)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)