"""Bad input, as a user gives it on the command line: exit status 2, one line naming the problem
and the fix, and nothing overwritten or half-written (the output directory is compared byte for
byte before and after, or must not exist afterwards)."""
from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from retrain.cli import main as retrain_main
from supernet.nn.arch import linear_architecture
from supernet.search import main as search_main

FAST = ["--max-train-samples", "64", "--max-eval-samples", "32", "--max-steps", "2", "--batch-size", "8",
        "--calib-samples", "16", "--no-webui", "--trials", "2", "--population", "2", "--sample-size", "1",
        "--random-baseline", "2", "--space", "tiny", "--pick", "best"]


def snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()} if d.exists() else {}


def refused(capsys, main, argv: list[str], pattern: str, out: Path) -> None:
    """``main(argv)`` exits 2 with one stderr line matching ``pattern`` and leaves ``out`` as it was."""
    before = snapshot(out)
    existed = out.exists()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    assert re.search(pattern, err[0]), err[0]
    assert out.exists() == existed, f"{out} was {'removed' if existed else 'created'}"
    assert snapshot(out) == before, "files changed"


def csv_file(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def arch_file(path: Path, **change) -> Path:
    d = linear_architecture("mrpc", "all-MiniLM-L6-v2").to_dict()
    choices = change.pop("choices", None)
    d.update(change)
    if choices is not None:
        d["choices"] = choices
    path.write_text(json.dumps(d))
    return path


# ---- python -m supernet.search ------------------------------------------------------------------

def search_refuses(capsys, tmp_path, glue_dir, argv, pattern, out=None):
    out = out or tmp_path / "run"
    refused(capsys, search_main, ["--glue-dir", str(glue_dir), *FAST, "--output-dir", str(out), *argv], pattern, out)


def test_unknown_task(capsys, tmp_path, glue_dir):
    search_refuses(capsys, tmp_path, glue_dir, ["--task", "glue9"], r"unknown task 'glue9'; choose one of .*mrpc")


def test_glue_dir_without_the_task(capsys, tmp_path, glue_dir):
    refused(capsys, search_main, ["--glue-dir", str(tmp_path), "--task", "cola", *FAST,
                                  "--output-dir", str(tmp_path / "run")], r"no CoLA/ folder", tmp_path / "run")


def test_data_file_missing(capsys, tmp_path, glue_dir):
    search_refuses(capsys, tmp_path, glue_dir, ["--train-file", str(tmp_path / "nope.csv"), "--dev-file",
                                                str(tmp_path / "nope.csv"), "--text-columns", "text"],
                   r"data file not found: .*nope.csv")


def test_missing_columns(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "d.csv", "sentence,label\nfine,1\nbad,0\n")
    search_refuses(capsys, tmp_path, glue_dir, ["--train-file", str(f), "--dev-file", str(f), "--text-columns",
                                                "text"], r"missing columns \['text'\]")


def test_label_outside_the_classes(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "d.csv", "text,label\nfine,1\nbad,0\nodd,5\n")
    search_refuses(capsys, tmp_path, glue_dir, ["--train-file", str(f), "--dev-file", str(f), "--text-columns",
                                                "text", "--num-labels", "2"], r"labels \[5\] are outside")


def test_empty_split(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "d.csv", "text,label\n")
    search_refuses(capsys, tmp_path, glue_dir, ["--train-file", str(f), "--dev-file", str(f), "--text-columns",
                                                "text"], r"has no rows")


def test_non_utf8_text(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "d.csv", b"text,label\ncaf\xe9,1\nbad,0\n")
    search_refuses(capsys, tmp_path, glue_dir, ["--train-file", str(f), "--dev-file", str(f), "--text-columns",
                                                "text"], r"is not UTF-8")


def test_model_dir_that_is_not_a_model(capsys, tmp_path, glue_dir):
    (tmp_path / "notamodel").mkdir()
    search_refuses(capsys, tmp_path, glue_dir, ["--model", str(tmp_path / "notamodel")],
                   r"is not a model directory \(no config.json\)")


def test_model_dir_without_weights(capsys, tmp_path, glue_dir, tiny_model_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        if "safetensors" not in f.name and not f.name.endswith(".bin"):
            (broken / f.name).write_bytes(f.read_bytes())
    search_refuses(capsys, tmp_path, glue_dir, ["--model", str(broken)], r"cannot load an encoder from")


def test_port_in_use_is_refused_before_training(capsys, tmp_path, glue_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        refused(capsys, search_main, ["--glue-dir", str(glue_dir), *[a for a in FAST if a != "--no-webui"],
                                      "--port", str(port), "--output-dir", str(tmp_path / "run")],
                rf"port {port} is already in use.*--port", tmp_path / "run")


def test_output_dir_holding_a_run_is_not_touched(capsys, tmp_path, glue_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "arch_top1.json").write_text("{}")
    search_refuses(capsys, tmp_path, glue_dir, [], r"already holds a run; --resume .* --overwrite", out)


def test_output_dir_that_is_a_file(capsys, tmp_path, glue_dir):
    out = csv_file(tmp_path / "run", "x")
    refused(capsys, search_main, ["--glue-dir", str(glue_dir), *FAST, "--output-dir", str(out)],
            r"is a file, not a directory", tmp_path)


def test_resume_of_a_folder_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "x").mkdir()
    refused(capsys, search_main, ["--resume", str(tmp_path / "x")], r"no run_config.json there", tmp_path / "x")


def test_corrupt_checkpoint_is_named_and_kept(capsys, tmp_path, glue_dir, tiny_model_dir):
    run = tmp_path / "run"
    assert search_main(["--glue-dir", str(glue_dir), *FAST, "--model", str(tiny_model_dir),
                        "--output-dir", str(run)]) == 0
    capsys.readouterr()
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # as a full disk or a copy cut short leaves it
    refused(capsys, search_main, ["--resume", str(run), "--no-webui"], r"checkpoint .* is corrupt or truncated", run)


def test_corrupt_one_shot_checkpoint_is_named_and_kept(capsys, tmp_path, glue_dir, tiny_model_dir):
    run = tmp_path / "run"
    assert search_main(["--glue-dir", str(glue_dir), *FAST, "--strategy", "darts", "--model", str(tiny_model_dir),
                        "--output-dir", str(run)]) == 0
    capsys.readouterr()
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    refused(capsys, search_main, ["--resume", str(run), "--no-webui"], r"checkpoint .*last.ckpt is corrupt", run)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(capsys, tmp_path, glue_dir, tiny_model_dir):
    run = tmp_path / "run"
    argv = ["--glue-dir", str(glue_dir), *FAST, "--model", str(tiny_model_dir), "--output-dir", str(run),
            "--max-steps", "20", "--checkpoint-every", "1", "--lr-encoder", "1e30", "--lr-head", "1e30"]
    assert search_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and re.search(r"(loss is nan|non-finite).*lower --lr-encoder/--lr-head", err[0]), err
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (run / "arch_top1.json").exists()


@pytest.mark.parametrize("argv, pattern", [
    (["--batch-size", "1"], r"--batch-size must be >= 2"),
    (["--sample-size", "9"], r"--sample-size must be in \[1, --population=2\]"),
    (["--space", "huge"], r"unknown space 'huge'"),
    (["--max-steps", "0"], r"--max-steps must be >= 1"),
    (["--trials", "0"], r"--trials, --top-k and --concurrency must be >= 1"),
    # the audit of issue #29: these ran without complaint, and meant nothing
    (["--penalty", "params"], r"--penalty params needs --penalty-weight > 0"),
    (["--grad-clip", "0"], r"--grad-clip must be > 0"),
    (["--weight-decay", "-0.1"], r"--weight-decay must be >= 0"),
    (["--seed", "-1"], r"--seed must be >= 0"),
    (["--device", "gpu"], r"--device 'gpu' is not a device"),
    (["--host", "10.1.2.3"], r"--host '10.1.2.3': use 127.0.0.1 .* or 0.0.0.0"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"], r"--device cuda"),
])
def test_bad_flag_values(capsys, tmp_path, glue_dir, argv, pattern):
    search_refuses(capsys, tmp_path, glue_dir, argv, pattern)


@pytest.mark.parametrize("argv,pattern", [
    (["--space", "tiny+fnn"], r"unknown space 'tiny\+fnn': backbone parts must be distinct ones of \['conv', 'ffn'\]"),
    (["--strategy", "darts", "--space", "tiny+ffn"], r"--strategy darts learns head choices only; search backbone"),
    (["--penalty", "latency", "--penalty-weight", "0.1"], r"--penalty latency needs a backbone space"),
    (["--penalty-weight", "0.1"], r"--penalty-weight needs --penalty params or --penalty latency"),
    (["--space", "tiny+ffn@4"], r"space 'tiny\+ffn@4' is bound to 4 encoder layers, and the encoder has 2"),
])
def test_backbone_space_misuse(capsys, tmp_path, glue_dir, tiny_model_dir, argv, pattern):
    search_refuses(capsys, tmp_path, glue_dir, ["--model", str(tiny_model_dir), *argv], pattern)


# ---- python -m retrain --------------------------------------------------------------------------

def retrain_refuses(capsys, tmp_path, glue_dir, argv, pattern, out=None):
    out = out or tmp_path / "out"
    refused(capsys, retrain_main, ["--glue-dir", str(glue_dir), "--max-train-samples", "32",
                                   "--max-eval-samples", "16", "--max-steps", "1", "--seeds", "1",
                                   "--output-dir", str(out), *argv], pattern, out)


def test_malformed_json(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "a.json", '{"space": "paper", ')
    retrain_refuses(capsys, tmp_path, glue_dir, [str(f)], r"a.json is not valid JSON \(line 1")


def test_json_of_another_schema_version(capsys, tmp_path, glue_dir):
    retrain_refuses(capsys, tmp_path, glue_dir, [str(arch_file(tmp_path / "a.json", schema_version=3))],
                    r"schema_version 3 is not supported")


def test_foreign_json(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "a.json", json.dumps({"width_0": 64, "act_0": "relu"}))  # a bare NNI sample
    retrain_refuses(capsys, tmp_path, glue_dir, [str(f)], r"unknown field 'width_0' in architecture JSON")


def test_json_that_is_not_an_object(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "a.json", "[1, 2]")
    retrain_refuses(capsys, tmp_path, glue_dir, [str(f)], r"must be an object, got list")


def test_value_outside_the_space(capsys, tmp_path, glue_dir):
    from supernet.nn.space import get_space
    choices = {**get_space("paper").canonical({"pool": "cls", "depth": 0}), "depth": 1, "width_0": 4096}
    f = arch_file(tmp_path / "a.json", choices=choices)
    retrain_refuses(capsys, tmp_path, glue_dir, [str(f)], r"width_0=4096 is outside space 'paper'")


def test_missing_key(capsys, tmp_path, glue_dir):
    retrain_refuses(capsys, tmp_path, glue_dir, [str(arch_file(tmp_path / "a.json", choices={"pool": "cls"}))],
                    r"missing key 'depth' for space 'paper'")


def test_unknown_space_in_json(capsys, tmp_path, glue_dir):
    retrain_refuses(capsys, tmp_path, glue_dir, [str(arch_file(tmp_path / "a.json", space="other"))],
                    r"unknown space 'other'")


def test_architecture_file_missing(capsys, tmp_path, glue_dir):
    retrain_refuses(capsys, tmp_path, glue_dir, [str(tmp_path / "nope.json")], r"architecture file not found")


def test_task_mismatch(capsys, tmp_path, glue_dir):
    retrain_refuses(capsys, tmp_path, glue_dir, [str(arch_file(tmp_path / "a.json")), "--task", "sst2"],
                    r"searched for task 'mrpc', not --task 'sst2'")


def test_encoder_mismatch(capsys, tmp_path, glue_dir, tiny_model_dir):
    retrain_refuses(capsys, tmp_path, glue_dir, [str(arch_file(tmp_path / "a.json")), "--model",
                                                 str(tiny_model_dir)], r"searched on encoder 'all-MiniLM-L6-v2'")


def test_label_count_mismatch(capsys, tmp_path, glue_dir):
    f = csv_file(tmp_path / "d.csv", "text,label\n" + "".join(f"row {i},{i % 3}\n" for i in range(12)))
    retrain_refuses(capsys, tmp_path, glue_dir, [str(arch_file(tmp_path / "a.json")), "--train-file", str(f),
                                                 "--dev-file", str(f), "--text-columns", "text"],
                    r"searched for mrpc \(2 labels\) but the data has 3")


def test_bad_seeds(capsys, tmp_path, glue_dir):
    """A flag of the wrong type is argparse's error: exit 2, naming the flag and the value."""
    with pytest.raises(SystemExit) as e:
        retrain_main(["linear", "--task", "mrpc", "--seeds", "1,x", "--output-dir", str(tmp_path / "out")])
    assert e.value.code == 2
    assert "argument --seeds: expected comma-separated int values, got '1,x'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_retrain_output_dir_holding_results_is_not_touched(capsys, tmp_path, glue_dir):
    out = tmp_path / "out"
    (out / "linear").mkdir(parents=True)
    (out / "results.json").write_text("{}")
    retrain_refuses(capsys, tmp_path, glue_dir, ["linear", "--task", "mrpc"], r"already holds results", out)


def test_truncated_model_file(tmp_path):
    from supernet.nn.saved import load_model
    f = csv_file(tmp_path / "model.pt", b"PK\x03\x04 cut short")
    with pytest.raises(ValueError, match=r"model.pt is not a saved retrain model \(corrupt or truncated"):
        load_model(f)


def test_retrain_nan_loss_stops_without_results(capsys, tmp_path, glue_dir, tiny_model_dir):
    out = tmp_path / "out"
    assert retrain_main(["linear", "--task", "mrpc", "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir),
                         "--max-train-samples", "64", "--max-steps", "20", "--seeds", "1", "--lr-encoder", "1e30",
                         "--lr-head", "1e30", "--output-dir", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and re.search(r"loss is nan at step \d+ of linear seed 1; lower --lr-encoder/--lr-head", err[0])
    assert not (out / "results.json").exists() and not (out / "linear" / "model.pt").exists()


def test_backbone_architecture_on_an_encoder_of_another_depth(capsys, tmp_path, glue_dir):
    from supernet.nn.arch import Architecture
    from supernet.nn.space import get_space
    space = get_space("tiny+ffn@2")
    f = tmp_path / "a.json"
    Architecture(space.name, space.reference(), task="mrpc").save(f)
    retrain_refuses(capsys, tmp_path, glue_dir, [str(f)],
                    r"a chooses 2 encoder layers \(space 'tiny\+ffn@2'\) and the encoder has 6; pass the "
                    r"--num-hidden-layers it was searched with")


def test_resume_takes_the_directory_in_every_command(tmp_path):
    """``--resume DIR`` as the search has it, in retrain and compare too; a bare ``--resume`` still
    continues ``--output-dir``; a different ``--output-dir`` beside ``--resume DIR`` is refused."""
    from retrain.cli import build_parser as retrain_parser
    from retrain.compare import build_parser as compare_parser
    from supernet.core.cli import resumed_output
    from supernet.core.errors import InputError
    out = str(tmp_path / "out")
    for parser, first in ((retrain_parser(), ["linear"]), (compare_parser(), [])):
        assert resumed_output(parser.parse_args([*first, "--resume", out])) == (out, True)
        assert resumed_output(parser.parse_args([*first, "--resume", "--output-dir", out])) == (out, True)
        assert resumed_output(parser.parse_args([*first, "--output-dir", out])) == (out, False)
        assert resumed_output(parser.parse_args([*first, "--resume", out, "--output-dir", out])) == (out, True)
        with pytest.raises(InputError, match="--resume .* continues that directory"):
            resumed_output(parser.parse_args([*first, "--resume", out, "--output-dir", str(tmp_path / "other")]))
        with pytest.raises(InputError, match="give --resume DIR"):
            resumed_output(parser.parse_args([*first, "--resume"]))


# ---------------------------------------------------------------- the bad-input audit of issue #29
# Each case: a value that ran without complaint but meant nothing, or one refused although a user
# would expect it to work. The closing note lists them.

def _own_files(tmp_path, body: str, name: str = "f.csv", **kwargs):
    from supernet.data.sources import DataConfig, load_splits
    path = csv_file(tmp_path / name, body)
    return load_splits(DataConfig(train_file=str(path), dev_file=str(path), text_columns=("text",), **kwargs))


@pytest.mark.parametrize("labels, classes, names", [
    ([i % 150 for i in range(300)], 150, None),       # CLINC150-style ids: classes, not a regression
    ([(-1) ** i for i in range(10)], 2, ("-1", "1")),  # -1 / +1: classes in numeric order
    (["1.0", "0.0"] * 5, 2, None),                    # pandas writes ints as floats once a NaN was there
])
def test_integer_labels_are_classes(tmp_path, labels, classes, names):
    spec, splits = _own_files(tmp_path, "text,label\n" + "".join(f"t{i},{v}\n" for i, v in enumerate(labels)))
    assert spec.num_labels == classes and spec.label_names == names
    if labels[0] == "1.0":
        assert splits["train"].labels[:2].tolist() == [1, 0]


def test_integer_labels_are_a_regression_when_asked(tmp_path):
    spec, _ = _own_files(tmp_path, "text,label\n" + "".join(f"t{i},{i % 5}\n" for i in range(10)), num_labels=1)
    assert spec.is_regression


@pytest.mark.parametrize("body, message", [
    ("text,label\na,1.0\nb,\nc,0.0\n", r"row 2 has no label"),
    ("text,label\na,0.5\nb,nan\nc,0.25\n", r"row 2 has no label"),
    ('{"text": "a", "label": "pos"}\n{"text": "b", "label": null}\n', r"row 2 has no label"),
    ("text,label\na,0\nb,0\n", r"holds one value"),
])
def test_missing_or_single_labels_are_named(tmp_path, body, message):
    from supernet.core.errors import InputError
    with pytest.raises(InputError, match=message):
        _own_files(tmp_path, body, "f.jsonl" if body.startswith("{") else "f.csv")


def test_label_names_are_stripped(tmp_path):
    spec, splits = _own_files(tmp_path, "text,label\na,neg \nb,pos\nc,neg\n")
    assert spec.label_names == ("neg", "pos") and splits["train"].labels.tolist() == [0, 1, 0]


def test_regression_labels_must_be_finite(tmp_path):
    from supernet.core.errors import InputError
    with pytest.raises(InputError, match="row 2's label 'inf' is not a finite number"):
        _own_files(tmp_path, "text,label\na,0.5\nb,inf\nc,0.25\n")


@pytest.mark.parametrize("kwargs, message", [
    ({"text_columns": ("a", "b", "c")}, r"names 3 columns"),
    ({"text_columns": ("label",)}, r"--label-column 'label' is also a --text-columns column"),
])
def test_text_columns_that_cannot_be_meant(kwargs, message):
    from supernet.core.errors import InputError
    from supernet.data.sources import DataConfig
    with pytest.raises(InputError, match=message):
        DataConfig(train_file="t.csv", dev_file="t.csv", **kwargs)


@pytest.mark.parametrize("name, body, message", [
    ("f.csv", "text,text,label\na,b,0\nc,d,1\n", r"names \['text'\] more than once"),
    ("f.jsonl", '{"text": "a", "label": 0}\n[1, 2]\n', r"line 2 is a JSON list, not an object"),
    ("f.jsonl", '{"text": "a", "label": 0}\n{"text": "b"}\n', r"row 2 has no 'label'"),
    ("f.jsonl", '{"text": "a", "label": 0}\n{"text": null, "label": 1}\n', r"row 2 has no text in 'text'"),
])
def test_malformed_rows_are_named(tmp_path, name, body, message):
    from supernet.core.errors import InputError
    with pytest.raises(InputError, match=message):
        _own_files(tmp_path, body, name)


def test_a_json_array_of_rows_is_read(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(6)]
    spec, splits = _own_files(tmp_path, json.dumps(rows), "f.json")
    assert spec.num_labels == 2 and len(splits["train"]) == 6


def _task(tmp_path, tokenizer, **kwargs):
    from supernet.data.sources import DataConfig
    from supernet.data.splits import load_task
    return load_task(DataConfig(text_columns=("text",), label_column="label", **kwargs), tokenizer)


def test_a_selection_file_that_is_the_report_split_is_flagged(tmp_path, tokenizer):
    from supernet.data.sources import SplitWarning
    body = "text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(40))
    train = csv_file(tmp_path / "train.csv", body)
    dev = csv_file(tmp_path / "dev.csv", "text,label\n" + "".join(f"dev {i},{i % 2}\n" for i in range(20)))
    with pytest.warns(SplitWarning, match="--val-file shares 20 of its 20 rows with the report split"):
        _task(tmp_path, tokenizer, train_file=str(train), dev_file=str(dev), val_file=str(dev))
    with pytest.warns(SplitWarning, match="--test-file shares 40 of its 40 rows with the training rows"):
        _task(tmp_path, tokenizer, train_file=str(train), test_file=str(train))


def test_first_rows_of_a_sorted_file_and_a_one_class_report_split_are_flagged(tmp_path, tokenizer):
    from supernet.data.sources import SplitWarning
    sorted_rows = "text,label\n" + "".join(f"row {i},{i // 20}\n" for i in range(60))
    train = csv_file(tmp_path / "train.csv", sorted_rows)
    ones = csv_file(tmp_path / "dev.csv", "text,label\n" + "".join(f"dev {i},1\n" for i in range(10)))
    with pytest.warns(SplitWarning) as seen:
        _task(tmp_path, tokenizer, train_file=str(train), dev_file=str(ones), max_train_samples=40)
    text = " | ".join(str(w.message) for w in seen)
    assert "hold 2 of the 3 classes" in text and "every row of the report split has the label 1" in text


def test_an_encoder_is_not_given_more_layers_or_positions_than_it_has(capsys, tmp_path, glue_dir, tiny_model_dir):
    """transformers adds freshly initialised layers past the checkpoint's (silently, its warning muted),
    and a row longer than the position embeddings crashes after the run directory is written."""
    model = ["--model", str(tiny_model_dir)]
    search_refuses(capsys, tmp_path, glue_dir, [*model, "--num-hidden-layers", "4"],
                   r"--num-hidden-layers 4, and the encoder has 2 layers")
    search_refuses(capsys, tmp_path, glue_dir, [*model, "--max-length", "256"],
                   r"--max-length 256 exceeds the encoder's 128 positions")


def test_compare_budget_flags_are_named_and_nothing_is_created(capsys, tmp_path, glue_dir):
    from retrain.compare import main as compare_main
    out = tmp_path / "cmp"
    refused(capsys, compare_main, ["--task", "mrpc", "--glue-dir", str(glue_dir), "--supernet-max-steps", "0",
                                   "--output-dir", str(out)], r"--supernet-max-steps must be >= 1", out)
    refused(capsys, compare_main, ["--task", "mrpc", "--glue-dir", str(glue_dir), "--seeds=-1,2",
                                   "--output-dir", str(out)], r"--seeds must be distinct integers >= 0", out)


def test_evolution_that_never_leaves_its_random_start_is_flagged():
    from strategies.config import SearchConfig
    with pytest.warns(UserWarning, match="every trial is random"):
        SearchConfig(trials=8, population=16)


def test_init_from_a_run_of_another_task_is_refused(tmp_path):
    from retrain.run import inherited_supernet
    from supernet.core.errors import InputError
    from supernet.data.tasks import get_task
    run = tmp_path / "cola-run"
    run.mkdir()
    (run / "search_summary.json").write_text(json.dumps({"task": "cola"}))
    arch = linear_architecture("sst2", "all-MiniLM-L6-v2")
    with pytest.raises(InputError, match="that run searched task 'cola', and arch is for 'sst2'"):
        inherited_supernet(str(run), [("arch", arch)], get_task("sst2"))


def test_retrain_names_tasks_and_the_packaged_encoder_as_search_does(tmp_path):
    """``--task MRPC`` is the record's 'mrpc', and the packaged encoder's folder is the encoder it names."""
    from retrain.run import HeadsConfig, resolve_heads
    from supernet.nn.encoder import EncoderConfig, default_model_dir
    arch = arch_file(tmp_path / "a.json")
    assert resolve_heads(str(arch), HeadsConfig(), "MRPC", EncoderConfig())[0] == "mrpc"
    assert resolve_heads(str(arch), HeadsConfig(), None, EncoderConfig(model=default_model_dir()))[0] == "mrpc"


def test_a_resumed_retrain_refuses_changed_data(tmp_path):
    """Paths alone were compared: a file rewritten between two runs mixed two datasets into one mean."""
    from retrain.run import RetrainConfig, RetrainPlan, check_resume_settings
    from supernet.core.errors import InputError
    from supernet.data.encoded import Encoded
    from supernet.data.sources import DataConfig
    from supernet.data.splits import TaskData
    from supernet.data.tasks import get_task
    from supernet.nn.encoder import EncoderConfig

    def plan(labels):
        rows = Encoded([np.array([101, 7, 102])] * 4, [np.zeros(3, np.int8)] * 4, np.array(labels))
        return RetrainPlan(TaskData(get_task("sst2"), rows, rows, rows, rows, 0), RetrainConfig(), EncoderConfig(),
                           DataConfig(task="sst2"))
    arch = linear_architecture("sst2", "all-MiniLM-L6-v2")
    check_resume_settings(tmp_path, plan([0, 1, 0, 1]).settings("linear", arch))
    check_resume_settings(tmp_path, plan([0, 1, 0, 1]).settings("linear", arch))  # same rows: accepted
    with pytest.raises(InputError, match=r"rows.train"):
        check_resume_settings(tmp_path, plan([1, 1, 0, 1]).settings("linear", arch))


def test_home_relative_paths_are_expanded(tmp_path, monkeypatch):
    from supernet.core.cli import resumed_output
    from supernet.data.sources import DataConfig
    from supernet.search import build_parser
    monkeypatch.setenv("HOME", str(tmp_path))
    assert DataConfig(train_file="~/t.csv", dev_file="~/d.csv", text_columns=("x",)).train_file == str(tmp_path / "t.csv")
    assert resumed_output(build_parser().parse_args(["--output-dir=~/run"]))[0] == str(tmp_path / "run")


def test_predict_takes_a_head_folder_and_names_a_checkpoint(tmp_path):
    from supernet.core.errors import InputError
    from supernet.nn.saved import read_model_file
    head = tmp_path / "linear"
    head.mkdir()
    with pytest.raises(InputError, match="is a folder without a model.pt"):
        read_model_file(head)
    torch.save({"model": {}, "optimizer": {}, "step": 3}, head / "checkpoint.pt")
    with pytest.raises(InputError, match="is a training checkpoint, not a saved model"):
        read_model_file(head / "checkpoint.pt")
    torch.save({"architecture": {"space": "mlp"}, "num_labels": 2}, head / "model.pt")
    assert read_model_file(head)["num_labels"] == 2


def test_view_port_out_of_range(capsys, tmp_path):
    from supernet.view import main as view_main
    refused(capsys, view_main, [str(tmp_path), "--port", "99999"], r"--port must be in \[1, 65535\]", tmp_path)
