"""A user's whole path: a CSV whose labels are names -> search -> retrain -> predictions as names."""
from __future__ import annotations

import csv
import json
import re

import pytest

from retrain.cli import main as retrain_main
from retrain.predict import main as predict_main
from supernet.data.sources import DataConfig, load_splits
from supernet.nn.arch import Architecture
from supernet.nn.saved import load_model
from supernet.search import main as search_main

NAMES = {"0": "neg", "1": "pos"}


def _write_csv(path, rows, header):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _sst2_rows(glue_dir, split: str, n: int):
    with open(glue_dir / "SST-2" / f"{split}.tsv", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:n + 1]
    return [(text, NAMES[label]) for text, label in rows]


@pytest.fixture(scope="module")
def named_data(tmp_path_factory, glue_dir):
    d = tmp_path_factory.mktemp("named")
    train = _write_csv(d / "train.csv", _sst2_rows(glue_dir, "train", 160), ["review", "sentiment"])
    dev = _write_csv(d / "dev.csv", _sst2_rows(glue_dir, "dev", 48), ["review", "sentiment"])
    return d, ["--train-file", str(train), "--dev-file", str(dev), "--text-columns", "review",
               "--label-column", "sentiment", "--num-hidden-layers", "2"]


def test_names_are_classes_in_sorted_order(named_data):
    d, _ = named_data
    spec, splits = load_splits(DataConfig(train_file=str(d / "train.csv"), dev_file=str(d / "dev.csv"),
                                          text_columns=("review",), label_column="sentiment"))
    assert spec.num_labels == 2 and spec.label_names == ("neg", "pos")
    raw = [label for _, label in csv.reader(open(d / "train.csv"))][1:]
    assert [spec.label_names[i] for i in splits["train"].labels] == raw


def test_a_dev_label_the_training_file_lacks_is_one_line(named_data, tmp_path):
    d, _ = named_data
    dev = _write_csv(tmp_path / "dev.csv", [("fine", "neg"), ("meh", "neutral")], ["review", "sentiment"])
    with pytest.raises(ValueError, match=r"labels \['neutral'\] are not among the task's labels \['neg', 'pos'\]"):
        load_splits(DataConfig(train_file=str(d / "train.csv"), dev_file=str(dev), text_columns=("review",),
                               label_column="sentiment"))
    with pytest.raises(ValueError, match="2 distinct labels .* and --num-labels 3"):
        load_splits(DataConfig(train_file=str(d / "train.csv"), dev_file=str(dev), text_columns=("review",),
                               label_column="sentiment", num_labels=3))


def test_search_retrain_predict_with_label_names(named_data, tmp_path, capsys):
    d, data = named_data
    run = tmp_path / "run"
    assert search_main([*data, "--space", "tiny", "--max-steps", "4", "--batch-size", "16", "--calib-samples", "16",
                        "--random-baseline", "4", "--trials", "4", "--population", "2", "--sample-size", "1",
                        "--no-webui", "--output-dir", str(run)]) == 0
    arch = Architecture.load(run / "arch_top1.json")
    assert arch.labels == ("neg", "pos")
    assert json.loads((run / "arch_top1.json").read_text())["labels"] == ["neg", "pos"]
    out = tmp_path / "retrain"
    assert retrain_main([str(run / "arch_top1.json"), *data, "--max-steps", "6", "--batch-size", "16", "--seeds", "1",
                         "--output-dir", str(out)]) == 0
    model_pt = out / "arch_top1" / "model.pt"
    texts = ["a gorgeous, witty, seductive movie .", "the plot is nothing but boilerplate clichés ."]
    model = load_model(model_pt)
    assert set(model.predict(texts)) <= {"neg", "pos"} and model.predict_proba(texts).sum(1) == pytest.approx(1.0)
    inp = _write_csv(tmp_path / "new.csv", [(t,) for t in texts], ["review"])
    assert predict_main([str(model_pt), "--input", str(inp)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "new.predictions.csv")))
    assert [r["review"] for r in rows] == texts and [r["prediction"] for r in rows] == model.predict(texts)
    assert all(abs(float(r["prob_neg"]) + float(r["prob_pos"]) - 1) < 1e-5 for r in rows)
    # bad input: one line each, nothing written
    capsys.readouterr()
    for argv, message in (
            (["--input", str(_write_csv(tmp_path / "cols.csv", [("x",)], ["text"]))],
             r"has no column\(s\) \['review'\]; its columns are \['text'\]"),
            (["--input", str(inp), "--text-columns", "review,review", "--output", str(tmp_path / "p2.csv")],
             "the model reads one sentence"),
            (["--input", str(_write_csv(tmp_path / "empty.csv", [], ["review"]))], "has no rows"),
            (["--input", str(inp)], "exists; --overwrite replaces it")):
        assert predict_main([str(model_pt), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), err
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(model_pt.read_bytes()[:1000])
    assert predict_main([str(corrupt), "--input", str(inp), "--output", str(tmp_path / "p.csv")]) == 2
    assert "is not a saved retrain model" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
