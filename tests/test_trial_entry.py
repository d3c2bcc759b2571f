"""The light web-UI trial: NNI 3.0's parameter record as the engine sends it, and the scoring server."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from multiprocessing.connection import Client

import pytest
import torch

from strategies.trial_entry import candidate
from strategies.trials import HeadChoices, ScoringServer, evaluate_candidate, read_ledger
from supernet.nn.head import SuperHead
from supernet.nn.ops import POOLINGS
from supernet.nn.space import get_space
from supernet.scoring.candidates import CandidateScorer, save_search_state
from supernet.train.frozen import EncoderCache

from conftest import ROOT


@pytest.fixture()
def state_path(tmp_path):
    space = get_space("tiny")
    head = SuperHead(space, 32, 2)
    g = torch.Generator().manual_seed(0)
    hidden, mask = torch.randn(48, 5, 32, generator=g), torch.ones(48, 5, dtype=torch.long)
    feats = EncoderCache.of({p: POOLINGS[p](hidden, mask, None) for p in space.pool}, hidden, mask)
    labels = (torch.arange(48) % 2).numpy()
    path = tmp_path / "search_state.pt"
    save_search_state(path, head, ("f1", "accuracy"), feats, labels, feats)
    return path


def test_light_entry_reads_nni_parameter_record(state_path, tmp_path):
    """What NNI's training-service engine sends (nni.dump of the record around a frozen model space)."""
    import nni
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.space import SimplifiedModelSpace
    space = SimplifiedModelSpace.from_model(
        HeadChoices("tiny"), FunctionalEvaluator(evaluate_candidate, state_path=str(state_path), ledger="l",
                                                 server_host="127.0.0.1", server_port=1234, server_key="k"))
    sample = get_space("tiny").sample(random.Random(3))
    record = json.loads(nni.dump({"parameter_id": 7, "parameter_source": "algorithm",
                                  "parameters": space.freeze(sample), "parameter_index": 0}))
    assert candidate(record) == (sample, "127.0.0.1", 1234, "k")


def test_scoring_server_scores_once_and_recalls(state_path, tmp_path):
    ledger = tmp_path / "trials.jsonl"
    server = ScoringServer(state_path, ledger)
    sample = get_space("tiny").sample(random.Random(1))
    try:
        answers = []
        for _ in range(2):
            with Client((server.host, server.port), authkey=server.key.encode()) as conn:
                conn.send(sample)
                answers.append(conn.recv())
    finally:
        server.close()
    expected = CandidateScorer.from_file(state_path).score(sample)
    assert answers[0] == answers[1] == {"default": expected["f1"], **expected}
    assert read_ledger(ledger) == [{"choices": sample, "metrics": expected}]  # the repeat was recalled


def test_scoring_server_refuses_a_wrong_key(state_path, tmp_path):
    from multiprocessing import AuthenticationError
    server = ScoringServer(state_path, tmp_path / "trials.jsonl")
    try:
        with pytest.raises(AuthenticationError):
            Client((server.host, server.port), authkey=b"not the key")
    finally:
        server.close()


def test_light_entry_imports_neither_torch_nor_nni():
    code = ("import sys, strategies.trial_entry; "
            "print(sorted(m for m in ('torch', 'nni', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ledger_sees_lines_appended_by_another_process(state_path, tmp_path):
    """The ledger is parsed once per process, but a line another process appended is still recalled."""
    from strategies.trials import Ledger
    scorer = CandidateScorer.from_file(state_path)
    space = get_space("tiny")
    ours, theirs = space.sample(random.Random(5)), space.sample(random.Random(6))
    assert ours != theirs
    ledger = Ledger(tmp_path / "trials.jsonl")
    ledger.score_or_recall(scorer, ours)
    with open(tmp_path / "trials.jsonl", "a") as f:  # as a concurrent trial process writes
        f.write(json.dumps({"choices": theirs, "metrics": {"f1": -1.0, "accuracy": -1.0}}) + "\n")
    assert ledger.score_or_recall(scorer, theirs) == {"default": -1.0, "f1": -1.0, "accuracy": -1.0}
    assert len(read_ledger(tmp_path / "trials.jsonl")) == 2  # recalled, not scored and appended again
