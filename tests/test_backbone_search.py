"""End to end on a backbone space: search with a cost penalty (tiny random BERT, real MRPC rows),
the Pareto front, then retrain of the exported backbone + head against the linear baseline."""
from __future__ import annotations

import json

from retrain.cli import main as retrain_main
from supernet.nn.arch import Architecture
from supernet.search import main as search_main

FAST = ["--task", "mrpc", "--max-train-samples", "96", "--max-eval-samples", "64", "--max-steps", "6",
        "--batch-size", "16", "--calib-samples", "32", "--random-baseline", "4", "--no-webui", "--trials", "16",
        "--population", "4", "--sample-size", "2", "--pick", "best"]


def test_backbone_search_exports_costs_front_and_a_retrainable_architecture(tmp_path, glue_dir, tiny_model_dir):
    run = tmp_path / "run"
    assert search_main([*FAST, "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir), "--space",
                        "tiny+ffn+conv", "--penalty", "params", "--penalty-weight", "0.5",
                        "--output-dir", str(run)]) == 0
    summary = json.loads((run / "search_summary.json").read_text())
    tops = [Architecture.load(run / f"arch_top{i}.json") for i in (1, 2, 3)]
    assert tops[0].space == "tiny+ffn+conv@2" and "enc_mixer_1" in tops[0].choices
    objectives = [a.metrics["objective"] for a in tops]
    assert objectives == sorted(objectives, reverse=True)
    ref = summary["reference_full_encoder_linear_head"]
    assert objectives[0] >= ref["objective"]  # the full model competes for the export: never exported below it
    reference = Architecture(tops[0].space, tops[0].search_space.reference())
    assert summary["best_is_reference"] == (tops[0].key() == reference.key())
    for a in tops:
        assert a.metrics["objective"] == a.metrics["f1"] - 0.5 * a.metrics["params"] / ref["params"]
    assert summary["measured"]["best"]["params"] == tops[0].metrics["params"]
    assert summary["measured"]["reference"]["params"] == ref["params"]
    assert summary["measured"]["best"]["dev_latency_ms"] > 0

    pareto = json.loads((run / "pareto.json").read_text())
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert pareto["candidates"] <= len(trials) == 16
    for cost in ("params", "latency_ms"):
        front = pareto["fronts"][cost]
        assert [p[cost] for p in front] == sorted(p[cost] for p in front)
        assert [p["f1"] for p in front] == sorted(p["f1"] for p in front) and len(set(p["f1"] for p in front)) == len(front)
        # nothing evaluated beats a front point on both axes
        for t in trials:
            assert not any(t["metrics"][cost] < p[cost] and t["metrics"]["f1"] > p["f1"] for p in front)
    assert (run / "pareto.png").stat().st_size > 1000

    out = tmp_path / "retrain"
    assert retrain_main([str(run / "arch_top1.json"), "--baseline", "linear", "--glue-dir", str(glue_dir),
                         "--model", str(tiny_model_dir), "--max-train-samples", "64", "--max-eval-samples", "32",
                         "--max-steps", "2", "--batch-size", "16", "--seeds", "1", "--output-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    heads = results["heads"]
    assert heads["arch_top1"]["parameters"] == tops[0].metrics["params"]
    assert heads["linear"]["parameters"] == ref["params"]  # full encoder + linear head, as the search counted it
    assert heads["arch_top1"]["dev_latency_ms"] > 0 and heads["linear"]["dev_latency_ms"] > 0
    assert "model params" in (out / "results.md").read_text()


def test_analyze_compares_the_pretrained_encoder_with_a_searched_backbone(tmp_path, glue_dir, tiny_model_dir):
    """A backbone run directory stands for the encoder of its arch_top1.json (FFN-dropped / conv
    layers with the supernet's weights); the embeddings layer is shared, so its CKA is 1 only
    if the supernet left it untouched (here: --lr-encoder 0)."""

    from supernet.analyze import main as analyze_main
    run = tmp_path / "run"
    assert search_main([*FAST, "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir), "--space", "tiny+ffn",
                        "--lr-encoder", "0", "--trials", "4", "--output-dir", str(run)]) == 0
    top = Architecture.load(run / "arch_top1.json")
    # layer 0 without its FFN, layer 1 with it (whatever the short search found)
    top = Architecture(top.space, {**top.choices, "enc_ffn_0": "skip", "enc_ffn_1": "keep"}, top.encoder, top.task)
    top.save(run / "arch_top1.json")
    out = tmp_path / "analysis"
    assert analyze_main(["--task", "sst2", "--glue-dir", str(glue_dir), "--model-a", str(tiny_model_dir),
                         "--model-b", str(run), "--rows", "60", "--output-dir", str(out)]) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert len(result["cka"]) == 3 and len(result["probe_accuracy"]["B"]) == 3  # embeddings + 2 layers
    assert abs(result["cka"][0][0] - 1.0) < 1e-9
    # layer 0 without its FFN computes something else (in a random tiny BERT the FFN's share is small)
    assert result["cka"][1][1] < 1.0 - 1e-6


def test_retrain_can_start_from_the_supernet(tmp_path, glue_dir, tiny_model_dir, capsys):
    """--init-from: the architecture starts from the supernet's weights (here kept by learning rate 0),
    the linear baseline from the pretrained encoder; a directory that is no run is refused."""
    import torch

    from supernet.nn.saved import load_model
    from supernet.train.supernet import load_supernet
    run = tmp_path / "run"
    assert search_main([*FAST, "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir), "--space",
                        "tiny+ffn+conv", "--trials", "4", "--output-dir", str(run)]) == 0
    common = ["--glue-dir", str(glue_dir), "--model", str(tiny_model_dir), "--max-train-samples", "32",
              "--max-eval-samples", "32", "--max-steps", "1", "--batch-size", "16", "--seeds", "1",
              "--lr-encoder", "0", "--lr-head", "0"]
    out = tmp_path / "retrain"
    assert retrain_main([str(run / "arch_top1.json"), "--baseline", "linear", "--init-from", str(run), *common,
                         "--output-dir", str(out)]) == 0
    heads = json.loads((out / "results.json").read_text())["heads"]
    assert heads["arch_top1"]["init"] == "supernet" and heads["linear"]["init"] == "pretrained encoder"
    supernet = load_supernet(run)
    top = Architecture.load(run / "arch_top1.json")
    expected = supernet.freeze(top.choices).state_dict()
    got = load_model(out / "arch_top1" / "model.pt").state_dict()
    weights = [k for k in expected if "running_" not in k and "num_batches" not in k]
    assert all(torch.equal(got[k], expected[k]) for k in weights)
    pretrained = load_model(out / "linear" / "model.pt").encoder.embeddings.word_embeddings.weight
    assert not torch.equal(pretrained, supernet.encoder.embeddings.word_embeddings.weight)  # the search trained it

    assert retrain_main([str(run / "arch_top1.json"), "--init-from", str(tmp_path), *common,
                         "--output-dir", str(tmp_path / "r2")]) == 2
    assert "is not a search run with a trained supernet" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
