"""The search's report stage: the best-of-random baseline scores each subnet in one batched pass."""
from __future__ import annotations

import numpy as np
import torch

from strategies import report
from supernet.nn.head import SuperHead
from supernet.nn.ops import POOLINGS
from supernet.nn.space import get_space
from supernet.scoring.candidates import CandidateScorer, save_search_state
from supernet.train.frozen import EncoderCache


def _state(tmp_path, dev_rows=48, calib_rows=30):
    space = get_space("tiny")
    head = SuperHead(space, 32, 2)
    g = torch.Generator().manual_seed(0)

    def cache(rows):
        hidden, mask = torch.randn(rows, 5, 32, generator=g), torch.ones(rows, 5, dtype=torch.long)
        return EncoderCache.of({p: POOLINGS[p](hidden, mask, None) for p in space.pool}, hidden, mask)
    path = tmp_path / "search_state.pt"
    save_search_state(path, head, ("f1", "accuracy"), cache(dev_rows), np.arange(dev_rows) % 2, cache(calib_rows))
    return path


def test_random_subnets_are_scored_one_forward_each_over_all_selection_rows(tmp_path, monkeypatch):
    scorer = CandidateScorer.from_file(_state(tmp_path))
    batches: list[int] = []
    freeze = SuperHead.freeze

    def counted(self, choices):
        mlp = freeze(self, choices)
        mlp.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
        return mlp
    monkeypatch.setattr(SuperHead, "freeze", counted)
    scores = report.random_subnets(scorer, 12, seed=0)
    assert len(scores) == 12 and all(0.0 <= s <= 1.0 for s in scores)
    on_selection = [b for b in batches if b != 30]  # the rest re-estimate batch norms on the 30 calibration rows
    assert on_selection == [48] * 12  # one pass per subnet, every selection row in it: no per-row loop
