"""Score head candidates with weights inherited from the trained supernet, on cached encoder outputs.

The search state file holds the trained super head, the dev set's pooled encoder outputs
(every pooling of the space) and a slice of training outputs for batch-norm recalibration.
Scoring a candidate = freeze its head (copied slices), recalibrate its batch norms, run it on the
cached dev features. No encoder forward and no NNI import: trial processes stay light.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from supernet.arch import atomic_torch_save
from supernet.metrics import compute_metrics
from supernet.model import SuperHead
from supernet.space import get_space

SEARCH_STATE = "search_state.pt"


def save_search_state(path: Path, head: SuperHead, metrics: tuple[str, ...], dev: Mapping[str, torch.Tensor],
                      dev_labels: np.ndarray, calib: Mapping[str, torch.Tensor]) -> None:
    state = {"space": head.space.name, "hidden_size": head.hidden_size, "num_labels": head.num_labels,
             "head": {k: v.detach().cpu() for k, v in head.state_dict().items()}, "metrics": list(metrics),
             "dev": dict(dev), "dev_labels": dev_labels, "calib": dict(calib)}
    atomic_torch_save(state, path)


class CandidateScorer:
    """Loads a search state once, then scores any number of candidates."""

    def __init__(self, state: Mapping[str, Any]):
        self.space = get_space(state["space"])
        self.metrics = tuple(state["metrics"])
        self.head = SuperHead(self.space, state["hidden_size"], state["num_labels"])
        self.head.load_state_dict(state["head"])
        self.head.eval()
        self.dev, self.dev_labels, self.calib = state["dev"], np.asarray(state["dev_labels"]), state["calib"]

    @classmethod
    def from_file(cls, path: str | Path) -> "CandidateScorer":
        return cls(torch.load(path, map_location="cpu", weights_only=False))

    @torch.no_grad()
    def _recalibrate(self, head: nn.Sequential, pool: str, batch_size: int = 64) -> None:
        """Batch-norm statistics in the supernet mix every sampled subnet: re-estimate them for this one."""
        norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
        if not norms:
            return
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
            bn.train()
        feats = self.calib[pool]
        for start in range(0, len(feats) - 1, batch_size):
            chunk = feats[start:start + batch_size]
            if len(chunk) > 1:
                head(chunk)
        for bn in norms:
            bn.eval()

    @torch.no_grad()
    def score(self, choices: Mapping[str, Any]) -> dict[str, float]:
        choices = self.space.validate(choices)
        head = self.head.freeze(choices).eval()
        self._recalibrate(head, choices["pool"])
        outputs = head(self.dev[choices["pool"]]).numpy()
        return compute_metrics(self.metrics, outputs, self.dev_labels)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


@functools.lru_cache(maxsize=4)
def cached_scorer(path: str) -> CandidateScorer:
    """One scorer per process and state file (the in-process engine scores thousands of candidates)."""
    return CandidateScorer.from_file(path)
