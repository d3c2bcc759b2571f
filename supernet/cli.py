"""Command-line pieces shared by ``python -m supernet.search`` and ``python -m retrain``."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from .data import DataConfig


def add_data_arguments(p: argparse.ArgumentParser, task_default: str | None = "mrpc") -> None:
    d = p.add_argument_group("data")
    d.add_argument("--task", default=task_default,
                   help="GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli)")
    d.add_argument("--glue-dir", default=None, help="folder with <TASK>/{train,dev}.tsv (default: $GLUE_DIR; "
                                                    "else the Hugging Face Hub)")
    d.add_argument("--train-file", default=None, help="your own CSV/TSV/JSONL training file")
    d.add_argument("--dev-file", default=None, help="your own CSV/TSV/JSONL dev file")
    d.add_argument("--text-columns", default="", help="comma-separated text column(s) of --train-file data")
    d.add_argument("--label-column", default="label", help="label column of --train-file data")
    d.add_argument("--num-labels", type=int, default=None, help="classes of --train-file data (1 = regression)")
    d.add_argument("--max-length", type=int, default=128, help="tokens per example")
    d.add_argument("--max-train-samples", type=int, default=None, help="use only the first N training rows")
    d.add_argument("--max-eval-samples", type=int, default=None, help="use only the first N dev rows")


def data_config_from_args(args: argparse.Namespace, task: str | None = None) -> DataConfig:
    return DataConfig(task=task or args.task, glue_dir=args.glue_dir, train_file=args.train_file,
                      dev_file=args.dev_file, text_columns=tuple(c for c in args.text_columns.split(",") if c),
                      label_column=args.label_column, num_labels=args.num_labels, max_length=args.max_length,
                      max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples)


def add_fine_tune_arguments(g, model_help: str, epochs: float, checkpoint_help: str) -> None:
    """The flags of ``supernet.train.FineTuneConfig`` plus the encoder, for every command that fine-tunes."""
    g.add_argument("--model", default=None, help=model_help)
    g.add_argument("--num-hidden-layers", type=int, default=None, help="keep only the first N encoder layers")
    g.add_argument("--epochs", type=float, default=epochs, help="fine-tuning epochs")
    g.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr-encoder", type=float, default=5e-5)
    g.add_argument("--lr-head", type=float, default=1e-3)
    g.add_argument("--checkpoint-every", type=int, default=100, help=checkpoint_help)
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    g.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast (use on GPU)")


# what a user's input can cause: printed as one line "error: ...", exit status 2
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError, FloatingPointError)


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Any],
            argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        run(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def claim_output_dir(out: Path, overwrite: bool, holds: str, resume_hint: str, keep: bool = False,
                     check_only: bool = False) -> Path:
    """Create ``out``. One that already holds ``holds`` is refused (nothing touched) unless
    ``overwrite`` replaces it or ``keep`` (resume) writes into it. ``check_only`` refuses without
    creating or deleting anything (call it before slow validation, claim after)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output-dir {out} is a file, not a directory; pick another --output-dir")
    if out.exists() and any(out.iterdir()) and not keep:
        if not overwrite:
            raise FileExistsError(f"{out} already holds {holds}; {resume_hint}, --overwrite replaces it, "
                                  "or pick another --output-dir")
        if check_only:
            return out
        shutil.rmtree(out)
    if check_only:
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out
