"""The comparison protocol (issue #18): three roles for the data, distinct seeds, a real BO-HB."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from supernet.data.sources import DataConfig
from supernet.data.splits import carve_validation, load_task
from supernet.nn.encoder import load_tokenizer


@pytest.mark.parametrize("regression", [False, True])
def test_validation_is_carved_disjoint_stratified_and_fixed(regression):
    rng = np.random.default_rng(1)
    labels = rng.random(1000) * 5 if regression else (rng.random(1000) < 0.3).astype(np.int64)
    fit, val = carve_validation(labels, 0.1, regression)
    assert len(np.intersect1d(fit, val)) == 0 and sorted(np.concatenate([fit, val]).tolist()) == list(range(1000))
    assert len(val) == pytest.approx(100, abs=5)
    groups = (np.searchsorted(np.quantile(labels, np.linspace(0, 1, 11)[1:-1]), labels, side="right") if regression
              else labels)  # a class, or a decile of the score: each keeps its share to within one row
    for g in np.unique(groups):
        assert abs(np.sum(groups[val] == g) - 0.1 * np.sum(groups == g)) <= 1, g
    fit2, val2 = carve_validation(labels, 0.1, regression)
    assert (val == val2).all()  # a fixed seed: the same split in every run, whatever the run's seeds


def test_task_data_roles_on_real_mrpc(glue_dir):
    task = load_task(DataConfig(task="mrpc", glue_dir=str(glue_dir)), load_tokenizer(None))
    assert len(task.train) == 3668 and len(task.dev) == 408  # the report split is the official dev set
    assert len(task.fit) + len(task.val) == len(task.train) and len(task.val) == pytest.approx(367, abs=2)
    fit_rows = {tuple(x) for x in task.fit.input_ids}
    assert not any(tuple(x) in fit_rows for x in task.val.input_ids[:50])


def test_a_small_selection_split_is_warned_about_and_a_large_one_is_not(glue_dir):
    """50 selection rows (500 training rows, the default 0.1) get the warning; 300 do not."""
    import warnings

    from supernet.data.splits import SmallSelectionWarning
    with pytest.warns(SmallSelectionWarning, match="only 50 rows"):
        load_task(DataConfig(task="sst2", glue_dir=str(glue_dir), max_train_samples=500), load_tokenizer(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSelectionWarning)
        task = load_task(DataConfig(task="sst2", glue_dir=str(glue_dir), max_train_samples=3000), load_tokenizer(None))
    assert len(task.val) == 300


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        w.writerows(rows)
    return path


def _sst2(glue_dir, split, n):
    with open(glue_dir / "SST-2" / f"{split}.tsv") as f:
        return [line.rstrip("\n").split("\t") for line in f][1:n + 1]


def test_the_search_never_reads_the_report_split(tmp_path, glue_dir):
    """Corrupting the report split's labels leaves the search's output unchanged, bit for bit."""
    from supernet.search import main as search_main
    train = _write(tmp_path / "train.csv", _sst2(glue_dir, "train", 160))
    dev = _sst2(glue_dir, "dev", 64)
    outputs = []
    for name, rows in (("clean", dev), ("corrupt", [(t, str(1 - int(y))) for t, y in dev])):
        run = tmp_path / name
        dev_file = _write(tmp_path / f"dev-{name}.csv", rows)
        assert search_main(["--train-file", str(train), "--dev-file", str(dev_file), "--text-columns", "sentence",
                            "--num-hidden-layers", "2", "--space", "tiny", "--max-steps", "4", "--batch-size", "16",
                            "--calib-samples", "16", "--random-baseline", "4", "--trials", "5", "--population", "2",
                            "--sample-size", "1", "--no-webui", "--output-dir", str(run)]) == 0
        summary = json.loads((run / "search_summary.json").read_text())
        outputs.append(((run / "arch_top1.json").read_text(), (run / "trials.jsonl").read_text(), summary["best"],
                        summary["random_subnets"]))
    assert outputs[0] == outputs[1]


def test_compare_refuses_a_selection_seed_among_the_report_seeds(tmp_path, glue_dir, capsys):
    from retrain.compare import main as compare_main
    assert compare_main(["--task", "mrpc", "--glue-dir", str(glue_dir), "--seeds", "0,1,2",
                         "--output-dir", str(tmp_path / "c")]) == 2
    assert "--selection-seed 0 is one of the report --seeds [0, 1, 2]" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_bohb_trials_after_the_startup_are_proposed_by_the_model(tmp_path, monkeypatch):
    """After ``startup`` finished trials TPE samples from its model: its random sampler is no longer
    called, and each trial's ``proposed_by`` says which it was."""
    import optuna

    from retrain.bohb import BOHBConfig, make_study, suggest_choices
    from supernet.nn.space import get_space
    space = get_space("tiny")
    study = make_study(BOHBConfig(trials=12, startup=4, seed=0), tmp_path)
    random_calls: list[int] = []
    real = optuna.samplers.RandomSampler.sample_independent

    def counting(self, study_, trial, name, dist):
        random_calls.append(trial.number)
        return real(self, study_, trial, name, dist)
    monkeypatch.setattr(optuna.samplers.RandomSampler, "sample_independent", counting)

    def objective(trial):
        choices = suggest_choices(trial, space)
        for rung in (1, 2, 3):
            trial.report(float(choices["depth"] == 2) + 0.1 * rung, rung)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(choices["depth"] == 2)
    study.optimize(objective, n_trials=12)
    assert set(random_calls) == {0, 1, 2, 3}  # the start-up trials only
    assert sum(t.state.name == "PRUNED" for t in study.trials) >= 1  # successive halving prunes
    depth2 = [t.params["depth"] == 2 for t in study.trials[4:]]
    assert sum(depth2) >= 5  # and the model learned where the reward is (random: 1/3 of 8)


def test_compare_protocol_fields_and_seeds(tmp_path, glue_dir):
    """A whole (tiny) comparison: every arm, the protocol recorded, selection and report seeds apart."""
    from retrain.compare import main as compare_main
    out = tmp_path / "cmp"
    assert compare_main(["--task", "mrpc", "--glue-dir", str(glue_dir), "--num-hidden-layers", "2", "--space", "tiny",
                         "--max-train-samples", "96", "--max-eval-samples", "32", "--batch-size", "16", "--epochs", "1",
                         "--seeds", "1,2", "--search-trials", "4", "--bohb-trials", "3", "--bohb-startup", "1",
                         "--freeze-encoder", "--rerank-k", "2", "--output-dir", str(out)]) == 0
    cmp = json.loads((out / "compare.json").read_text())
    rows = [n for n in cmp["rows"] if n != "weight_sharing_top1"]  # present where the safe pick changed the head
    assert rows == ["linear", "linear_mean", "weight_sharing", "bo_hyperband", "bo_hyperband_safe", "random_head",
                    "linear_probe", "cosine"]
    summary = json.loads((out / "weight_sharing" / "search_summary.json").read_text())
    assert summary["pick"]["rule"] == "safe" and "fold cross-validation" in summary["pick"]["scored_on"]
    assert cmp["baseline_chosen_on"] == "selection split"
    assert ("weight_sharing_top1" in cmp["rows"]) == (summary["pick"]["returned"] != "searched #1")
    assert cmp["search_best_inherited"] == summary["search_best"]  # the search's best, not the pick
    assert cmp["rows"]["bo_hyperband_safe"]["search"]["cpu_seconds"] > cmp["rows"]["bo_hyperband"]["search"][
        "cpu_seconds"]  # the rule's re-ranking is charged
    fitted = {n: cmp["rows"][n] for n in ("linear_probe", "cosine")}  # deterministic: one score for every seed
    assert all(len(set(r["per_seed"].values())) == 1 and r["std"] == 0 for r in fitted.values())
    assert fitted["cosine"]["head_parameters"] == 0 and fitted["linear_probe"]["architecture"]["l2"] > 0
    p = cmp["protocol"]
    assert p["selection_seed"] == 0 and p["report_seeds"] == [1, 2] and p["regime"] == "frozen encoder"
    assert "validation" in p["selection_split"] and "official dev set (32 rows)" == p["report_split"]
    assert all(set(r["per_seed"]) == {"1", "2"} for r in cmp["rows"].values())
    bo = json.loads((out / "bo_hyperband" / "trials.json").read_text())
    assert [t["proposed_by"] for t in bo["trials"] if t["duplicate_of"] is None] == ["random", "model", "model"]
    assert bo["distinct_heads"] == 3 and len(bo["trials"]) == 3 + bo["repeats"]
    ws = json.loads((out / "weight_sharing" / "run_config.json").read_text())
    assert ws["train"]["seed"] == 0 and "seed" not in ws["search"] and ws["train"]["freeze_encoder"]
    base = cmp["rows"][cmp["baseline"]]["per_seed"]
    for name, row in cmp["rows"].items():  # paired differences are per seed against the stronger linear head
        if row["vs_linear"] is not None:
            assert row["vs_linear"]["mean"] == pytest.approx(np.mean([row["per_seed"][s] - base[s] for s in base]))


def test_majority_predictor_is_measured_on_the_selection_split():
    """The summary's majority-class baseline and predicted-class share: a constant head is caught."""
    import numpy as np
    import torch

    from supernet.nn.head import SuperHead
    from supernet.nn.space import get_space
    from supernet.scoring.candidates import CandidateScorer
    from supernet.train.frozen import EncoderCache

    space = get_space("tiny")
    head = SuperHead(space, 8, 2)
    labels = np.array([1, 1, 1, 0])
    scorer = CandidateScorer.__new__(CandidateScorer)
    scorer.space, scorer.metrics, scorer.dev_labels = space, ("accuracy",), labels
    assert scorer.majority_scores() == {"accuracy": 0.75}
    scorer.head, scorer.supernet, scorer.recalibrate = head, None, False
    pooled = {p: torch.randn(4, 8) for p in ("cls", "mean", "max", "pooler")}
    scorer.dev = scorer.calib = EncoderCache.of(pooled)
    linear = {**space.reference(), "pool": "mean"}
    with torch.no_grad():
        head.classifier.linear.weight.zero_()
        head.classifier.linear.bias.copy_(torch.tensor([0.0, 1.0]))  # always class 1
    assert scorer.predicted_class_share(linear) == 1.0


def _fake_bohb_task(monkeypatch, scores: dict[str, float]):
    """run_bohb on a stand-in task whose 'fine-tune' scores a head by its pooling (no model trained):
    returns the list of heads actually trained."""
    from types import SimpleNamespace

    import retrain.bohb as bohb
    import supernet.nn.model
    trained: list[dict] = []
    monkeypatch.setattr(supernet.nn.model, "build_model", lambda arch, encoder, n: arch)

    def fine_tune(arch, spec, fit, val, pad_id, cfg, seed, log_dir, desc, eval_every, on_eval, caches):
        # BO-HB trains on the fit rows and scores on the selection rows: never train + dev
        assert fit is task.fit and val is task.val, "a BO-HB trial read another split"
        trained.append(dict(arch.choices))
        for step in range(eval_every, cfg.total_steps(len(fit)) + 1, eval_every):
            on_eval(step, {"accuracy": scores[arch.choices["pool"]] + 0.01 * step})
        return {"metrics": {"accuracy": scores[arch.choices["pool"]] + 0.01 * step}}
    monkeypatch.setattr(bohb, "fine_tune", fine_tune)
    spec = SimpleNamespace(main_metric="accuracy", num_labels=2)
    task = SimpleNamespace(spec=spec, fit=list(range(32)), val=list(range(8)), pad_id=0)
    return task, trained


def test_bohb_trains_each_head_once_and_counts_distinct_heads(tmp_path, monkeypatch, capsys):
    """TPE repeats proposals; a repeated head is answered from its earlier trial (same state, same
    learning curve, no cost) and does not count toward --bohb-trials."""
    from dataclasses import replace

    from retrain.bohb import MAX_PROPOSALS, BOHBConfig, run_bohb
    from retrain.run import RetrainConfig
    from supernet.nn.space import PRESETS
    # two heads only (cls or mean pooling, no layers, no token block): repeats are certain
    space = replace(PRESETS["tiny"], name="two-heads", depth=(0,), tok_kind=("none",))
    monkeypatch.setitem(PRESETS, space.name, space)
    task, trained = _fake_bohb_task(monkeypatch, {"cls": 0.5, "mean": 0.8})
    ft = RetrainConfig(epochs=3, batch_size=8, seeds=(1,))
    s = run_bohb(space, task, BOHBConfig(trials=3, startup=1), ft, lambda: None, {}, tmp_path)
    assert sorted(h["pool"] for h in trained) == ["cls", "mean"]  # each head trained once
    assert s["distinct_heads"] == 2 and len(s["trials"]) == MAX_PROPOSALS * 3  # the space ran out
    assert "2 distinct heads of the 3 asked (--bohb-trials) after 30 proposals" in capsys.readouterr().err
    assert s["repeats"] == len(s["trials"]) - 2 and s["best"]["choices"]["pool"] == "mean"
    first = {t["choices"]["pool"]: t for t in s["trials"] if t["duplicate_of"] is None}
    assert first["cls"]["state"] == "pruned"  # so repeats of a pruned and of a complete trial are both seen
    for t in s["trials"]:
        if t["duplicate_of"] is not None:
            original = first[t["choices"]["pool"]]
            assert t["duplicate_of"] == original["number"] and t["state"] == original["state"]
            assert t["metrics"] == original["metrics"] and t["epochs"] == 0 and t["cpu_seconds"] == 0
    assert s["epochs_spent"] == sum(t["epochs"] for t in first.values())
    # a resumed study asking for as many heads as it has trains nothing more
    trained.clear()
    again = run_bohb(space, task, BOHBConfig(trials=2, startup=1), ft, lambda: None, {}, tmp_path)
    assert trained == [] and again["distinct_heads"] == 2


def _tiny_task_args(glue_dir, run):
    return ["--task", "mrpc", "--glue-dir", str(glue_dir), "--num-hidden-layers", "2", "--space", "tiny",
            "--max-train-samples", "96", "--max-eval-samples", "40", "--max-steps", "2", "--batch-size", "16",
            "--calib-samples", "16", "--random-baseline", "2", "--trials", "3", "--population", "2",
            "--sample-size", "1", "--no-webui", "--pick", "best", "--output-dir", str(run)]


@pytest.mark.parametrize("strategy", ["evolution", "darts"])
def test_every_search_path_trains_on_fit_and_selects_on_the_selection_rows(tmp_path, glue_dir, monkeypatch, strategy):
    """Our supernet training, NNI's one-shot engine and the search state: the fit rows to train, the
    selection rows to score, the report split never (each break of these fails here)."""
    import torch

    import strategies.oneshot_train as oneshot_train
    import strategies.pipeline as pipeline
    from supernet.search import main as search_main
    seen = {}
    for module, name in ((pipeline, "train_supernet"), (oneshot_train, "train_oneshot")):
        real = getattr(module, name)

        def spy(*args, real=real, name=name, **kwargs):
            data = [a for a in args if hasattr(a, "input_ids")]
            seen[name] = (len(data[0]), len(data[1]))  # (training rows, selection rows)
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    run = tmp_path / "run"
    assert search_main(["--strategy", strategy, *_tiny_task_args(glue_dir, run)]) == 0
    task = load_task(DataConfig(task="mrpc", glue_dir=str(glue_dir), max_train_samples=96, max_eval_samples=40),
                     load_tokenizer(None))
    assert list(seen.values()) == [(len(task.fit), len(task.val))]
    state = torch.load(run / "search_state.pt", weights_only=False)
    assert state["dev_labels"].tolist() == task.val.labels.tolist() and len(task.dev) == 40 != len(task.val)


def test_the_ranking_study_trains_stand_alone_on_fit_and_scores_on_the_selection_rows(tmp_path, monkeypatch, glue_dir):
    import sys

    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bench"))
    import ranking
    task = load_task(DataConfig(task="sst2", glue_dir=str(glue_dir), max_train_samples=200), load_tokenizer(None))
    seen = []
    monkeypatch.setattr(ranking, "retrain_heads", lambda heads, plan, out: seen.append(plan.task) or
                        {"heads": {}})
    ranking.standalone(None, task, None, None, None, [], tmp_path)
    assert seen[0].train is task.fit and seen[0].dev is task.val  # never all of train, never dev


def test_the_linear_baseline_of_every_delta_is_chosen_off_the_report_split():
    """Where the linear heads were scored on the selection split, the Δ baseline is the stronger there,
    even when dev would say otherwise; each arm also gets its Δ against every linear head."""
    from retrain.comparison import comparison
    head = lambda scores: {"seeds": {str(s): {"metrics": {"f1": v}} for s, v in enumerate(scores, 1)},
                           "summary": {"f1": {"mean": float(np.mean(scores)), "std": float(np.std(scores))}},
                           "head_parameters": 1, "architecture": {"choices": {}}}
    results = {"heads": {"linear": head([0.80, 0.81]), "linear_mean": head([0.70, 0.71]),
                         "weight_sharing": head([0.75, 0.78])}}
    costs = {"weight_sharing": {"cpu_seconds": 1.0}, "bo_hyperband": {"cpu_seconds": 10.0}}
    on_dev = comparison(results, costs, "f1")
    on_selection = comparison(results, costs, "f1", {"linear": 0.6, "linear_mean": 0.9})
    assert (on_dev["baseline"], on_dev["baseline_chosen_on"]) == ("linear", "dev")
    assert (on_selection["baseline"], on_selection["baseline_chosen_on"]) == ("linear_mean", "selection split")
    ws = on_selection["rows"]["weight_sharing"]
    assert ws["vs_linear"]["mean"] == pytest.approx(0.06) and set(ws["vs_each_linear"]) == {"linear", "linear_mean"}
