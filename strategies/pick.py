"""Which head a search returns: never worse than the linear head (``--pick safe``, the default).

The supernet's inherited scores rank heads roughly, and least well among the best ones; on a small
selection split a head that leads by a few rows leads by luck. So:

- **Incumbents**: the linear heads of the space (one linear layer on the pooler's [CLS], and on the
  mean pooling) and, in a pair space, the cosine head; with a frozen encoder they are fitted to
  convergence (L-BFGS on the cached vectors, the L2 strength the scored rows prefer), not for the budget.
- **Re-ranking**: the supernet's top ``--rerank-k`` heads (by inherited score) and the incumbents are
  trained stand-alone on the selection protocol: the search's own fine-tuning budget on the fit rows,
  scored on the selection rows. The searched heads go through asynchronous successive halving, as
  BO-HB's trials do (rungs at 1, 3, 9, ... epochs; a head continues while it is in the top third of
  those that reached its rung); the incumbents run to the end.
- **Small selection splits** (under ``SMALL_SELECTION`` rows): K-fold cross-validation over all the
  training rows instead, every candidate to the end; each row is scored by the fold model that never
  saw it.
- **Under full fine-tuning** (``--rerank-on``, ``PickPlan.on``): by default, in a head space (not a
  backbone space, where each candidate has its own encoder), every candidate trains on the
  supernet's fine-tuned encoder, frozen, its outputs on the fit and selection rows computed once: the
  frozen path, seconds instead of one fine-tune per head (per fold). It ranks heads on one shared
  encoder, not on the encoder each would fine-tune for itself. That encoder trained on every fit row, so
  only the selection rows are scored, whatever their number. ``pretrained`` fine-tunes each head instead.
- **The rule**: the best re-ranked searched head is returned only if it beats the best incumbent on
  those rows by more than noise: the 2.5th percentile of a paired bootstrap of the metric difference
  (2,000 resamples of the rows, both heads' predictions on the same resample) is above 0. Otherwise
  the search returns the incumbent and says so in one line.

Why a paired bootstrap over rows: it needs no assumption on the metric (F1, MCC and Pearson are not
means of per-row scores, so a t-test over rows does not apply), it pairs the two heads on the same
rows (their errors are correlated; unpaired intervals would be far wider), and it costs seconds. It
measures the selection rows' sampling noise, not the training seed's; one stand-alone seed per head
keeps the re-ranking's cost near one retrain per head.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from supernet.core.metrics import compute_metrics
from supernet.data.encoded import Encoded
from supernet.data.splits import SMALL_SELECTION, TaskData
from supernet.nn.arch import Architecture
from supernet.nn.encoder import EncoderConfig
from supernet.nn.model import build_model
from supernet.nn.reading import pair_vector
from supernet.nn.space import SearchSpace
from supernet.train.finetune import fine_tune, split_outputs
from supernet.train.frozen import EncoderCache, frozen_caches
from supernet.train.loop import FineTuneConfig, steps_per_epoch
from supernet.train.probe import fit_path, standardise

BOOTSTRAP = 2000
SUPERNET_ENCODER = "the supernet's fine-tuned encoder"  # PickPlan.on under --rerank-on supernet
REDUCTION = 3  # successive halving keeps the top third at each rung (BO-HB's reduction factor)


class Pruned(Exception):
    """A searched head left behind at a successive-halving rung."""


@dataclass
class Standalone:
    """One candidate trained stand-alone on the selection protocol."""

    name: str
    arch: Architecture
    incumbent: bool
    score: float = float("nan")
    outputs: np.ndarray | None = None  # on the scored rows (None: pruned)
    pruned_at: int | None = None       # the epoch of the rung that stopped it

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "incumbent": self.incumbent, "score": self.score, "pruned_at_epoch": self.pruned_at,
                "choices": dict(self.arch.choices)}


def incumbents(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The heads a search must beat to be returned, as choices of ``space``."""
    base = space.reference()
    out = {}
    if "pooler" in space.pool:
        out["linear (pooler [CLS])"] = space.canonical({**base, "pool": "pooler"})
    if "mean" in space.pool:
        out["linear (mean pool)"] = space.canonical({**base, "pool": "mean"})
    if "cosine" in space.pair:
        out["cosine (mean pool)"] = space.canonical({**base, "pool": "mean", "pair": "cosine"})
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, labels: np.ndarray, metrics: tuple[str, ...],
                     n: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """metric(a) - metric(b) on the rows, and its 95 % interval over ``n`` paired resamples of them."""
    main = metrics[0]
    score = lambda out, rows: compute_metrics((main,), out[rows], labels[rows])[main]
    every = np.arange(len(labels))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        rows = rng.integers(0, len(labels), len(labels))
        d = score(a, rows) - score(b, rows)
        if math.isfinite(d):  # a resample of one class leaves MCC / Pearson undefined
            diffs.append(d)
    lo, hi = np.percentile(diffs, [2.5, 97.5]) if diffs else (float("nan"), float("nan"))
    return {"delta": score(a, every) - score(b, every), "ci95": [float(lo), float(hi)], "rows": len(labels),
            "resamples": len(diffs)}


def candidates(space: SearchSpace, top: list[Architecture], k: int, meta: dict[str, Any]) -> list[Standalone]:
    """The incumbents, then the supernet's top ``k`` distinct heads that are not incumbents."""
    out = [Standalone(name, Architecture(space.name, choices, **meta), True)
           for name, choices in incumbents(space).items()]
    keys, searched = {c.arch.key() for c in out}, 0
    for arch in top:
        if arch.key() not in keys and searched < k:
            keys.add(arch.key())
            searched += 1
            out.append(Standalone(f"searched #{searched}", arch, False))
    return out


@dataclass
class PickPlan:
    """What re-ranking trains with: the task's splits, the search's own fine-tuning budget and seed."""

    task: TaskData
    cfg: FineTuneConfig
    encoder: EncoderConfig
    seed: int
    folds: int = 5
    fit_cache: EncoderCache | None = None  # a frozen encoder's outputs on the fit rows, if computed already
    val_cache: EncoderCache | None = None  # ... and on the selection rows
    _pretrained: torch.nn.Module | None = None
    on: str | None = None  # set: the heads train on this (fine-tuned, frozen) encoder, the plan's caches hold its outputs

    def fresh_encoder(self) -> torch.nn.Module:
        """The pretrained encoder, read from disk once: shared when frozen (nothing changes it), else a copy."""
        if self._pretrained is None:
            self._pretrained = self.encoder.load()
        return self._pretrained if self.cfg.freeze_encoder else copy.deepcopy(self._pretrained)


def rerank(plan: PickPlan, cands: list[Standalone]) -> tuple[np.ndarray, str]:
    """Train every candidate stand-alone; (the labels of the rows they were scored on, what those are)."""
    t = plan.task
    if plan.on is not None:  # that encoder trained on every other training row: no k-fold on them
        _holdout(plan, cands)
        return t.val.labels, f"the selection split ({len(t.val)} rows), heads trained on {plan.on}, frozen"
    if len(t.val) >= SMALL_SELECTION:
        _holdout(plan, cands)
        return t.val.labels, f"the selection split ({len(t.val)} rows)"
    _kfold(plan, cands)
    return t.train.labels, f"{plan.folds}-fold cross-validation over the {len(t.train)} training rows"


def _train_scored(plan: PickPlan, cand: Standalone, train: Encoded, scored: Encoded, caches, on_eval=None,
                  eval_every: int | None = None) -> np.ndarray:
    t, cfg = plan.task, plan.cfg
    if cand.incumbent and caches is not None:  # frozen: the linear head fitted to convergence, not for a budget
        return _converged(cand, train, scored, caches, t.spec)
    torch.manual_seed(plan.seed)  # every candidate's head starts from the same seed
    model = build_model(cand.arch, plan.fresh_encoder(), t.spec.num_labels)
    fine_tune(model, t.spec, train, scored, t.pad_id, cfg, plan.seed, None, f"re-rank {cand.name}",
              eval_every=eval_every, on_eval=on_eval, caches=caches)
    return split_outputs(model, scored, t.pad_id, cfg.device, caches[1] if caches else None)


def _converged(cand: Standalone, train: Encoded, scored: Encoded, caches, spec) -> np.ndarray:
    """An incumbent (one linear layer, or a cosine's scale and bias) fitted by L-BFGS on the cached
    vector it reads, its L2 strength the one the scored rows like best: every doubt goes its way."""
    reads = cand.arch.search_space.reads(cand.arch.choices)
    vector = lambda c: (pair_vector(c.sides[0].pooled[reads["pool"]], c.sides[1].pooled[reads["pool"]], "cosine")
                        if reads["pair"] == "cosine" else c.pooled[reads["pool"]])
    x, x_scored = standardise(vector(caches[0]), vector(caches[1]))
    y = torch.from_numpy(np.asarray(train.labels))
    best = None
    for _, linear in fit_path(x, y, spec.num_labels):
        out = linear(x_scored).detach().numpy()
        score = compute_metrics(spec.metrics, out, scored.labels)[spec.main_metric]
        if best is None or score > best[0]:
            best = (score, out)
    return best[1]


def _needs(cands: list[Standalone]):
    needs = [c.arch.search_space.needs([c.arch.choices]) for c in cands]
    out = needs[0]
    for n in needs[1:]:
        out = out | n
    return out


def _holdout(plan: PickPlan, cands: list[Standalone]) -> None:
    t, cfg, main = plan.task, plan.cfg, plan.task.spec.main_metric
    caches = None
    if cfg.freeze_encoder:  # the fit rows' outputs as supernet training computed them (one encoder pass fewer)
        fit = plan.fit_cache or frozen_caches(plan.fresh_encoder(), (t.fit,), t.pad_id, _needs(cands), cfg.device)[0]
        val = plan.val_cache or frozen_caches(plan.fresh_encoder(), (t.val,), t.pad_id, _needs(cands), cfg.device)[0]
        caches = (fit, val)
    rung = steps_per_epoch(len(t.fit), cfg.batch_size)
    reached: dict[int, list[float]] = {}
    for c in cands:
        try:
            halving = None if c.incumbent else _halving(c, reached, rung, cfg.total_steps(len(t.fit)), main)
            c.outputs = _train_scored(plan, c, t.fit, t.val, caches, halving, rung)
            c.score = compute_metrics(t.spec.metrics, c.outputs, t.val.labels)[main]
        except Pruned:
            pass


def _halving(c: Standalone, reached: dict[int, list[float]], rung: int, total: int, main: str):
    """An ``on_eval`` stopping ``c`` at a rung (1, 3, 9, ... epochs) where it is out of the top third of
    the searched heads that reached it (asynchronous successive halving)."""
    rungs = {rung * REDUCTION ** i for i in range(32) if rung * REDUCTION ** i < total}

    def on_eval(step: int, scores: dict[str, float]) -> None:
        if step not in rungs:
            return
        seen = reached.setdefault(step, [])
        seen.append(scores[main])
        keep = max(1, len(seen) // REDUCTION)
        if len(seen) >= REDUCTION and scores[main] < sorted(seen, reverse=True)[keep - 1]:
            c.pruned_at = step // rung
            raise Pruned
    return on_eval


def _kfold(plan: PickPlan, cands: list[Standalone]) -> None:
    t, cfg = plan.task, plan.cfg
    n = len(t.train)
    folds = np.array_split(np.random.default_rng(plan.seed).permutation(n), plan.folds)
    cache = frozen_caches(plan.fresh_encoder(), (t.train,), t.pad_id, _needs(cands), cfg.device)[0] \
        if cfg.freeze_encoder else None
    for c in cands:
        out = None
        for fold in folds:
            rest = np.setdiff1d(np.arange(n), fold)
            caches = (cache.subset(rest), cache.subset(fold)) if cache is not None else None
            o = _train_scored(plan, c, t.train.subset(rest), t.train.subset(fold), caches)
            out = np.zeros((n, o.shape[1]), o.dtype) if out is None else out
            out[fold] = o
        c.outputs = out
        c.score = compute_metrics(t.spec.metrics, out, t.train.labels)[t.spec.main_metric]


def decide(cands: list[Standalone], labels: np.ndarray, metrics: tuple[str, ...], rows: str) -> tuple[dict, Standalone]:
    """The incumbent rule (module docstring): the decision record, and the head returned."""
    done = [c for c in cands if c.outputs is not None]
    incumbent = max((c for c in done if c.incumbent), key=lambda c: c.score, default=None)
    searched = max((c for c in done if not c.incumbent), key=lambda c: c.score, default=None)
    record = {"rule": "safe", "scored_on": rows, "standalone": [c.record() for c in cands]}
    if incumbent is None or searched is None:
        winner = searched or incumbent
        why = "the space holds no incumbent" if incumbent is None else \
            f"the best incumbent on {rows}; every head the search offered is an incumbent"
        return {**record, "returned": winner.name, "line": f"returned {winner.name}: {why}"}, winner
    test = paired_bootstrap(searched.outputs, incumbent.outputs, labels, metrics)
    kept = test["ci95"][0] > 0
    winner = searched if kept else incumbent
    diff = f"{100 * test['delta']:+.1f} [{100 * test['ci95'][0]:+.1f}, {100 * test['ci95'][1]:+.1f}] points"
    line = (f"returned the searched head ({searched.name}): {diff} over {incumbent.name} on {rows}" if kept else
            f"kept {incumbent.name}: best searched head ({searched.name}) {diff} on {rows}")
    return {**record, "returned": winner.name, "searched": searched.name, "incumbent": incumbent.name,
            "searched_kept": kept, "vs_incumbent": test, "line": line}, winner


def safe_pick(plan: PickPlan, space: SearchSpace, top: list[Architecture], k: int, meta: dict[str, Any]
              ) -> tuple[dict[str, Any], Architecture]:
    """Re-rank the top ``k`` against the incumbents and apply the rule; (decision with its cost, head)."""
    t0, cpu0 = time.time(), time.process_time()
    cands = candidates(space, top, k, meta)
    labels, rows = rerank(plan, cands)
    decision, winner = decide(cands, labels, plan.task.spec.metrics, rows)
    decision.update(seconds=time.time() - t0, cpu_seconds=time.process_time() - cpu0)
    return decision, replace(winner.arch, pick={k: decision[k] for k in ("rule", "returned", "line")})
