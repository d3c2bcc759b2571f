"""A task's rows in their three roles: ``fit`` + ``val`` (carved from train, stratified, fixed seed)
for searching and selecting, ``train`` for retraining, ``dev`` for the final report only."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from supernet.core.errors import InputError
from supernet.data.encoded import Encoded, encode
from supernet.data.sources import TRAIN, DataConfig, SplitWarning, _extra_split, load_splits
from supernet.data.tasks import TaskSpec

VAL_SEED = 0  # the selection split is the same whatever the run's seeds


@dataclass(frozen=True)
class TaskData:
    """A task's splits, tokenised, in their three roles: ``fit`` + ``val`` (= ``train``) for
    searching and selecting, ``train`` for retraining what was selected, ``dev`` (the official dev
    set, or ``--test-file``) for the final report only."""

    spec: TaskSpec
    train: Encoded
    fit: Encoded
    val: Encoded
    dev: Encoded
    pad_id: int
    # where fit and val lie in train (None: the selection split is a --val-file of its own)
    fit_rows: np.ndarray | None = None
    val_rows: np.ndarray | None = None


def carve_validation(labels: np.ndarray, fraction: float, regression: bool, seed: int = VAL_SEED
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, val rows) of a training split: ``fraction`` of each class (of each decile of the
    score, for regression) goes to validation, by a fixed seed. Sorted, disjoint, covering all rows."""
    rng = np.random.default_rng(seed)
    if regression:
        edges = np.quantile(labels, np.linspace(0, 1, 11)[1:-1])
        groups = np.searchsorted(edges, labels, side="right")
    else:
        groups = labels
    values, counts = np.unique(groups, return_counts=True)
    total = max(1, int(round(fraction * len(labels))))
    # each group's share, whole rows by the largest remainders, so that the total is ``total``
    quota = fraction * counts * total / max(fraction * len(labels), 1e-12)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[:total - take.sum()]] += 1
    val = np.sort(np.concatenate([rng.permutation(np.flatnonzero(groups == g))[:k] for g, k in zip(values, take)]))
    if len(val) == 0 or len(val) == len(labels):
        raise InputError(f"--val-fraction {fraction} of {len(labels)} training rows leaves no validation or no "
                         "training rows; give more rows or another --val-fraction")
    return np.setdiff1d(np.arange(len(labels)), val), val


SMALL_SELECTION = 200  # rows; below it one row moves a selection score by more than half a point


class SmallSelectionWarning(UserWarning):
    """The selection split is too small to tell good heads apart."""


def warn_small_selection(rows: int) -> None:
    """Say so when the selection split is small: a search picks the best of many heads on it, so
    its best score there mostly measures luck (measured: on 50 CoLA rows the searched heads scored
    MCC 0.50-0.56 and retrained to 0.00 on dev; bench/results/compare-cola-small-frozen)."""
    if rows < SMALL_SELECTION:
        warnings.warn(f"the selection split has only {rows} rows (one row is {100 / rows:.1f} % of it): "
                      "a search's best score on it will overstate the head it picks; give more training rows, a "
                      "larger --val-fraction or a --val-file", SmallSelectionWarning, stacklevel=3)


def load_task(cfg: DataConfig, tokenizer) -> TaskData:
    """Load, check and tokenise ``cfg``'s splits in their three roles (see ``TaskData``)."""
    spec, splits = load_splits(cfg)
    dev_split = spec.dev_splits[0] if cfg.train_file is None else "validation"
    tok = lambda split: encode(split, tokenizer, cfg.max_length, cfg.cache_dir)
    train = tok(splits[TRAIN])
    dev = tok(_extra_split(cfg.test_file, spec, cfg).head(cfg.max_eval_samples) if cfg.test_file
              else splits[dev_split])
    rows = (None, None)
    if cfg.val_file:
        fit, val = train, tok(_extra_split(cfg.val_file, spec, cfg))
    else:
        rows = carve_validation(train.labels, cfg.val_fraction, spec.is_regression)
        fit, val = train.subset(rows[0]), train.subset(rows[1])
    task = TaskData(spec, train, fit, val, dev, tokenizer.pad_token_id or 0, *rows)
    warn_small_selection(len(val))
    check_roles(task, cfg)
    return task


def _shared(a: Encoded, b: Encoded) -> int:
    """Rows of ``b`` whose token ids (and so texts) are also a row of ``a``."""
    seen = {x.tobytes() for x in a.input_ids}
    return sum(x.tobytes() in seen for x in b.input_ids)


def check_roles(task: TaskData, cfg: DataConfig) -> None:
    """Warn where a split cannot play its role: a selection or report file of the user's that holds the
    rows of another split (over a tenth of them), or a report or selection split of one class."""
    pairs = []
    if cfg.val_file:
        pairs += [("--val-file", task.val, "the report split", task.dev),
                  ("--val-file", task.val, "the training rows", task.fit)]
    if cfg.test_file:
        pairs.append(("--test-file", task.dev, "the training rows", task.train))
    for name, split, other_name, other in pairs:
        n = _shared(other, split)
        if n > 0.1 * len(split):
            warnings.warn(f"{name} shares {n} of its {len(split)} rows with {other_name}: a score on it is not a "
                          "held-out score", SplitWarning, stacklevel=3)
    if not task.spec.is_regression:
        for role, split in (("report", task.dev), ("selection", task.val)):
            if len(np.unique(split.labels)) < 2:
                label = int(split.labels[0])
                name = task.spec.label_names[label] if task.spec.label_names else label
                warnings.warn(f"every row of the {role} split has the label {name!r}: its metrics cannot tell a head "
                              "from the constant answer", SplitWarning, stacklevel=3)
