"""Scoring: heads on cached encoder outputs with inherited weights, and plain models on a split.

- ``CandidateScorer`` is what a search scores candidates with (below), on ``EncoderCache``s of the
  selection split (``supernet.train.frozen``: the one cache every stage uses).
- ``evaluate`` scores a plain (frozen or retrained) model on a split.

Candidates are scored with weights inherited from the trained supernet, on cached encoder outputs.

Head-only spaces: the search state file holds the trained super head, the dev set's pooled encoder
outputs (every pooling of the space) and a slice of training outputs for batch-norm
recalibration. Scoring a candidate = freeze its head (copied slices), recalibrate its batch norms,
run it on the cached dev features. No encoder forward: trial processes stay light.

Backbone spaces: the encoder output depends on the candidate, so the state also holds the whole
supernet and the dev / calibration token ids; the outputs of the last few encoders run are
cached, and candidates differing only in their head reuse them.

Every score carries the candidate's cost (``params``; ``latency_ms`` from the lookup table in a
backbone space) and, under a penalty, the ``objective`` the strategy maximises.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from supernet.core.files import atomic_torch_save
from supernet.core.metrics import compute_metrics
from supernet.data.encoded import pad_batch
from supernet.nn.head import SuperHead
from supernet.nn.space import get_space
from supernet.nn.supernet import HeadSupernet
from supernet.scoring.cost import Objective, latency_table, predicted_latency
from supernet.train.frozen import EncoderCache, supernet_cache

SEARCH_STATE = "search_state.pt"


@torch.no_grad()
def head_input(cache: EncoderCache, choices: Mapping[str, Any], head: SuperHead) -> torch.Tensor:
    """The vectors the classifier of ``choices`` reads, (N, W): a cached pooling of the last layer, or
    what the super head (in eval mode) reads with its inherited token block and scalar mix."""
    reads = head.space.reads(choices)
    if not reads["tokens"] and reads["layers"] == "last" and reads["pair"] == "joint":
        return cache.pooled[reads["pool"]]
    return cache.outputs(lambda f: head.vector(f, choices))


_CACHED_ENCODERS = 8  # encoder outputs kept per split in a backbone space (dev: rows x hidden x pools)


def save_search_state(path: Path, head: SuperHead, metrics: tuple[str, ...], dev: EncoderCache | None,
                      dev_labels: np.ndarray, calib: EncoderCache | None, costs: dict | None = None,
                      backbone: dict | None = None) -> None:
    """``costs``: {'encoder_params', 'latency_table', 'reference', 'objective'}; ``backbone`` (backbone
    spaces, whose ``dev`` / ``calib`` features are then None): {'encoder_config', 'supernet' (state
    dict), 'dev', 'calib' (token ids), 'pad_id'}."""
    state = {"space": head.space.name, "hidden_size": head.hidden_size, "num_labels": head.num_labels,
             "encoder_layers": head.encoder_layers,
             "head": {k: v.detach().cpu() for k, v in head.state_dict().items()}, "metrics": list(metrics),
             "dev": dev, "dev_labels": dev_labels, "calib": calib, "costs": costs,
             "backbone": backbone}
    atomic_torch_save(state, path)


def write_search_state(path: Path, supernet, metrics: tuple[str, ...], dev, calib, pad_id: int, device: str,
                       objective: Objective = Objective(), caches: tuple | None = None) -> None:
    """The search state of a trained supernet: cached features (head-only space) or the supernet
    itself (backbone space), the cost tables and the objective. ``caches``: the (dev, calib) caches
    when computed already (a frozen encoder's: supernet training cached the calibration rows)."""
    space = supernet.space
    linear = space.reference()  # full encoder, linear head
    encoder_params = supernet.encoder_parameters(linear)
    # the reference's parameters as any candidate's are counted (CandidateScorer.cost)
    reference = {"params": encoder_params + sum(p.numel() for p in supernet.head.freeze(linear).parameters())}
    table = None
    if space.has_backbone:
        sample = {k: v.to(device) for k, v in pad_batch(dev, np.arange(min(32, len(dev))), pad_id).items()}
        table = latency_table(supernet.encoder, sample)
        reference["latency_ms"] = predicted_latency(space, table, linear)
    costs = {"encoder_params": encoder_params, "latency_table": table, "reference": reference,
             "objective": asdict(objective)}
    if not space.has_backbone:
        dev_cache, calib_cache = caches or (supernet_cache(supernet, dev, pad_id, device),
                                            supernet_cache(supernet, calib, pad_id, device))
        save_search_state(path, supernet.head, metrics, dev_cache, dev.labels, calib_cache, costs)
        return
    backbone = {"encoder_config": supernet.encoder.config.to_dict(), "pad_id": pad_id, "dev": dev, "calib": calib,
                "supernet": {k: v.detach().cpu() for k, v in supernet.state_dict().items()}}
    save_search_state(path, supernet.head, metrics, None, dev.labels, None, costs, backbone)


def _rebuild_supernet(state: Mapping[str, Any]):
    """The trained supernet of a backbone space, from its config and weights (nothing downloaded)."""
    from transformers import AutoConfig, AutoModel
    config = dict(state["backbone"]["encoder_config"])
    encoder = AutoModel.from_config(AutoConfig.for_model(config.pop("model_type"), **config))
    supernet = HeadSupernet(encoder, get_space(state["space"]), state["num_labels"])
    supernet.load_state_dict(state["backbone"]["supernet"])
    return supernet.eval()


class CandidateScorer:
    """Loads a search state once, then scores any number of candidates."""

    def __init__(self, state: Mapping[str, Any]):
        self.space = get_space(state["space"])
        self.metrics = tuple(state["metrics"])
        self.head = SuperHead(self.space, state["hidden_size"], state["num_labels"], state.get("encoder_layers"))
        self.head.load_state_dict(state["head"])
        self.head.eval()
        self.dev, self.dev_labels, self.calib = state["dev"], np.asarray(state["dev_labels"]), state["calib"]
        self.costs = state.get("costs")
        self.objective = Objective(**self.costs["objective"]) if self.costs else Objective()
        self.backbone = state.get("backbone")
        self.supernet = None
        if self.backbone:
            self.supernet = _rebuild_supernet(state)
            self.head = self.supernet.head  # the same weights, loaded once
        self._cache: OrderedDict = OrderedDict()
        self.recalibrate = True  # per-candidate batch-norm statistics (off only to measure what they buy)

    @classmethod
    def from_file(cls, path: str | Path) -> "CandidateScorer":
        return cls(torch.load(path, map_location="cpu", weights_only=False))

    def features(self, choices: Mapping[str, Any], split: str) -> EncoderCache:
        """Encoder outputs of ``split`` ('dev' or 'calib') for the candidate's encoder."""
        if self.supernet is None:
            return self.dev if split == "dev" else self.calib
        key = (split, self.space.backbone_key(choices))
        if key not in self._cache:
            self._cache[key] = supernet_cache(self.supernet, self.backbone[split], self.backbone["pad_id"],
                                              choices=choices)
            if len(self._cache) > 2 * _CACHED_ENCODERS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def cost(self, choices: Mapping[str, Any], head: list[nn.Module | None] | None = None) -> dict[str, float]:
        """Parameters of the frozen model (and lookup-table latency in a backbone space); {} if unknown.
        ``head``: the candidate's frozen MLP and token block, when the caller already built them."""
        if not self.costs:
            return {}
        head = head if head is not None else [self.head.freeze(choices), self.head.freeze_tokens(choices),
                                              self.head.freeze_mix(choices)]
        head_params = sum(p.numel() for m in head if m is not None for p in m.parameters())
        encoder = self.supernet.encoder_parameters(choices) if self.supernet is not None else self.costs["encoder_params"]
        out = {"params": float(encoder + head_params)}
        if self.costs.get("latency_table"):
            out["latency_ms"] = predicted_latency(self.space, self.costs["latency_table"], choices)
        return out

    def objective_value(self, scores: Mapping[str, float]) -> float:
        """What the strategy maximises (the main metric unless a penalty is set)."""
        return self.objective(scores, self.main_metric, (self.costs or {}).get("reference", {}))

    @torch.no_grad()
    def _recalibrate(self, mlp: nn.Sequential, calib: torch.Tensor, batch_size: int = 64) -> None:
        """Batch-norm statistics in the supernet mix every sampled subnet: re-estimate them for this one."""
        norms = [m for m in mlp.modules() if isinstance(m, nn.BatchNorm1d)]
        if not norms:
            return
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
            bn.train()
        for start in range(0, len(calib) - 1, batch_size):
            chunk = calib[start:start + batch_size]
            if len(chunk) > 1:
                mlp(chunk)
        for bn in norms:
            bn.eval()

    @torch.no_grad()
    def _outputs(self, choices: Mapping[str, Any]) -> tuple[np.ndarray, list[nn.Module | None]]:
        """The candidate's outputs on the selection split, and its frozen classifier, token block and mix."""
        mlp = self.head.freeze(choices).eval()
        inputs = lambda split: head_input(self.features(choices, split), choices, self.head)
        if self.recalibrate and any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules()):
            self._recalibrate(mlp, inputs("calib"))
        return mlp(inputs("dev")).numpy(), [mlp, self.head.freeze_tokens(choices), self.head.freeze_mix(choices)]

    def predicted_class_share(self, choices: Mapping[str, Any]) -> float | None:
        """Share of the selection split given the candidate's most frequent predicted class: 1.0 is a
        constant (majority-class) predictor. None for regression."""
        outputs, _ = self._outputs(self.space.validate(choices))
        if outputs.ndim < 2 or outputs.shape[1] < 2:
            return None
        return float(np.bincount(outputs.argmax(1)).max() / len(outputs))

    def majority_scores(self) -> dict[str, float] | None:
        """The metrics of always predicting the selection split's most frequent label (None: regression)."""
        if not np.issubdtype(self.dev_labels.dtype, np.integer):
            return None
        n_classes = int(self.dev_labels.max()) + 1
        constant = np.zeros((len(self.dev_labels), max(n_classes, 2)), dtype=np.float32)
        constant[:, np.bincount(self.dev_labels).argmax()] = 1.0
        return compute_metrics(self.metrics, constant, self.dev_labels)

    def score(self, choices: Mapping[str, Any]) -> dict[str, float]:
        choices = self.space.validate(choices)
        outputs, modules = self._outputs(choices)
        scores = {**compute_metrics(self.metrics, outputs, self.dev_labels), **self.cost(choices, modules)}
        if self.objective.active:
            scores["objective"] = self.objective_value(scores)
        return scores

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


@functools.lru_cache(maxsize=4)
def cached_scorer(path: str) -> CandidateScorer:
    """One scorer per process and state file (the in-process engine scores thousands of candidates)."""
    return CandidateScorer.from_file(path)
