"""Linear CKA and per-layer probes (supernet.analyze)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from supernet.analyze import main as analyze_main
from supernet.scoring.analysis import linear_cka, probe_accuracy


def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_scale():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 12, generator=g), torch.randn(300, 8, generator=g)
    y = y + x[:, :8]  # related, so the value is not trivial
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    assert linear_cka(x @ q * 3.7, y) == pytest.approx(linear_cka(x, y), abs=1e-6)  # float32 inputs
    assert 0.2 < linear_cka(x, y) < 0.99


def test_cka_of_independent_representations_is_small():
    g = torch.Generator().manual_seed(2)
    assert linear_cka(torch.randn(2000, 10, generator=g), torch.randn(2000, 10, generator=g)) < 0.05


def test_probe_separates_separable_classes_and_not_noise():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 5, generator=g)
    labels = (x[:, 0] > 0).long().numpy()
    train, test = np.arange(280), np.arange(280, 400)
    assert probe_accuracy(x, labels, train, test) > 0.97
    noise = torch.randn(400, 5, generator=g)
    assert probe_accuracy(noise, labels, train, test) < 0.7


def test_analyze_on_real_sst2_rows(tmp_path, glue_dir, tiny_model_dir):
    """MiniLM against a random 2-layer BERT on real SST-2 rows: MiniLM's layers carry the sentiment
    (probes well above the majority class), the random encoder's do not, and their top layers differ."""
    out = tmp_path / "analysis"
    assert analyze_main(["--task", "sst2", "--glue-dir", str(glue_dir), "--model-a", "minilm",
                         "--model-b", str(tiny_model_dir), "--rows", "600", "--max-length", "48",
                         "--output-dir", str(out)]) == 0
    result = json.loads((out / "analysis.json").read_text())
    cka = np.array(result["cka"])
    assert cka.shape == (7, 3) and result["cka_diagonal"] is None  # embeddings + 6 layers vs embeddings + 2
    assert ((0.0 <= cka) & (cka <= 1.0)).all() and cka[-1].max() < 0.5
    probes, majority = result["probe_accuracy"], result["majority"]
    assert len(probes["A"]) == 7 and len(probes["B"]) == 3
    assert max(probes["A"]) > majority + 0.15 and max(probes["B"]) < majority + 0.1
    assert (out / "cka.png").stat().st_size > 1000 and (out / "probes.png").stat().st_size > 1000


def test_analyze_refuses_a_regression_task(tmp_path, glue_dir, capsys):
    assert analyze_main(["--task", "stsb", "--glue-dir", str(glue_dir), "--model-b", "minilm",
                         "--output-dir", str(tmp_path / "a")]) == 2
    assert "regression task; probes need classes" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
