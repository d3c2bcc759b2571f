"""Bad input, as a user gives it on the command line: exit status 2, one line naming the problem
and the fix, and nothing overwritten or half-written (the output directory is compared byte for
byte before and after, or must not exist afterwards)."""
from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import pytest
import torch

from retrain.cli import main as retrain_main
from supernet.nn.arch import linear_architecture
from supernet.search import main as search_main

FAST = ["--max-train-samples", "64", "--max-eval-samples", "32", "--max-steps", "2", "--batch-size", "8",
        "--calib-samples", "16", "--no-webui", "--trials", "2", "--population", "2", "--sample-size", "1",
        "--random-baseline", "2", "--space", "tiny"]


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
