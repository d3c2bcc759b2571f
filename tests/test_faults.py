"""kill -9 during each long phase, then ``--resume``: the run finishes as if never interrupted.

Each test runs the real command line in a subprocess, waits until the phase has left a
checkpoint (or ledger lines) behind, sends SIGKILL, resumes, and compares with an uninterrupted
run of the same command: same final weights, same trials, same best architecture (CPU, fixed seed).
A tiny random BERT (hidden 32) with the packaged tokenizer keeps each run to seconds.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from supernet.nn.arch import Architecture

from conftest import ROOT

SEARCH = ["--task", "mrpc", "--max-train-samples", "320", "--max-eval-samples", "96", "--batch-size", "8",
          "--calib-samples", "64", "--random-baseline", "4", "--eval-every", "1000", "--no-webui",
          "--population", "8", "--sample-size", "3", "--seed", "3", "--pick", "best"]


def _cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def _kill_when(cmd: list[str], ready, what: str) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds, and check it really was cut short."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"finished (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        assert time.time() < deadline, f"never reached {what}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _ledger_lines(run: Path) -> int:
    path = run / "trials.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory, glue_dir) -> Path:
    """The uninterrupted search (evolution, in-process), against which the resumed ones are compared."""
    run = tmp_path_factory.mktemp("faults") / "straight"
    _run(_cmd("supernet.search", *SEARCH, "--model", str(tiny_model_dir), "--glue-dir", str(glue_dir),
              "--max-steps", "150", "--checkpoint-every", "10", "--trials", "120", "--output-dir", str(run)))
    return run


def _same_search(a: Path, b: Path) -> None:
    wa = torch.load(a / "checkpoint.pt", weights_only=False)["model"]
    wb = torch.load(b / "checkpoint.pt", weights_only=False)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "final weights differ"
    assert (a / "trials.jsonl").read_text() == (b / "trials.jsonl").read_text(), "trials differ"
    assert Architecture.load(a / "arch_top1.json") == Architecture.load(b / "arch_top1.json")


def test_kill_during_supernet_training_then_resume(reference, tiny_model_dir, tmp_path, glue_dir):
    run = tmp_path / "killed"
    cmd = _cmd("supernet.search", *SEARCH, "--model", str(tiny_model_dir), "--glue-dir", str(glue_dir),
               "--max-steps", "150", "--checkpoint-every", "10", "--trials", "120", "--output-dir", str(run))
    _kill_when(cmd, lambda: (run / "checkpoint.pt").is_file(), "the first supernet checkpoint")
    assert not (run / "search_state.pt").exists(), "the kill came after training"
    _run(_cmd("supernet.search", "--resume", str(run), "--no-webui"))
    summary = json.loads((run / "search_summary.json").read_text())
    assert 0 < summary["resumed_from_step"] < 150
    _same_search(reference, run)


def test_kill_during_evolution_then_resume(reference, tiny_model_dir, tmp_path, glue_dir):
    run = tmp_path / "killed"
    cmd = _cmd("supernet.search", *SEARCH, "--model", str(tiny_model_dir), "--glue-dir", str(glue_dir),
               "--max-steps", "150", "--checkpoint-every", "10", "--trials", "120", "--output-dir", str(run))
    _kill_when(cmd, lambda: _ledger_lines(run) >= 30, "30 finished trials")
    done_before = _ledger_lines(run)
    assert done_before < 120
    _run(_cmd("supernet.search", "--resume", str(run), "--no-webui"))
    assert json.loads((run / "search_summary.json").read_text())["trials"] == 120
    _same_search(reference, run)


def test_kill_during_retrain_then_resume(tiny_model_dir, tmp_path, glue_dir):
    args = ["linear", "--task", "mrpc", "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir),
            "--max-train-samples", "320", "--max-eval-samples", "96", "--batch-size", "8", "--max-steps", "160",
            "--checkpoint-every", "10", "--seeds", "1,2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run(_cmd("retrain", *args, "--output-dir", str(straight)))
    _kill_when(_cmd("retrain", *args, "--output-dir", str(killed)),
               lambda: (killed / "linear" / "seed_1" / "checkpoint.pt").is_file(), "a mid-seed checkpoint")
    assert not (killed / "linear" / "seed_1" / "result.json").exists()
    _run(_cmd("retrain", *args, "--output-dir", str(killed), "--resume"))
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, killed))
    for seed in ("1", "2"):
        assert a["heads"]["linear"]["seeds"][seed]["history"] == b["heads"]["linear"]["seeds"][seed]["history"]
    assert not (killed / "linear" / "seed_1" / "checkpoint.pt").exists(), "a finished seed keeps no checkpoint"
    ma = torch.load(straight / "linear" / "model.pt", weights_only=False)["state_dict"]
    mb = torch.load(killed / "linear" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.mark.slow
def test_kill_during_webui_search_then_resume(tiny_model_dir, tmp_path, glue_dir):
    """The killed run's NNI manager survives it (own process group) and holds the port; --resume stops
    that manager, serves the remaining trials in a new experiment, and the ledger ends complete."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "killed"
    args = [a for a in SEARCH if a != "--no-webui"]
    _kill_when(_cmd("supernet.search", *args, "--model", str(tiny_model_dir), "--glue-dir", str(glue_dir),
                    "--max-steps", "10", "--trials", "10", "--port", str(port), "--output-dir", str(run)),
               lambda: _ledger_lines(run) >= 3, "3 web-UI trials")
    _run(_cmd("supernet.search", "--resume", str(run), "--port", str(port)))
    rows = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and len({json.dumps(r["choices"], sort_keys=True) for r in rows}) == 10
    assert json.loads((run / "search_summary.json").read_text())["trials"] == 10
