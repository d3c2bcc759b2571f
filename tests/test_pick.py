"""Never worse than the linear head (issue #31): the incumbent rule, re-ranking, k-fold on small splits."""
from __future__ import annotations

import json

import numpy as np
import torch
import pytest

from strategies.pick import Standalone, candidates, decide, incumbents, paired_bootstrap
from supernet.nn.arch import Architecture
from supernet.nn.space import get_space
from supernet.search import main as search_main

RUN = ["--task", "mrpc", "--num-hidden-layers", "2", "--space", "tiny", "--max-train-samples", "120",
       "--max-eval-samples", "32", "--max-steps", "4", "--batch-size", "16", "--calib-samples", "32",
       "--random-baseline", "4", "--no-webui", "--trials", "6", "--population", "3", "--sample-size", "2",
       "--freeze-encoder", "--epochs", "2", "--rerank-k", "3"]


def _logits(correct: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-class logits that are right where ``correct``."""
    pred = np.where(correct, labels, 1 - labels)
    return np.stack([1.0 - pred, pred.astype(float)], 1)


def _cands(labels, incumbent_right, searched_right):
    arch = Architecture("tiny", get_space("tiny").reference())
    inc = Standalone("linear (mean pool)", arch, True, outputs=_logits(incumbent_right, labels))
    top = Standalone("searched #1", arch, False, outputs=_logits(searched_right, labels))
    for c in (inc, top):
        c.score = float((c.outputs.argmax(1) == labels).mean())
    return [inc, top]


def test_when_heads_tie_the_incumbent_is_kept():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    right = rng.random(300) < 0.8
    lucky = right.copy()  # right on 10 rows the incumbent misses, wrong on 6 it gets: a net lead of 4 rows in
    lucky[np.flatnonzero(~right)[:10]] = True  # 300, as a search finds by luck
    lucky[np.flatnonzero(right)[:6]] = False
    decision, winner = decide(_cands(labels, right, lucky), labels, ("accuracy",), "300 rows")
    assert winner.incumbent and not decision["searched_kept"]
    assert decision["vs_incumbent"]["ci95"][0] <= 0 < decision["vs_incumbent"]["delta"]
    assert decision["line"].startswith("kept linear (mean pool): best searched head (searched #1) +")


def test_a_clearly_better_head_is_returned():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    decision, winner = decide(_cands(labels, rng.random(300) < 0.6, rng.random(300) < 0.9), labels, ("accuracy",),
                              "300 rows")
    assert not winner.incumbent and decision["searched_kept"] and decision["vs_incumbent"]["ci95"][0] > 0


def test_when_the_search_offers_only_incumbents_the_best_incumbent_is_returned_and_the_line_says_why():
    """BO-HB's best can be an incumbent itself (STS-B, 500 rows: the cosine): no searched head is left."""
    labels = np.random.default_rng(2).integers(0, 2, 300)
    worse, better = _cands(labels, np.arange(300) % 3 > 0, np.arange(300) % 5 > 0)
    better.name, better.incumbent = "cosine (mean pool)", True
    decision, winner = decide([worse, better], labels, ("accuracy",), "300 rows")
    assert winner is better and decision["returned"] == "cosine (mean pool)"
    assert decision["line"] == ("returned cosine (mean pool): the best incumbent on 300 rows; every head the search "
                                "offered is an incumbent")


def test_the_bootstrap_is_paired():
    """Two heads wrong on the same rows tie exactly; an unpaired interval would not know it."""
    labels = np.arange(100) % 2
    out = _logits(np.arange(100) % 3 > 0, labels)
    test = paired_bootstrap(out, out.copy(), labels, ("f1",))
    assert test["delta"] == 0 and test["ci95"] == [0.0, 0.0]


def test_incumbents_and_candidates():
    space = get_space("tiny-pairs")
    assert list(incumbents(space)) == ["linear (mean pool)", "cosine (mean pool)"]
    assert list(incumbents(get_space("paper"))) == ["linear (pooler [CLS])", "linear (mean pool)"]
    mean_linear = Architecture("tiny-pairs", incumbents(space)["linear (mean pool)"])
    other = Architecture("tiny-pairs", space.canonical({**space.reference(), "pool": "cls", "depth": 1}))
    cands = candidates(space, [mean_linear, other, other], 8, {})
    assert [c.name for c in cands] == ["linear (mean pool)", "cosine (mean pool)", "searched #1"]


def test_safe_pick_in_a_search_reranks_by_kfold_below_200_rows_and_charges_its_seconds(tmp_path, glue_dir):
    run = tmp_path / "run"
    assert search_main(["--glue-dir", str(glue_dir), *RUN, "--output-dir", str(run)]) == 0
    s = json.loads((run / "search_summary.json").read_text())
    pick = s["pick"]
    assert pick["rule"] == "safe" and pick["scored_on"] == "5-fold cross-validation over the 120 training rows"
    flags = [c["incumbent"] for c in pick["standalone"]]
    assert flags[0] and not any(flags[1:]) and len(flags) == 4  # tiny: the mean-pool linear head, then 3 searched
    assert s["cpu_seconds"]["pick"] > 0 and pick["cpu_seconds"] > 0
    top1 = json.loads((run / "arch_top1.json").read_text())
    assert top1["pick"]["returned"] == pick["returned"] and top1["pick"]["line"] == pick["line"]
    returned = next(c for c in pick["standalone"] if c["name"] == pick["returned"])
    assert top1["choices"] == returned["choices"]
    # random sampling is set against the search's best, not against the pick (here an incumbent)
    assert pick["returned"] != "searched #1" and s["best"] != s["search_best"]
    random = s["random_subnets"]
    assert random["best_minus_best"] == pytest.approx(s["search_best"][s["metric"]] - random["best"])


def test_pick_best_keeps_the_supernets_top1(tmp_path, glue_dir):
    run = tmp_path / "run"
    assert search_main(["--glue-dir", str(glue_dir), *RUN, "--pick", "best", "--output-dir", str(run)]) == 0
    s = json.loads((run / "search_summary.json").read_text())
    top1 = json.loads((run / "arch_top1.json").read_text())
    assert s["pick"]["rule"] == "best" and top1["choices"] == s["search_best_choices"]
    assert s["best"] == s["search_best"] and s["cpu_seconds"]["pick"] < 1.0  # nothing re-trained


@pytest.mark.parametrize("argv, message", [(["--rerank-k", "0"], "--rerank-k must be >= 1"),
                                           (["--folds", "1"], "--folds >= 2")])
def test_pick_settings_are_checked(capsys, tmp_path, glue_dir, argv, message):
    assert search_main(["--glue-dir", str(glue_dir), *RUN, *argv, "--output-dir", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_under_full_fine_tuning_the_pick_trains_heads_on_the_supernets_encoder(tmp_path, glue_dir, monkeypatch):
    """--rerank-on supernet (auto's choice in a head space): no re-ranked head fine-tunes the encoder; every
    one trains on the supernet's fine-tuned encoder's outputs (not the pretrained encoder's), scored on the
    selection split even below 200 rows (that encoder trained on every other training row)."""
    import strategies.pick as pick
    from supernet.nn.encoder import EncoderConfig
    from supernet.nn.reading import Needs
    from supernet.train.frozen import frozen_caches
    tuned, fits = [], []
    real_tune, real_fit = pick.fine_tune, pick._converged
    monkeypatch.setattr(pick, "fine_tune", lambda model, spec, train, scored, pad, cfg, *a, caches=None, **k: (
        tuned.append(cfg.freeze_encoder and caches is not None), real_tune(model, spec, train, scored, pad, cfg, *a,
                                                                           caches=caches, **k))[1])
    monkeypatch.setattr(pick, "_converged", lambda cand, train, scored, caches, spec: (
        fits.append((train, caches[0])), real_fit(cand, train, scored, caches, spec))[1])
    full_ft = [a for a in RUN if a != "--freeze-encoder"]
    run = tmp_path / "run"
    assert search_main(["--glue-dir", str(glue_dir), *full_ft, "--output-dir", str(run)]) == 0
    s = json.loads((run / "search_summary.json").read_text())
    assert s["pick"]["scored_on"] == ("the selection split (12 rows), heads trained on the supernet's fine-tuned "
                                      "encoder, frozen")
    assert tuned and all(tuned) and len(fits) == 1  # 3 searched heads; tiny's one incumbent (mean pool) fitted
    train, cache = fits[0]
    pretrained = frozen_caches(EncoderConfig(num_hidden_layers=2).load(), (train,), 0, Needs(pools=("mean",)))[0]
    assert cache.pooled["mean"].shape == pretrained.pooled["mean"].shape
    assert not torch.allclose(cache.pooled["mean"], pretrained.pooled["mean"], atol=1e-4)  # the fine-tuned one


def test_rerank_on_settings(tmp_path, glue_dir, capsys):
    """--rerank-on supernet is refused in a backbone space (each candidate has its own encoder there), before
    anything is written; a stored full fine-tuning search from before the flag resumes as it ran (pretrained)."""
    from strategies.pipeline import SearchJob
    out = tmp_path / "r"
    assert search_main(["--glue-dir", str(glue_dir), *[a for a in RUN if a != "--freeze-encoder"],
                        "--space", "tiny+ffn@2", "--rerank-on", "supernet", "--output-dir", str(out)]) == 2
    assert "--rerank-on supernet trains every head on one encoder" in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory was claimed (nothing trained)
    old = {part: {} for part in ("encoder", "data", "train", "search", "oneshot", "pick")}
    for frozen, expected in ((False, "pretrained"), (True, "auto")):
        old["train"] = {"freeze_encoder": frozen}
        (tmp_path / "run_config.json").write_text(json.dumps(old))
        assert SearchJob.load(tmp_path).pick.rerank_on == expected


def test_compare_chooses_its_baseline_from_incumbents_trained_as_the_linear_arms_are():
    """The Δ baseline is the linear arm better on the selection split. Incumbents fitted on the supernet's
    fine-tuned encoder are not those arms (they fine-tune from the pretrained encoder): BO-HB-safe's are."""
    from types import SimpleNamespace

    from retrain.comparison import selection_scores
    from strategies.pick import SUPERNET_ENCODER

    def decision(scored_on, pooler, mean):
        return {"scored_on": scored_on, "standalone": [
            {"name": "linear (pooler [CLS])", "score": pooler}, {"name": "linear (mean pool)", "score": mean},
            {"name": "searched #1", "score": 0.99}]}
    results = {"heads": {}}
    bohb = decision("the selection split (300 rows)", 0.7, 0.6)
    own = SimpleNamespace(summary={"pick": decision("the selection split (300 rows)", 0.5, 0.8)})
    assert selection_scores(own, results, bohb) == {"linear": 0.5, "linear_mean": 0.8}
    on_supernet = SimpleNamespace(summary={"pick": decision(f"the selection split (300 rows), heads trained on "
                                                            f"{SUPERNET_ENCODER}, frozen", 0.5, 0.8)})
    assert selection_scores(on_supernet, results, bohb) == {"linear": 0.7, "linear_mean": 0.6}
    assert selection_scores(on_supernet, results, None) == {}
