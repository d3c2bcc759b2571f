"""Reading one split's text and labels: GLUE TSVs (quotes literal) and user CSV / TSV / JSONL files,
with label names or ids checked against the task."""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supernet.core.errors import InputError, MissingInput
from supernet.data.tasks import REGRESSION, TaskSpec

csv.field_size_limit(sys.maxsize)  # GLUE sentences can exceed csv's default 128 KiB field limit


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


_MISSING = {"", "nan", "none", "null", "na", "n/a"}  # how pandas, JSON and spreadsheets write a missing label


def label_key(value: object) -> str | None:
    """A label as the task sees it: stripped, an integer-valued number as that integer ("1.0" and "1"
    are one class, as pandas writes a column that ever held a NaN), None where it is missing."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() in _MISSING:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _keys(raw: list, where: str) -> list[str]:
    """``label_key`` of every row, or one error naming the first row without a label."""
    keys = [label_key(v) for v in raw]
    if None in keys:
        row = keys.index(None) + 1
        raise InputError(f"{where}: row {row} has no label ({raw[row - 1]!r}); fill it in or drop the row")
    return keys


def _labels(raw: list, spec: TaskSpec, where: str) -> np.ndarray:
    """Turn label strings into class ids (or floats), rejecting values outside the task's labels."""
    keys = _keys(raw, where)
    if spec.is_regression:
        try:
            values = np.asarray([float(v) for v in keys], np.float64)
        except ValueError as e:
            raise InputError(f"{where}: regression label is not a number ({e})") from None
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
            raise InputError(f"{where}: row {row}'s label {raw[row - 1]!r} is not a finite number")
        return values.astype(np.float32)
    if spec.label_names is not None:
        index = {name: i for i, name in enumerate(spec.label_names)}
        bad = sorted({v for v in keys if v not in index})
        if bad:
            raise InputError(f"{where}: labels {bad[:5]} are not among the task's labels {list(spec.label_names)}")
        return np.asarray([index[v] for v in keys], np.int64)
    try:
        ids = np.asarray([int(v) for v in keys], np.int64)
    except ValueError:
        bad = sorted({v for v in keys if not v.lstrip("-").isdigit()})
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
    """Rows of a CSV, TSV, JSONL or JSON (an array of objects) file as dicts."""
    suffix = path.suffix.lower()
    try:
        with _open_text(path) as f:
            if suffix not in (".csv", ".tsv", ".txt", ".jsonl", ".json"):
                raise InputError(f"{path}: unsupported data file type {suffix!r}; use .csv, .tsv, .jsonl or .json")
            text = f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); re-encode it as UTF-8") from None
    if suffix in (".jsonl", ".json"):
        return _json_records(text, path)
    rows = _delimited_rows(text, path, "\t" if suffix != ".csv" else ",")
    if rows and len(set(rows[0])) != len(rows[0]):
        twice = sorted({c for c in rows[0] if rows[0].count(c) > 1})
        raise InputError(f"{path}: the header names {twice} more than once; give every column its own name")
    return [dict(zip(rows[0], r)) for r in rows[1:]] if rows else []


def _json_records(text: str, path: Path) -> list[dict]:
    """JSON Lines (one object per line), or one JSON array of objects (as ``df.to_json(orient="records")``)."""
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not a JSON array of objects ({e.msg} at line {e.lineno})") from None
        lines = range(1, len(records) + 1)
        what = "item"
    else:
        records, lines, what = [], [], "line"
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}:{n}: not a JSON object per line ({e.msg})") from None
                lines.append(n)
    for n, record in zip(lines, records):
        if not isinstance(record, dict):
            raise InputError(f"{path}: {what} {n} is a JSON {type(record).__name__}, not an object of columns")
    return records


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
    require_columns(records, (*spec.tsv_text, spec.tsv_label), path)
    return TextSplit(read_texts(records, spec.tsv_text, path),
                     _labels(column(records, spec.tsv_label, path), spec, str(path)))


def require_columns(records: list[dict], names: tuple[str, ...], path: Path) -> None:
    """One error naming the columns the first row lacks, and those it has."""
    present = list(records[0].keys())
    missing = [c for c in names if c not in present]
    if missing:
        raise InputError(f"{path} is missing columns {missing}; its columns are {present} "
                         "(set --text-columns / --label-column)")


def column(records: list[dict], name: str, path: Path) -> list:
    """One column of every row; a row without it is one error naming the row (JSON rows may differ)."""
    lacking = next((i for i, r in enumerate(records) if name not in r), None)
    if lacking is not None:
        raise InputError(f"{path}: row {lacking + 1} has no {name!r}; every row needs the columns of the first")
    return [r[name] for r in records]


def read_texts(records: list[dict], columns: tuple[str, ...], path: Path) -> tuple[tuple[str, ...], ...]:
    """The text columns of every row; a missing (null) text is one error naming the row."""
    out = []
    for name in columns:
        values = column(records, name, path)
        empty = next((i for i, v in enumerate(values) if v is None), None)
        if empty is not None:
            raise InputError(f"{path}: row {empty + 1} has no text in {name!r} (null); fill it in or drop the row")
        out.append(tuple(str(v) for v in values))
    return tuple(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


MAX_CLASS_ID = 1000  # non-negative integer labels up to here are class ids 0..max; others become class names


def infer_labels(records: list[dict], path: Path, label_column: str, num_labels: int | None
                 ) -> tuple[int, tuple[str, ...] | None]:
    """(number of labels, label names or None) of a user training file.

    - Names (e.g. DESC, HUM, pos, neg) become classes in sorted order, as ``run_glue`` does.
    - Integers (also written as 1.0 / 0.0) are classes: 0..C-1 are class ids (C = the largest + 1);
      others, such as -1 / 1, become class names in numeric order.
    - Other numbers make a regression task (one output); ``--num-labels 1`` makes integers one too.
    A missing label (empty, NaN, null) is an error naming its row."""
    if not records:
        raise InputError(f"{path} has no rows")
    if label_column not in records[0]:
        raise InputError(f"{path} is missing columns [{label_column!r}]; its columns are {list(records[0])} "
                         "(set --label-column)")
    values = sorted(set(_keys(column(records, label_column, path), str(path))))
    if len(values) < 2:
        raise InputError(f"{path}: the label column {label_column!r} holds one value ({values}); a task needs at "
                         "least 2 classes (or varying scores)")
    if not all(_is_number(v) for v in values):
        if num_labels is not None and num_labels != len(values):
            raise InputError(f"{path}: {len(values)} distinct labels in {label_column!r} ({values[:6]}), and "
                             f"--num-labels {num_labels}; drop --num-labels or fix the label column")
        return len(values), tuple(values)
    if num_labels:
        return num_labels, None
    numbers = sorted(float(v) for v in values)
    if not all(n.is_integer() for n in numbers):
        return REGRESSION, None
    if numbers[0] >= 0 and numbers[-1] < MAX_CLASS_ID:
        return int(numbers[-1]) + 1, None
    return len(numbers), tuple(str(int(n)) for n in numbers)
