"""End-to-end search on real MRPC slices with the 2-layer MiniLM encoder and the tiny space."""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from supernet.nn.arch import Architecture
from supernet.search import main as search_main

from conftest import ROOT
from test_oneshot import token_space  # noqa: F401  (fixture)

SMALL = ["--task", "mrpc", "--num-hidden-layers", "2", "--space", "tiny", "--max-train-samples", "96",
         "--max-eval-samples", "64", "--max-steps", "4", "--batch-size", "16", "--calib-samples", "32",
         "--random-baseline", "8", "--eval-every", "2", "--checkpoint-every", "2", "--pick", "best"]


def _search(run_dir, *extra, glue_dir):
    return search_main([*SMALL, "--glue-dir", str(glue_dir), "--output-dir", str(run_dir), *extra])


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_headless_search_exports_valid_architectures(tmp_path, glue_dir, strategy, token_space):
    from test_oneshot import retrains
    run = tmp_path / "run"
    assert _search(run, "--strategy", strategy, "--no-webui", "--trials", "12", "--population", "4",
                   "--sample-size", "2", "--space", token_space, glue_dir=glue_dir) == 0
    assert retrains(run / "arch_top1.json", tmp_path / "retrain", glue_dir).tokens is not None
    summary = json.loads((run / "search_summary.json").read_text())
    assert summary["trials"] == 12 and summary["strategy"] == strategy
    tops = [Architecture.load(run / f"arch_top{i}.json") for i in (1, 2, 3)]
    assert [a.space for a in tops] == [token_space] * 3 and len({a.key() for a in tops}) == 3
    assert all(a.choices["tok_kind"] in ("conv", "attention") for a in tops)
    scores = [a.metrics["f1"] for a in tops]
    assert scores == sorted(scores, reverse=True) and summary["best"]["f1"] == scores[0]
    # the export is the best candidate the strategy scored (re-scored, it keeps its score)
    from strategies.trials import read_ledger
    ledger = read_ledger(run / "trials.jsonl")
    assert len(ledger) == 12 and summary["best"]["f1"] == max(t["metrics"]["f1"] for t in ledger)
    assert summary["parameters"]["best_subnet"] < summary["parameters"]["supernet"]
    assert (run / "trajectory.png").stat().st_size > 1000
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_evolution_is_deterministic(tmp_path, glue_dir):
    best = []
    for name in ("a", "b"):
        assert _search(tmp_path / name, "--no-webui", "--trials", "10", "--population", "4", "--sample-size", "2",
                       glue_dir=glue_dir) == 0
        best.append(Architecture.load(tmp_path / name / "arch_top1.json"))
    assert best[0] == best[1]


def test_resume_after_interruption_gives_the_same_weights(tmp_path, glue_dir, monkeypatch):
    import supernet.train.loop as loop
    assert _search(tmp_path / "straight", "--no-webui", "--trials", "2", "--population", "2", "--sample-size", "1",
                   glue_dir=glue_dir) == 0

    real_save = loop.save_checkpoint

    def save_then_die(*args):
        real_save(*args)
        raise KeyboardInterrupt  # a kill right after the step-2 checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "killed", "--no-webui", "--trials", "2", "--population", "2", "--sample-size", "1",
                glue_dir=glue_dir)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"] == 2
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert search_main(["--resume", str(tmp_path / "killed"), "--no-webui"]) == 0
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)
    assert b["step"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_existing_run_dir_is_never_overwritten(tmp_path, glue_dir, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    assert _search(run, "--no-webui", glue_dir=glue_dir) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("args, message", [
    (["--task", "glue9"], "unknown task 'glue9'"),
    (["--space", "huge"], "unknown space 'huge'"),
    (["--sample-size", "50", "--population", "4"], "--sample-size must be in"),
    (["--concurrency", "5", "--population", "4"], "--concurrency 5 > --population 4: evolution needs a finished"),
    (["--model", "/"], "is not a model directory"),
    (["--resume", "/nonexistent/run"], "no run_config.json there (not a search run directory)"),
])
def test_bad_cli_input_is_one_line(tmp_path, capsys, args, message, glue_dir):
    code = search_main(["--glue-dir", str(glue_dir), "--output-dir", str(tmp_path / "r"), "--no-webui", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def _get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{path}", timeout=5) as r:
        return json.loads(r.read())


def test_webui_shows_every_trial_with_its_metric(tmp_path, glue_dir):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "supernet.search", *SMALL, "--glue-dir", str(glue_dir),
                             "--output-dir", str(run), "--trials", "4", "--population", "2", "--sample-size", "1",
                             "--concurrency", "2", "--port", str(port), "--webui-linger", "15"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    jobs, deadline, bound = [], time.time() + 240, set()
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                jobs = _get(port, "trial-jobs")
                bound |= listening(port)
            except (OSError, ValueError):  # manager not up yet, or a partial answer
                pass
            if len([j for j in jobs if j.get("finalMetricData")]) == 4:
                break
            time.sleep(1)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}" in out
    assert bound == {"127.0.0.1"}, bound  # NNI's manager, unauthenticated, on loopback only (nni_compat item 6)
    finals = [json.loads(json.loads(j["finalMetricData"][0]["data"])) for j in jobs if j.get("finalMetricData")]
    assert len(finals) == 4 and all(0.0 <= m["default"] <= 1.0 and "f1" in m for m in finals)
    # what the web UI shows for a trial (its sample) is what produced its metric, two trials at once (nni_compat 7)
    from supernet.scoring.candidates import CandidateScorer
    scorer = CandidateScorer.from_file(run / "search_state.pt")
    for job, final in zip(jobs, finals):
        sample = json.loads(job["hyperParameters"][0])["parameters"]["sample"]
        assert scorer.score(sample)["f1"] == pytest.approx(final["default"])
    summary = json.loads((run / "search_summary.json").read_text())
    assert summary["webui"] is True and summary["trials"] == 4
    expected = {json.dumps(json.loads(j["hyperParameters"][0])["parameters"]["sample"], sort_keys=True): f
                for j, f in zip(jobs, finals)}
    _view_serves_the_trials(run, expected, tmp_path)
    _view_serves_the_trials(run, expected, tmp_path, host="0.0.0.0")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> set[str]:
    """The addresses a socket listens on at ``port`` (the kernel's own table: what ``ss -ltn`` reads)."""
    import ipaddress
    out = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order words
                ip = ipaddress.ip_address(raw)
                out.add(str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip))
    return out


def _view_serves_the_trials(run, expected: dict, cwd, host: str | None = None) -> None:
    """``python -m supernet.view`` reopens the finished run (from another directory) and its REST API
    lists every trial with the sample and metric it had during the search; it listens on loopback only
    unless ``--host`` says otherwise (and then warns that the API has no authentication)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "supernet.view", str(run), "--port", str(port),
                             *(["--host", host] if host else [])], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    jobs, deadline, bound = [], time.time() + 120, set()
    try:
        while time.time() < deadline and proc.poll() is None and len(jobs) < len(expected):
            try:
                jobs = [j for j in _get(port, "trial-jobs") if j.get("finalMetricData")]
                bound |= listening(port)
            except (OSError, ValueError):
                time.sleep(1)
    finally:
        proc.terminate()  # SIGTERM: the view stops NNI's manager as on Ctrl-C
        out, _ = proc.communicate(timeout=60)
    assert len(jobs) == len(expected), out
    assert bound == ({"0.0.0.0"} if host == "0.0.0.0" else {"127.0.0.1"}), bound
    assert ("REST API has no authentication" in out) == (host == "0.0.0.0")
    for job in jobs:
        sample = json.loads(job["hyperParameters"][0])["parameters"]["sample"]
        metric = json.loads(json.loads(job["finalMetricData"][0]["data"]))
        assert metric == expected[json.dumps(sample, sort_keys=True)]
    assert _stops_answering(port, within=30), "NNI's manager outlived the view"


def _stops_answering(port: int, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            _get(port, "check-status")
        except OSError:
            return True
        time.sleep(0.5)
    return False


def test_a_port_just_released_is_free_but_a_listening_one_is_not():
    """A server that closed with open connections leaves TIME_WAIT behind; NNI's manager can bind
    over it, so the port check must not call it busy (seen on resume after a killed web-UI run)."""
    import socket

    from supernet.core.webui import check_port_free
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    with pytest.raises(ValueError, match=f"port {port} is already in use"):
        check_port_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection goes to TIME_WAIT
    client.close()
    server.close()
    check_port_free(port)


def test_evolution_dedups_networks_not_label_dicts(tmp_path):
    """A mutant that changes only labels its head does not read is the same network: NNI must retry
    it, not score it again (in the paper space most mutations would otherwise be such repeats)."""
    import random

    from nni.nas.strategy.utils import DuplicationError

    from strategies.config import SearchConfig
    from strategies.registry import get_strategy
    from supernet.nn.space import get_space

    space = get_space("paper")
    a = space.sample(random.Random(0))
    a = {**a, "depth": 1, "tok_kind": "none"}
    unread = {**a, "width_3": space.width[-1] if a["width_3"] != space.width[-1] else space.width[0],
              "tok_heads": 16 if a["tok_heads"] != 16 else 1}
    read = {**a, "width_0": space.width[-1] if a["width_0"] != space.width[-1] else space.width[0]}
    strategy = get_strategy("evolution").build_search(SearchConfig(strategy="evolution"), 0, tmp_path / "state.pt",
                                                       None, "paper")
    assert strategy._dedup_helper.dedup(a)
    with pytest.raises(DuplicationError):
        strategy._dedup_helper.dedup(unread)
    assert strategy._dedup_helper.dedup(read)
