"""Where a task's splits come from, tried in this order:
1. ``--train-file/--dev-file``: any CSV, TSV or JSONL with named text and label columns;
2. ``$GLUE_DIR/<TASK>/{train,dev}.tsv`` (or ``--glue-dir``) in the original GLUE layout;
3. ``datasets.load_dataset("glue", task)`` from the Hugging Face Hub."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supernet.core.config import Config, arg
from supernet.core.errors import InputError, MissingInput
from supernet.data.readers import TextSplit, infer_labels, read_glue_tsv, read_records, read_table, require_columns
from supernet.data.tasks import TaskSpec, custom_task, get_task

TRAIN = "train"


@dataclass(frozen=True)
class DataConfig(Config):
    """Where the data comes from and how it is cut. Validated on construction."""

    task: str = arg("mrpc", "GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli)")
    glue_dir: str | None = arg(None, "folder with <TASK>/{train,dev}.tsv (default: $GLUE_DIR; else the Hugging "
                                     "Face Hub)")
    train_file: str | None = arg(None, "your own CSV/TSV/JSONL training file")
    dev_file: str | None = arg(None, "your own CSV/TSV/JSONL dev file")
    text_columns: tuple[str, ...] = arg((), "comma-separated text column(s) of --train-file data")
    label_column: str = arg("label", "label column of --train-file data")
    num_labels: int | None = arg(None, "classes of --train-file data (1 = regression; default: inferred)")
    max_length: int = arg(128, "tokens per example")
    max_train_samples: int | None = arg(None, "use only the first N training rows")
    max_eval_samples: int | None = arg(None, "use only the first N dev rows")
    val_fraction: float = arg(0.1, "share of the training rows held out, stratified with a fixed seed, as the "
                                   "selection split: searches and BO-HB trials score on it; the dev set is kept for "
                                   "the final report")
    val_file: str | None = arg(None, "a selection split of your own (CSV/TSV/JSONL) instead of carving one from train")
    test_file: str | None = arg(None, "report on this file instead of the dev split (same columns as the training "
                                      "data, or a GLUE TSV of the task's layout)")

    def __post_init__(self):
        if self.dev_file is not None and self.train_file is None:
            raise InputError("--dev-file is the report split of your own --train-file data: give --train-file too")
        if self.train_file is not None and self.dev_file is None and self.test_file is None:
            raise InputError("--train-file needs a split to report on: give --dev-file (or --test-file)")
        for name in ("glue_dir", "train_file", "dev_file", "val_file", "test_file"):
            if getattr(self, name):  # "--train-file=~/x.csv" reaches us unexpanded (the shell only expands ~ alone)
                object.__setattr__(self, name, os.path.expanduser(getattr(self, name)))
        if len(self.text_columns) > 2:
            raise InputError(f"--text-columns names {len(self.text_columns)} columns {list(self.text_columns)}; "
                             "a task reads one text or a pair")
        if self.label_column in self.text_columns:
            raise InputError(f"--label-column {self.label_column!r} is also a --text-columns column: the model would "
                             "read its own label")
        if self.train_file is None:
            get_task(self.task)  # raises for an unknown task
        elif not self.text_columns:
            raise InputError("--text-columns is required with --train-file (e.g. --text-columns sentence)")
        if not 8 <= self.max_length <= 4096:
            raise InputError(f"--max-length must be in [8, 4096], got {self.max_length}")
        for flag, value in (("--max-train-samples", self.max_train_samples),
                            ("--max-eval-samples", self.max_eval_samples)):
            if value is not None and value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}")
        if not 0.0 < self.val_fraction <= 0.5:
            raise InputError(f"--val-fraction must be in (0, 0.5], got {self.val_fraction}")

    @property
    def resolved_glue_dir(self) -> str | None:
        return self.glue_dir or os.environ.get("GLUE_DIR") or None

    @property
    def cache_dir(self) -> str:
        """Tokenised splits are cached here (a machine setting, not part of a run's config)."""
        return os.environ.get("HEADNAS_CACHE", str(Path.home() / ".cache" / "bert-head-nas"))


def load_hub(spec: TaskSpec) -> dict[str, TextSplit]:
    """GLUE from the Hugging Face Hub (needs internet)."""
    try:
        import datasets
        ds = datasets.load_dataset("glue", spec.name)
    except Exception as e:  # the hub raises many types (ConnectionError, OSError, HfHubHTTPError...)
        raise InputError(
            f"could not load GLUE/{spec.name} from the Hugging Face Hub ({type(e).__name__}); "
            f"offline, set GLUE_DIR to a folder holding {spec.glue_dir}/train.tsv and dev.tsv, "
            "or pass --train-file/--dev-file") from None
    out = {}
    for split in (TRAIN, *spec.dev_splits):
        d = ds[split]
        texts = tuple(tuple(d[c]) for c in spec.text_columns)
        dtype = np.float32 if spec.is_regression else np.int64
        out[split] = TextSplit(texts, np.asarray(d["label"], dtype))
    return out


def load_splits(cfg: DataConfig) -> tuple[TaskSpec, dict[str, TextSplit]]:
    """Load train and dev split(s) of ``cfg.task`` from the first source that is configured."""
    if cfg.train_file is not None:
        train_path, dev_path = Path(cfg.train_file), Path(cfg.dev_file) if cfg.dev_file else None
        records = read_records(train_path)
        if records:
            require_columns(records, (*cfg.text_columns, cfg.label_column), train_path)
        num_labels, names = infer_labels(records, train_path, cfg.label_column, cfg.num_labels)
        spec = custom_task(num_labels, cfg.text_columns, cfg.label_column, names)
        splits = {TRAIN: read_table(train_path, spec, records)}
        if dev_path is not None:  # without one, --test-file is the report split (load_task)
            splits["validation"] = read_table(dev_path, spec)
    elif cfg.resolved_glue_dir is not None:
        spec = get_task(cfg.task)
        root = Path(cfg.resolved_glue_dir) / spec.glue_dir
        if not root.is_dir():
            raise MissingInput(f"no {spec.glue_dir}/ folder in GLUE_DIR={cfg.resolved_glue_dir}")
        splits = {TRAIN: read_glue_tsv(root / "train.tsv", spec)}
        for split, fname in zip(spec.dev_splits, spec.tsv_dev_files):
            splits[split] = read_glue_tsv(root / fname, spec)
    else:
        spec = get_task(cfg.task)
        splits = load_hub(spec)
    for name, split in splits.items():
        if len(split) == 0:
            raise InputError(f"the {name} split of {spec.name} is empty")
    cut = {name: s.head(cfg.max_train_samples if name == TRAIN else cfg.max_eval_samples) for name, s in splits.items()}
    if not spec.is_regression:
        warn_missing_classes(splits[TRAIN], cut[TRAIN], spec.num_labels)
    return spec, cut


class SplitWarning(UserWarning):
    """The splits run, but a number computed on them may not mean what it seems to."""


def warn_missing_classes(full: TextSplit, head: TextSplit, num_labels: int) -> None:
    """``--max-train-samples N`` keeps the first N rows: on a file sorted by label they hold a few
    classes only (Banking77's first 500 rows hold 4 of its 77), and the run says nothing of the rest."""
    have, exist = len(np.unique(head.labels)), len(np.unique(full.labels))
    if have < exist:
        warnings.warn(f"the first {len(head)} training rows (--max-train-samples) hold {have} of the {exist} classes "
                      "in the file (is it sorted by label?); shuffle the file first", SplitWarning, stacklevel=3)


def _extra_split(path: str, spec: TaskSpec, cfg: DataConfig) -> TextSplit:
    """A --val-file / --test-file: a user table, or a GLUE TSV of the task's layout."""
    if cfg.train_file is None and Path(path).suffix.lower() == ".tsv":
        return read_glue_tsv(Path(path), spec)
    return read_table(Path(path), spec)
