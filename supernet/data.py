"""Three data sources behind one interface, tokenised once and cached, batched with dynamic padding.

Sources, tried in this order:
1. ``--train-file/--dev-file``: any CSV, TSV or JSONL with named text and label columns;
2. ``$GLUE_DIR/<TASK>/{train,dev}.tsv`` (or ``--glue-dir``) in the original GLUE layout;
3. ``datasets.load_dataset("glue", task)`` from the Hugging Face Hub.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .config import Config, arg
from .errors import InputError, MissingInput
from .files import atomic_torch_save
from .tasks import REGRESSION, TaskSpec, custom_task, get_task

csv.field_size_limit(sys.maxsize)  # GLUE sentences can exceed csv's default 128 KiB field limit
TRAIN = "train"


@dataclass(frozen=True)
class TextSplit:
    """Raw text columns (one or two) and labels of one split."""

    texts: tuple[tuple[str, ...], ...]    # one tuple per text column
    labels: np.ndarray                    # int64 class ids, or float32 for regression

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "TextSplit":
        if n is None or n >= len(self):
            return self
        return TextSplit(tuple(col[:n] for col in self.texts), self.labels[:n])


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
        if (self.train_file is None) != (self.dev_file is None):
            raise InputError("--train-file and --dev-file go together: give both or neither")
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


def _open_text(path: Path):
    if not path.is_file():
        raise MissingInput(f"data file not found: {path}")
    return open(path, encoding="utf-8-sig", newline="")  # utf-8-sig: MRPC's header has a BOM


def _read_rows(path: Path, names: tuple[str, ...] | None) -> tuple[list[str], list[list[str]]]:
    """Read a GLUE TSV: tab-separated, quote characters literal (QUOTE_NONE)."""
    try:
        with _open_text(path) as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); re-encode it as UTF-8") from None
    if names is not None:
        return list(names), rows
    if not rows:
        raise InputError(f"{path} is empty")
    return rows[0], rows[1:]


def _column_index(header: list[str], column: str, path: Path) -> int:
    if column not in header:
        raise InputError(f"{path} has no column {column!r}; its columns are {header}")
    return header.index(column)


def _labels(raw: list[str], spec: TaskSpec, where: str) -> np.ndarray:
    """Turn label strings into class ids (or floats), rejecting values outside the task's labels."""
    if spec.is_regression:
        try:
            return np.asarray([float(v) for v in raw], np.float32)
        except ValueError as e:
            raise InputError(f"{where}: regression label is not a number ({e})") from None
    if spec.label_names is not None:
        index = {name: i for i, name in enumerate(spec.label_names)}
        bad = sorted({v for v in raw if v not in index})
        if bad:
            raise InputError(f"{where}: labels {bad[:5]} are not among the task's labels {list(spec.label_names)}")
        return np.asarray([index[v] for v in raw], np.int64)
    try:
        ids = np.asarray([int(v) for v in raw], np.int64)
    except ValueError:
        bad = sorted({v for v in raw if not v.lstrip("-").isdigit()})
        raise InputError(f"{where}: labels {bad[:5]} are not integers in [0, {spec.num_labels})") from None
    outside = sorted(set(ids[(ids < 0) | (ids >= spec.num_labels)].tolist()))
    if outside:
        raise InputError(f"{where}: labels {outside[:5]} are outside the task's {spec.num_labels} classes "
                         f"[0, {spec.num_labels}); check --num-labels or the label column")
    return ids


def read_glue_tsv(path: Path, spec: TaskSpec) -> TextSplit:
    """One split in the original GLUE layout."""
    header, rows = _read_rows(path, spec.tsv_names)
    text_idx = [_column_index(header, c, path) for c in spec.tsv_text]
    label_idx = _column_index(header, spec.tsv_label, path)
    need = max(text_idx + [label_idx])
    short = [i for i, r in enumerate(rows) if len(r) <= need]
    if short:
        raise InputError(f"{path}: row {short[0] + 2} has {len(rows[short[0]])} fields, expected {len(header)}")
    texts = tuple(tuple(r[i] for r in rows) for i in text_idx)
    split = TextSplit(texts, _labels([r[label_idx] for r in rows], spec, str(path)))
    if len(split) == 0:
        raise InputError(f"{path} has no rows")
    return split


def read_records(path: Path) -> list[dict]:
    """Rows of a CSV, TSV or JSONL file as dicts."""
    suffix = path.suffix.lower()
    try:
        with _open_text(path) as f:
            if suffix in (".jsonl", ".json"):
                records = []
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            raise InputError(f"{path}:{n}: not a JSON object per line ({e.msg})") from None
                return records
            if suffix not in (".csv", ".tsv", ".txt"):
                raise InputError(f"{path}: unsupported data file type {suffix!r}; use .csv, .tsv or .jsonl")
            text = f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); re-encode it as UTF-8") from None
    rows = _delimited_rows(text, path, "\t" if suffix != ".csv" else ",")
    return [dict(zip(rows[0], r)) for r in rows[1:]] if rows else []


def _delimited_rows(text: str, path: Path, delimiter: str) -> list[list[str]]:
    """Rows of a CSV or TSV, each as wide as the header. CSV-style quoting (``"say ""hi"" now"``, as pandas writes
    it) where the whole file parses that way; else, for a TSV, quote characters as text (GLUE's convention:
    MRPC and STS-B hold fields that open a quote and never close it, which CSV quoting would silently merge
    with the rows after them: 1,470 rows read from STS-B's 1,500-row dev.tsv)."""
    attempts = [{"strict": True}] + ([{"quoting": csv.QUOTE_NONE}] if delimiter == "\t" else [])
    problem = ""
    for kwargs in attempts:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter, **kwargs)
        rows, lines = [], []
        try:
            for row in reader:
                if row:  # blank lines are not rows (as csv.DictReader has it)
                    rows.append(row)
                    lines.append(reader.line_num)
        except csv.Error as e:
            problem = f"line {reader.line_num}: {e}"
            continue
        bad = next((i for i, r in enumerate(rows) if len(r) != len(rows[0])), None)
        if bad is None:
            return rows
        problem = f"line {lines[bad]} has {len(rows[bad])} fields, the header {len(rows[0])}"
    raise InputError(f"{path}: {problem}; every row needs one value per header column")


def read_table(path: Path, spec: TaskSpec, records: list[dict] | None = None) -> TextSplit:
    """One split from a user CSV/TSV/JSONL with the spec's text and label columns."""
    records = read_records(path) if records is None else records
    if not records:
        raise InputError(f"{path} has no rows")
    present = list(records[0].keys())
    missing = [c for c in (*spec.tsv_text, spec.tsv_label) if c not in present]
    if missing:
        raise InputError(f"{path} is missing columns {missing}; its columns are {present} "
                         "(set --text-columns / --label-column)")
    texts = tuple(tuple(str(r[c]) for r in records) for c in spec.tsv_text)
    return TextSplit(texts, _labels([str(r[spec.tsv_label]) for r in records], spec, str(path)))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def infer_labels(records: list[dict], path: Path, label_column: str, num_labels: int | None
                 ) -> tuple[int, tuple[str, ...] | None]:
    """(number of labels, label names or None) of a user training file. Names (e.g. DESC, HUM, pos,
    neg) become classes in sorted order, as ``run_glue`` does; integers 0..C-1 are class ids;
    other numbers make a regression task (one output)."""
    if not records:
        raise InputError(f"{path} has no rows")
    if label_column not in records[0]:
        raise InputError(f"{path} is missing columns [{label_column!r}]; its columns are {list(records[0])} "
                         "(set --label-column)")
    values = sorted({str(r.get(label_column)) for r in records})
    if not all(_is_number(v) for v in values):
        if num_labels is not None and num_labels != len(values):
            raise InputError(f"{path}: {len(values)} distinct labels in {label_column!r} ({values[:6]}), and "
                             f"--num-labels {num_labels}; drop --num-labels or fix the label column")
        if len(values) < 2:
            raise InputError(f"{path}: the label column {label_column!r} holds one value ({values}); "
                             "classification needs at least 2 classes")
        return len(values), tuple(values)
    if num_labels:
        return num_labels, None
    numbers = {float(v) for v in values}
    if all(n.is_integer() and n >= 0 for n in numbers) and len(numbers) <= 100:
        return int(max(numbers)) + 1, None
    return REGRESSION, None


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
        train_path, dev_path = Path(cfg.train_file), Path(cfg.dev_file)
        records = read_records(train_path)
        num_labels, names = infer_labels(records, train_path, cfg.label_column, cfg.num_labels)
        spec = custom_task(num_labels, cfg.text_columns, cfg.label_column, names)
        splits = {TRAIN: read_table(train_path, spec, records), "validation": read_table(dev_path, spec)}
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
    splits = {name: s.head(cfg.max_train_samples if name == TRAIN else cfg.max_eval_samples)
              for name, s in splits.items()}
    return spec, splits


@dataclass(frozen=True)
class Encoded:
    """Token ids of one split, unpadded, plus labels."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), np.int64, len(self.input_ids))

    def subset(self, rows) -> "Encoded":
        rows = np.asarray(rows, np.int64)
        return Encoded([self.input_ids[i] for i in rows], [self.token_type_ids[i] for i in rows], self.labels[rows])

    def head(self, n: int) -> "Encoded":
        return self.subset(np.arange(min(n, len(self))))


def _cache_key(split: TextSplit, tokenizer, max_length: int) -> str:
    h = hashlib.sha1()
    h.update(f"{type(tokenizer).__name__}|{tokenizer.name_or_path}|{len(tokenizer)}|{max_length}".encode())
    for col in split.texts:
        for text in col:
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
    h.update(split.labels.tobytes())
    return h.hexdigest()


def encode(split: TextSplit, tokenizer, max_length: int, cache_dir: str | None = None) -> Encoded:
    """Tokenise a split once; later calls with the same text and tokenizer read the cache."""
    path = None
    if cache_dir:
        path = Path(cache_dir) / f"tok-{_cache_key(split, tokenizer, max_length)}.pt"
        if path.is_file():
            try:
                return Encoded(**torch.load(path, weights_only=False))
            except Exception:  # a corrupt cache entry is rebuilt, never trusted
                path.unlink(missing_ok=True)
    enc = tokenizer(*[list(col) for col in split.texts], truncation=True, max_length=max_length)
    ids = [np.asarray(x, np.int32) for x in enc["input_ids"]]
    types = [np.asarray(x, np.int8) for x in enc.get("token_type_ids", [[0] * len(x) for x in ids])]
    out = Encoded(ids, types, split.labels)
    if path is not None:  # atomic: a killed run never leaves a half-written cache file
        atomic_torch_save({"input_ids": ids, "token_type_ids": types, "labels": split.labels}, path)
    return out


def pad_batch(data: Encoded, index: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the rows in ``index`` to the longest of them (dynamic padding)."""
    width = max(len(data.input_ids[i]) for i in index)
    input_ids = np.full((len(index), width), pad_id, np.int64)
    types = np.zeros((len(index), width), np.int64)
    mask = np.zeros((len(index), width), np.int64)
    for row, i in enumerate(index):
        n = len(data.input_ids[i])
        input_ids[row, :n] = data.input_ids[i]
        types[row, :n] = data.token_type_ids[i]
        mask[row, :n] = 1
    return {"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(types),
            "attention_mask": torch.from_numpy(mask), "labels": torch.from_numpy(data.labels[index])}


def batch_indices(data: Encoded, batch_size: int, shuffle: bool, seed: int = 0,
                  bucket: bool = True) -> list[np.ndarray]:
    """Batches of row indices. With ``bucket``, rows of similar length share a batch (less padding);
    shuffling then permutes within 50-batch chunks and the order of batches, so it stays random."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data)) if shuffle else np.arange(len(data))
    if bucket:
        chunk = batch_size * 50
        lengths = data.lengths
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                                for c in np.array_split(order, max(1, -(-len(order) // chunk)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def iterate(data: Encoded, batch_size: int, pad_id: int, shuffle: bool = False, seed: int = 0,
            bucket: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    for index in batch_indices(data, batch_size, shuffle, seed, bucket):
        yield pad_batch(data, index, pad_id)


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


def _extra_split(path: str, spec: TaskSpec, cfg: DataConfig) -> TextSplit:
    """A --val-file / --test-file: a user table, or a GLUE TSV of the task's layout."""
    if cfg.train_file is None and Path(path).suffix.lower() == ".tsv":
        return read_glue_tsv(Path(path), spec)
    return read_table(Path(path), spec)


def load_task(cfg: DataConfig, tokenizer) -> TaskData:
    """Load, check and tokenise ``cfg``'s splits in their three roles (see ``TaskData``)."""
    spec, splits = load_splits(cfg)
    dev_split = spec.dev_splits[0] if cfg.train_file is None else "validation"
    tok = lambda split: encode(split, tokenizer, cfg.max_length, cfg.cache_dir)
    train = tok(splits[TRAIN])
    dev = tok(_extra_split(cfg.test_file, spec, cfg).head(cfg.max_eval_samples) if cfg.test_file
              else splits[dev_split])
    if cfg.val_file:
        val_split = tok(_extra_split(cfg.val_file, spec, cfg))
        warn_small_selection(len(val_split))
        return TaskData(spec, train, train, val_split, dev, tokenizer.pad_token_id or 0)
    fit, val = carve_validation(train.labels, cfg.val_fraction, spec.is_regression)
    warn_small_selection(len(val))
    return TaskData(spec, train, train.subset(fit), train.subset(val), dev, tokenizer.pad_token_id or 0)
