"""One task table for GLUE and friends: text columns, labels, metrics, splits, file layout.

The hub names (``datasets.load_dataset("glue", name)``) and the original GLUE TSV layout
(``$GLUE_DIR/<dir>/{train,dev}.tsv``) are both described here, so that every loader reads
the same table instead of keeping its own copy of it.
"""
from __future__ import annotations

from dataclasses import dataclass

from supernet.core.errors import InputError

REGRESSION = 1  # num_labels of a regression task (STS-B)


@dataclass(frozen=True)
class TaskSpec:
    """Everything the project needs to know about one sentence(-pair) task.

    ``tsv_text`` / ``tsv_label`` name the TSV columns (header names, or the names given in
    ``tsv_names`` for files without a header). ``label_names`` maps string labels in the TSV
    to the integer ids the hub uses; ``None`` means the labels are already integers (or
    floats for regression).
    """

    name: str
    glue_dir: str
    text_columns: tuple[str, ...]          # hub column names
    num_labels: int
    metrics: tuple[str, ...]               # first one is the one searches optimise
    dev_splits: tuple[str, ...] = ("validation",)
    tsv_dev_files: tuple[str, ...] = ("dev.tsv",)
    tsv_text: tuple[str, ...] = ()
    tsv_label: str = "label"
    tsv_names: tuple[str, ...] | None = None  # column names for header-less files
    label_names: tuple[str, ...] | None = None

    @property
    def is_regression(self) -> bool:
        return self.num_labels == REGRESSION

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec("cola", "CoLA", ("sentence",), 2, ("matthews_corr",),
                     tsv_text=("sentence",), tsv_names=("source", "label", "original_label", "sentence")),
    "sst2": TaskSpec("sst2", "SST-2", ("sentence",), 2, ("accuracy",), tsv_text=("sentence",)),
    "mrpc": TaskSpec("mrpc", "MRPC", ("sentence1", "sentence2"), 2, ("f1", "accuracy"),
                     tsv_text=("#1 String", "#2 String"), tsv_label="Quality"),
    "stsb": TaskSpec("stsb", "STS-B", ("sentence1", "sentence2"), REGRESSION, ("pearson", "spearman"),
                     tsv_text=("sentence1", "sentence2"), tsv_label="score"),
    "qqp": TaskSpec("qqp", "QQP", ("question1", "question2"), 2, ("f1", "accuracy"),
                    tsv_text=("question1", "question2"), tsv_label="is_duplicate"),
    "mnli": TaskSpec("mnli", "MNLI", ("premise", "hypothesis"), 3, ("accuracy",),
                     dev_splits=("validation_matched", "validation_mismatched"),
                     tsv_dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
                     tsv_text=("sentence1", "sentence2"), tsv_label="gold_label", label_names=_NLI3),
    "qnli": TaskSpec("qnli", "QNLI", ("question", "sentence"), 2, ("accuracy",),
                     tsv_text=("question", "sentence"), label_names=_NLI2),
    "rte": TaskSpec("rte", "RTE", ("sentence1", "sentence2"), 2, ("accuracy",),
                    tsv_text=("sentence1", "sentence2"), label_names=_NLI2),
    "wnli": TaskSpec("wnli", "WNLI", ("sentence1", "sentence2"), 2, ("accuracy",),
                     tsv_text=("sentence1", "sentence2")),
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name (case and '-' insensitive: 'SST-2' == 'sst2')."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {sorted(TASKS)} "
                         "(or give --train-file/--dev-file for your own data)")
    return TASKS[key]


def custom_task(num_labels: int, text_columns: tuple[str, ...], label_column: str,
                label_names: tuple[str, ...] | None = None) -> TaskSpec:
    """A task for user files: accuracy for classification, Pearson/Spearman for regression.
    ``label_names``: the class names of a file whose labels are names (class i = the i-th name)."""
    metrics = ("pearson", "spearman") if num_labels == REGRESSION else ("accuracy", "macro_f1")
    return TaskSpec("custom", "", text_columns, num_labels, metrics,
                    tsv_text=text_columns, tsv_label=label_column, label_names=label_names)