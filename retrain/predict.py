"""``python -m retrain.predict MODEL.pt --input FILE [--output FILE]``: predictions from a retrained model.

Reads a CSV, TSV or JSONL file with the text column(s) the model was trained on, and writes one row
per input row: the prediction (the label name, the class id where the task has no names, or the
score of a regression model) and, for a classifier, the probability of every class. Batched, with
a progress bar, on CPU or GPU. In Python: ``supernet.load_model(path).predict(texts)``.
"""
from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from supernet.core.cli import add_config_group, parser, run_cli
from supernet.core.config import Config, arg, from_args
from supernet.core.errors import InputError, MissingInput
from supernet.core.files import atomic_write_text
from supernet.data.readers import read_records
from supernet.data.readers import read_texts as read_texts_of
from supernet.nn.model import FrozenModel
from supernet.nn.saved import load_model


@dataclass(frozen=True)
class PredictConfig(Config):
    """What to predict, where to write it, on which device."""

    input: str = arg("", "CSV, TSV or JSONL file holding the text column(s) (required)")
    output: str | None = arg(None, "predictions CSV to write (default: <input>.predictions.csv beside the input)")
    text_columns: tuple[str, ...] = arg((), "the input's text column(s) when named otherwise than in training "
                                            "(default: the model's)")
    batch_size: int = arg(64, "rows per forward pass")
    device: str = arg("cpu", "cpu, cuda, cuda:1, ...")
    overwrite: bool = arg(False, "replace an existing --output file")

    def __post_init__(self):
        if not self.input:
            raise InputError("--input is required: a CSV, TSV or JSONL file with the text column(s)")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be >= 1, got {self.batch_size}")

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path(self.input).with_suffix(".predictions.csv")


def read_texts(model: FrozenModel, cfg: PredictConfig) -> tuple[list[str], list]:
    """(the input's text columns, its texts: strings, or pairs for a sentence-pair model)."""
    path = Path(cfg.input)
    if not path.is_file():
        raise MissingInput(f"--input {path}: no such file")
    records = read_records(path)
    if not records:
        raise InputError(f"--input {path} has no rows")
    wanted = model.interface.text_columns
    columns = list(cfg.text_columns or wanted)
    if len(columns) != len(wanted):
        kind = "a sentence pair" if len(wanted) == 2 else "one sentence"
        raise InputError(f"the model reads {kind} ({len(wanted)} text column(s): {list(wanted)}); "
                         f"--text-columns names {len(columns)}: {columns}")
    missing = [c for c in columns if c not in records[0]]
    if missing:
        raise InputError(f"--input {path} has no column(s) {missing}; its columns are {list(records[0])} "
                         f"(the model was trained on {list(wanted)}; name yours with --text-columns)")
    cols = read_texts_of(records, tuple(columns), path)  # a row missing a text is one error naming it
    texts = list(zip(*cols)) if len(columns) == 2 else list(cols[0])
    return columns, texts


def predictions_csv(model: FrozenModel, columns: list[str], texts: list, outputs: np.ndarray) -> str:
    interface = model.interface
    buf = io.StringIO()
    writer = csv.writer(buf)
    if interface.regression:
        writer.writerow(["row", *columns, "prediction"])
        for i, (text, score) in enumerate(zip(texts, outputs.reshape(-1))):
            writer.writerow([i, *([text] if isinstance(text, str) else text), f"{score:.6g}"])
        return buf.getvalue()
    names = list(interface.labels) if interface.labels else [str(i) for i in range(outputs.shape[1])]
    probs = torch.softmax(torch.from_numpy(outputs), -1).numpy()
    writer.writerow(["row", *columns, "prediction", *(f"prob_{n}" for n in names)])
    for i, (text, p) in enumerate(zip(texts, probs)):
        writer.writerow([i, *([text] if isinstance(text, str) else text), names[int(p.argmax())],
                         *(f"{x:.6f}" for x in p)])
    return buf.getvalue()


def predict_file(model_path: str, cfg: PredictConfig) -> Path:
    """Predict every row of ``cfg.input``; returns the predictions file written."""
    out = cfg.output_path
    if out.exists() and not cfg.overwrite:
        raise InputError(f"{out} exists; --overwrite replaces it, or pick another --output")
    model = load_model(model_path)
    columns, texts = read_texts(model, cfg)
    outputs = model.outputs(texts, batch_size=cfg.batch_size, device=cfg.device, progress=True)
    atomic_write_text(out, predictions_csv(model, columns, texts, outputs))
    print(f"wrote {len(texts)} predictions to {out}")
    return out


def build_parser():
    p = parser("python -m retrain.predict", "Predict labels (or scores) for every row of a CSV/TSV/JSONL file with a "
                                            "model retrained by python -m retrain.")
    p.add_argument("model", help="a model.pt written by python -m retrain (e.g. <out>/arch_top1/model.pt)")
    add_config_group(p, "input and output", PredictConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), lambda a: predict_file(a.model, from_args(PredictConfig, a)), argv)


if __name__ == "__main__":
    sys.exit(main())
