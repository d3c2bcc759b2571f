"""Retrain: plain heads from records, the linear baseline, the CLI end to end on real MRPC slices."""
import json
import random
import statistics
from pathlib import Path

import pytest
from torch import nn

from retrain.cli import main as retrain_main
from retrain.run import summarize
from supernet.nn.arch import Architecture, linear_architecture
from supernet.nn.head import SuperHead, plain_head
from supernet.nn.model import build_model
from supernet.nn.saved import load_model
from supernet.nn.space import get_space
from supernet.train.finetune import evaluate

SLICE = ["--num-hidden-layers", "2", "--max-train-samples", "64", "--max-eval-samples", "48",
         "--max-steps", "3", "--batch-size", "16"]


@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_plain_head_has_the_frozen_structure(preset):
    space = get_space(preset)
    for seed in range(25):
        arch = space.sample(random.Random(seed))
        head = SuperHead(space, 32, 3)
        for fresh, frozen in zip(plain_head(space, arch, 32, 3), (head.freeze(arch), head.freeze_tokens(arch))):
            shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()} if m is not None else None
            assert shapes(fresh) == shapes(frozen) and repr(fresh) == repr(frozen)


def test_linear_baseline_is_one_linear_layer_on_the_pooler(tiny_encoder):
    arch = linear_architecture("mrpc", "all-MiniLM-L6-v2")
    model = build_model(arch, tiny_encoder, 2)
    assert model.pooling.name == "pooler"
    assert len(model.head) == 1 and isinstance(model.head[0], nn.Linear)
    assert (model.head[0].in_features, model.head[0].out_features) == (32, 2)


def test_summarize_is_mean_and_sample_std():
    s = summarize({1: {"f1": 0.5}, 2: {"f1": 0.7}, 3: {"f1": 0.9}})
    assert s["f1"]["mean"] == pytest.approx(0.7) and s["f1"]["std"] == pytest.approx(0.2)


@pytest.fixture()
def tiny_arch(tmp_path):
    space = get_space("tiny")
    choices = space.canonical({**space.sample(random.Random(3)), "depth": 1, "norm_0": "batchnorm"})
    return Architecture("tiny", choices, encoder="all-MiniLM-L6-v2", task="mrpc").save(tmp_path / "arch.json")


def test_retrain_with_linear_baseline_end_to_end(tmp_path, glue_dir, tiny_arch):
    out = tmp_path / "out"
    assert retrain_main([str(tiny_arch), "--baseline", "linear", "--seeds", "1,2", "--glue-dir", str(glue_dir),
                         "--output-dir", str(out), *SLICE]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["heads"]) == ["arch", "linear"] and results["task"] == "mrpc"
    table = (out / "results.md").read_text()
    for name, head in results["heads"].items():
        per_seed = {int(s): json.loads((out / name / f"seed_{s}" / "result.json").read_text())["metrics"]
                    for s in (1, 2)}
        assert head["summary"] == summarize(per_seed)  # the table's numbers are the runs' numbers
        assert f"{head['summary']['f1']['mean']:.4f} ± {head['summary']['f1']['std']:.4f}" in table
        assert list((out / name / "seed_1" / "tensorboard").glob("events.out.tfevents.*"))
    assert results["heads"]["linear"]["head_parameters"] == 384 * 2 + 2

    # the saved model is the best seed's, loadable in one call, and scores what that seed scored
    from supernet.data.encoded import encode
    from supernet.data.sources import DataConfig, load_splits
    from supernet.nn.encoder import load_tokenizer
    model = load_model(out / "arch" / "model.pt")
    assert not any("nni" in type(m).__module__ for m in model.modules())
    spec, splits = load_splits(DataConfig(task="mrpc", glue_dir=str(glue_dir), max_eval_samples=48))
    tok = load_tokenizer(None)
    scores = evaluate(model, encode(splits["validation"], tok, 128), spec, tok.pad_token_id, "cpu")
    best_seed = max(results["heads"]["arch"]["seeds"].values(), key=lambda r: r["metrics"]["f1"])
    assert scores == pytest.approx(best_seed["metrics"], abs=1e-6)


def test_retrain_resume_keeps_finished_seeds_and_refuses_to_overwrite(tmp_path, glue_dir, tiny_arch, capsys):
    out = tmp_path / "out"
    args = [str(tiny_arch), "--seeds", "1", "--glue-dir", str(glue_dir), "--output-dir", str(out), *SLICE]
    assert retrain_main(args) == 0
    done = out / "arch" / "seed_1" / "result.json"
    before = done.read_text(), done.stat().st_mtime_ns
    assert retrain_main(args) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (done.read_text(), done.stat().st_mtime_ns) == before  # nothing touched
    args[2] = "1,2"
    assert retrain_main([*args, "--resume"]) == 0
    assert (done.read_text(), done.stat().st_mtime_ns) == before  # seed 1 kept, seed 2 added
    assert set(json.loads((out / "results.json").read_text())["heads"]["arch"]["seeds"]) == {"1", "2"}


@pytest.mark.parametrize("extra, message", [
    (["--task", "sst2"], "was searched for task 'mrpc', not --task 'sst2'"),
    (["--model", "bert-base-uncased"], "was searched on encoder 'all-MiniLM-L6-v2'"),
    (["--seeds", "1,1"], "--seeds must be distinct"),
    (["--batch-size", "1"], "--batch-size must be >= 2"),
])
def test_retrain_refuses_mismatches_in_one_line(tmp_path, glue_dir, tiny_arch, capsys, extra, message):
    out = tmp_path / "out"
    assert retrain_main([str(tiny_arch), "--glue-dir", str(glue_dir), "--output-dir", str(out), *SLICE, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_retrain_refuses_a_foreign_json(tmp_path, capsys):
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"model": "resnet", "lr": 0.1}))
    assert retrain_main([str(foreign)]) == 2
    assert "unknown field 'model'" in capsys.readouterr().err


def test_compare_end_to_end_on_real_mrpc_slices(tmp_path, glue_dir):
    """Every arm, searched and retrained: the table is the runs' own numbers."""
    from retrain.compare import main as compare_main
    out = tmp_path / "cmp"
    argv = ["--task", "mrpc", "--glue-dir", str(glue_dir), "--space", "tiny", "--seeds", "1,2",
            "--search-trials", "6", "--supernet-max-steps", "3", "--bohb-trials", "4", "--bohb-startup", "2",
            "--rung-epochs", "1", "--epochs", "2", "--output-dir", str(out), *SLICE[:-4], "--batch-size", "16",
            "--pick", "best"]
    assert compare_main(argv) == 0
    cmp = json.loads((out / "compare.json").read_text())
    assert list(cmp["rows"]) == ["linear", "linear_mean", "weight_sharing", "bo_hyperband", "random_head"]
    for name, row in cmp["rows"].items():  # the table is the seeds' own result files, re-aggregated here
        trained = row["same_as"] or name  # an arm that returned an earlier arm's head shares its retrain
        f1 = [json.loads((out / "retrain" / trained / f"seed_{s}" / "result.json").read_text())["metrics"]["f1"]
              for s in (1, 2)]
        assert row["mean"] == pytest.approx(statistics.mean(f1)) and row["std"] == pytest.approx(statistics.stdev(f1))
    # the shipped model of a head is its best seed: re-evaluated here, it scores that seed's f1
    _check_shipped_model(out / "retrain" / "linear", glue_dir)
    ws = json.loads((out / "weight_sharing" / "search_summary.json").read_text())
    bo = json.loads((out / "bo_hyperband" / "trials.json").read_text())
    # weight sharing is charged for picking its head, not for its report stage (BO-HB has none)
    charged = ws["cpu_seconds"]["total"] - ws["cpu_seconds"]["report"]
    assert ws["cpu_seconds"]["report"] > 0
    assert cmp["rows"]["weight_sharing"]["search"]["cpu_seconds"] == pytest.approx(charged)
    assert cmp["rows"]["weight_sharing"]["search"]["report_cpu_seconds"] == ws["cpu_seconds"]["report"]
    assert cmp["rows"]["bo_hyperband"]["search"]["cpu_seconds"] == pytest.approx(bo["cpu_seconds"])
    assert cmp["cpu_cost_ratio_ws_over_bohb"] == pytest.approx(charged / bo["cpu_seconds"])
    assert bo["distinct_heads"] == 4 and bo["completed"] >= 1  # --bohb-trials counts heads trained, not repeats
    # the retrained heads are the searches' exports
    results = json.loads((out / "retrain" / "results.json").read_text())
    assert results["heads"]["weight_sharing"]["architecture"]["choices"] == ws["best_choices"]
    assert results["heads"]["bo_hyperband"]["architecture"]["choices"] == bo["best"]["choices"]
    table = (out / "compare.md").read_text()
    assert f"{cmp['rows']['bo_hyperband']['mean']:.4f}" in table and f"{cmp['cpu_cost_ratio_ws_over_bohb']:.3f}" in table
    assert (out / "compare.png").stat().st_size > 1000


def _check_shipped_model(head_dir, glue_dir):
    from supernet.data.sources import DataConfig
    from supernet.data.splits import load_task
    from supernet.nn.encoder import load_tokenizer
    seeds = [json.loads(p.read_text())["metrics"]["f1"] for p in sorted(head_dir.glob("seed_*/result.json"))]
    model = load_model(head_dir / "model.pt")
    data = DataConfig(task="mrpc", glue_dir=str(glue_dir), max_train_samples=8,
                      max_eval_samples=int(SLICE[SLICE.index("--max-eval-samples") + 1]))
    task = load_task(data, load_tokenizer(None))
    assert evaluate(model, task.dev, task.spec, task.pad_id, "cpu")["f1"] == pytest.approx(max(seeds), abs=1e-6)


def test_weight_sharing_is_charged_up_to_its_head_and_its_report_stage_is_listed_apart():
    from strategies.pipeline import SearchResult
    summary = {"seconds": {"setup": 1.0, "supernet_training": 10.0, "features": 2.0, "search": 3.0, "report": 4.0,
                           "total": 20.0},
               "cpu_seconds": {"setup": 2.0, "supernet_training": 20.0, "features": 4.0, "search": 6.0, "report": 8.0,
                               "total": 40.0}}
    assert SearchResult(Path("run"), (), summary).cost_to_head() == {"seconds": 16.0, "report_seconds": 4.0,
                                            "cpu_seconds": 32.0, "report_cpu_seconds": 8.0}


def test_evaluating_only_at_the_end_leaves_the_scores_as_they_are(tmp_path, glue_dir, tiny_arch):
    """``RetrainPlan.eval_every`` (benchmarks read only the final dev score): skipping the per-epoch
    evaluations changes nothing a seed computes, dropout and batch norm included."""
    from retrain.run import RetrainConfig, RetrainPlan, retrain_heads
    from supernet.data.sources import DataConfig
    from supernet.data.splits import load_task
    from supernet.nn.encoder import EncoderConfig, load_tokenizer
    data = DataConfig(task="mrpc", glue_dir=str(glue_dir), max_train_samples=32, max_eval_samples=16)
    encoder = EncoderConfig(num_hidden_layers=1)
    task = load_task(data, load_tokenizer(None))
    arch = Architecture.load(tiny_arch)
    cfg = RetrainConfig(epochs=2, batch_size=16, seeds=(1,))
    runs = {every: retrain_heads([("arch", arch)], RetrainPlan(task, cfg, encoder, data, eval_every=every),
                                 tmp_path / str(every))["heads"]["arch"]["seeds"]["1"] for every in (None, 10 ** 9)}
    assert len(runs[None]["history"]) == 2 and len(runs[10 ** 9]["history"]) == 1  # per epoch / at the end only
    assert runs[None]["metrics"] == runs[10 ** 9]["metrics"]


def test_a_cosine_heads_fitted_start_is_part_of_its_settings(glue_dir):
    """Seeds trained before the cosine's scale and bias started fitted must not mix into a resumed mean:
    the settings say so for every head that starts fitted, and only for those."""
    from retrain.run import RetrainConfig, RetrainPlan
    from supernet.data.sources import DataConfig
    from supernet.data.splits import load_task
    from supernet.nn.encoder import EncoderConfig, load_tokenizer
    data = DataConfig(task="mrpc", glue_dir=str(glue_dir), max_train_samples=32, max_eval_samples=16)
    task = load_task(data, load_tokenizer(None))
    space = get_space("pairs")
    arch = lambda pair: Architecture("pairs", space.canonical({**space.reference(), "pool": "mean", "pair": pair}))
    starts = lambda cfg, pair: RetrainPlan(task, cfg, EncoderConfig(), data).settings("h", arch(pair))["fine_tune"].get(
        "cosine_start")
    full, frozen = RetrainConfig(), RetrainConfig(freeze_encoder=True)
    assert starts(full, "cosine") == starts(full, "cosine_proj") == starts(frozen, "cosine_proj") == "fitted"
    assert starts(frozen, "cosine") is None  # fitted by L-BFGS instead (--linear-fit converged)
    assert starts(full, "joint") is None
