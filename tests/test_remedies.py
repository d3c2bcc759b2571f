"""The supernet-training remedies of the ranking study: sandwich rule, fair sampling, in-place distillation,
and the frozen-encoder regime."""
from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest
import torch

from supernet.data.tasks import get_task
from supernet.nn.space import get_space
from supernet.train.supernet import TrainConfig, distill_loss, step_architectures

SPACE = get_space("paper")


def test_sandwich_trains_the_largest_and_the_smallest_head_first():
    for seed in range(5):
        archs = step_architectures(SPACE, random.Random(seed), 4, sampling="sandwich")
        big, small = archs[0], archs[1]
        assert big["depth"] == 4 and all(big[f"width_{i}"] == 1024 for i in range(4))
        assert big["tok_kind"] in ("conv", "attention") and big["tok_layers"] == 3 and big["pool"] != "pooler"
        assert small["depth"] == 0 and small["tok_kind"] == "none"
        assert all(SPACE.validate(a) for a in archs)


def test_fair_sampling_deals_every_candidate_evenly():
    archs = step_architectures(SPACE, random.Random(0), 7, sampling="fair")
    assert Counter(a["width_0"] for a in archs) == Counter(SPACE.width)  # 7 widths over 7 heads: once each
    pools = Counter(a["pool"] for a in archs)
    assert max(pools.values()) - min(pools.values()) <= 1 and set(pools) == set(SPACE.pool)


def test_distillation_loss_is_zero_at_the_teacher_and_positive_elsewhere():
    teacher = torch.randn(8, 3)
    assert distill_loss(get_task("mnli"), teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(get_task("mnli"), torch.randn(8, 3), teacher).item() > 0.01
    assert distill_loss(get_task("stsb"), teacher[:, :1] + 1, teacher[:, :1]).item() == pytest.approx(1.0)


def test_remedy_flags_are_checked():
    with pytest.raises(ValueError, match="--distill learns from the largest head"):
        TrainConfig(distill=True)
    with pytest.raises(ValueError, match="--freeze-encoder keeps the pretrained encoder"):
        TrainConfig(space="small+ffn", freeze_encoder=True)


def test_frozen_encoder_training_leaves_the_encoder_untouched_and_matches_uncached_heads(tiny_encoder, tmp_path):
    """--freeze-encoder: the encoder's weights do not move, and a head trained on cached encoder outputs
    computes the same logits as the plain model on token ids."""
    from retrain.run import RetrainConfig, fine_tune
    from supernet.data.encoded import Encoded
    from supernet.nn.arch import Architecture
    from supernet.nn.model import build_model
    from supernet.nn.reading import Needs
    from supernet.train.frozen import EncoderCache

    from conftest import make_batch
    space = get_space("tiny")
    arch = Architecture("tiny", space.canonical({**space.sample(random.Random(3)), "pool": "mean",
                                                 "tok_kind": "conv", "tok_layers": 1}), task="mrpc")
    model = build_model(arch, tiny_encoder, 2)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    rng = torch.Generator().manual_seed(0)
    rows = [torch.randint(1000, 2000, (int(n),), generator=rng).numpy() for n in torch.randint(4, 12, (48,))]
    data = Encoded(rows, [r * 0 for r in rows], (torch.arange(48) % 2).numpy())
    cfg = RetrainConfig(max_steps=6, batch_size=8, seeds=(1,), freeze_encoder=True, lr_head=1e-2)
    head_before = [p.clone() for p in model.head.parameters()]
    r = fine_tune(model, get_task("mrpc"), data, data, 0, cfg, 1, None)
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters()))  # the head learned
    batch = make_batch(batch_size=4, length=9, vocab=900)
    model.eval()
    enc = Encoded([batch["input_ids"][i][batch["attention_mask"][i].bool()].numpy() for i in range(4)],
                  [batch["token_type_ids"][i][batch["attention_mask"][i].bool()].numpy() for i in range(4)],
                  torch.zeros(4, dtype=torch.long).numpy())
    cache = EncoderCache.build(model.encoder, enc, 0, Needs(hidden=True))
    torch.testing.assert_close(model(features=cache.features(range(4))), model(**batch), rtol=1e-5, atol=1e-5)
    assert r["metrics"] and r["steps"] == 6


def test_uniform_heads_of_a_step_share_one_token_block_computed_once(monkeypatch):
    """The step's heads read one token block (their poolings and MLPs stay their own), so its forward
    runs once per step, not once per head."""
    from supernet.nn.head import SuperHead
    from supernet.nn.ops import POOLINGS
    from supernet.nn.reading import Features
    from supernet.nn.tokens import TOKEN_LABELS, SuperTokenBlocks
    space = get_space("tiny")
    for seed in range(6):
        archs = step_architectures(space, random.Random(seed), 4)
        assert len({tuple(a[k] for k in TOKEN_LABELS) for a in archs}) == 1
    head = SuperHead(space, 12, 2)
    calls = []
    real = SuperTokenBlocks.forward
    monkeypatch.setattr(SuperTokenBlocks, "forward", lambda self, *a: calls.append(1) or real(self, *a))
    hidden, mask = torch.randn(3, 5, 12), torch.ones(3, 5, dtype=torch.long)
    f = Features({p: POOLINGS[p](hidden, mask, None) for p in space.pool}, hidden, mask)
    archs = [a for s in range(20) for a in [step_architectures(space, random.Random(s), 4)]
             if a[0]["tok_kind"] != "none"][0]
    outs = [head(f, a) for a in archs]
    assert len(calls) == 1 and all(o.shape == (3, 2) for o in outs)


def test_ranking_heads_are_distinct_stratified_and_exclude_the_linear_head():
    """bench/ranking.py's head sample: the (pooler, depth 0) cell holds only the linear head (added
    apart), so drawing 24 heads must move past it instead of retrying it forever."""
    import sys

    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bench"))
    from ranking import stratified_heads
    space = get_space("paper")
    heads = stratified_heads("paper", 24)
    keys = {tuple(sorted(h.items())) for h in heads}
    assert len(keys) == 24
    assert tuple(sorted(space.canonical(space.reference()).items())) not in keys
    assert len({(h["pool"], h["depth"]) for h in heads}) == len(space.pool) * len(space.depth) - 1
    pairs = stratified_heads("pairs", 16, strata=("pair", "layers"))  # 16 cells, one head each
    assert len({(h["pair"], h["layers"]) for h in pairs}) == 16


def test_ranking_stats_measure_agreement_spread_and_seed_noise():
    """τ is +1 when the supernet orders heads as stand-alone training does and −1 when it reverses
    them; the spread is the std of stand-alone means, the seed noise the mean std across seeds."""
    import sys

    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bench"))
    from ranking import ranking_stats
    alone = {f"h{i}": {"1": 0.1 * i, "2": 0.1 * i + 0.02} for i in range(8)}
    same = ranking_stats({n: float(i) for i, n in enumerate(sorted(alone))}, alone, n_boot=50)
    flipped = ranking_stats({n: -float(i) for i, n in enumerate(sorted(alone))}, alone, n_boot=50)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["top5_overlap"] == 1.0
    assert flipped["kendall_tau"] == pytest.approx(-1.0) and flipped["top5_overlap"] == 0.4  # 8 heads: 3, 4 in both
    means = [0.1 * i + 0.01 for i in range(8)]
    assert same["head_spread"] == pytest.approx(statistics.stdev(means))
    assert same["seed_noise"] == pytest.approx(statistics.stdev([0.0, 0.02]))
    assert same["kendall_tau_ci95"][0] <= 1.0 and flipped["kendall_tau_ci95"][1] <= -0.5


def test_ranking_script_end_to_end_writes_every_field_the_study_reports(tmp_path, glue_dir, tiny_model_dir):
    """bench/ranking.py on a tiny model and 200 real SST-2 rows: stand-alone seeds, two variants (the
    second scored on the first's supernet), the stats, the constant-head count and a scatter each."""
    import json
    import sys

    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bench"))
    from ranking import main
    out = tmp_path / "rank"
    main(["--task", "sst2", "--glue-dir", str(glue_dir), "--model", str(tiny_model_dir), "--space", "mlp",
          "--regime", "frozen", "--max-train-samples", "200", "--heads", "4", "--seeds", "1,2", "--epochs", "1",
          "--max-length", "32", "--variants", "base,no_recalibration", "--bootstrap", "50", "--out", str(out)])
    r = json.loads((out / "ranking.json").read_text())
    assert r["n_heads"] == 5 and r["regime"] == "frozen" and r["data"]["max_train_samples"] == 200
    assert "--max-train-samples 200" in r["command"]
    assert set(r["variants"]) == {"base", "no_recalibration"}
    for v in r["variants"].values():
        assert -1.0 <= v["kendall_tau"] <= 1.0 and v["head_spread"] >= 0 and v["seed_noise"] >= 0
        assert 0 <= v["constant_heads"] <= 5 and v["supernet_cpu_seconds"] > 0
    for h in r["heads"].values():
        assert set(h["standalone"]) == {"1", "2"} and set(h["inherited"]) == {"base", "no_recalibration"}
        assert all(0.5 <= s <= 1.0 for s in h["inherited_class_share"].values())  # binary task
    assert r["variants"]["no_recalibration"]["supernet_seconds"] == r["variants"]["base"]["supernet_seconds"]
    table = (out / "ranking.md").read_text()
    assert "| base |" in table and "| no_recalibration |" in table and "head spread" in table
    assert (out / "scatter-base.png").stat().st_size > 0 and not (out / "supernet-no_recalibration").exists()


def test_frozen_supernet_training_encodes_the_validation_rows_once_and_scores_probes_as_before(
        tmp_path, tiny_model_dir, glue_dir):
    """With --freeze-encoder the probes' dev scores come from validation features computed once: the
    encoder runs over the validation rows once however many evaluations there are, and the last logged
    probe scores equal those of the uncached path on the trained supernet."""
    from supernet.data.encoded import encode
    from supernet.data.sources import TRAIN, DataConfig, load_splits
    from supernet.nn.encoder import load_encoder, load_tokenizer
    from supernet.nn.supernet import HeadSupernet
    from supernet.train import supernet as T
    cfg = DataConfig(task="mrpc", glue_dir=glue_dir, max_train_samples=64, max_eval_samples=40)
    spec, splits = load_splits(cfg)
    tok = load_tokenizer(tiny_model_dir)
    train, dev = (encode(splits[s], tok, cfg.max_length, cfg.cache_dir) for s in (TRAIN, "validation"))
    net = HeadSupernet(load_encoder(tiny_model_dir), get_space("tiny"), spec.num_labels)
    rows_encoded, forward = [], net.encoder.forward

    def counting(*args, **kwargs):
        rows_encoded.append(len((kwargs.get("input_ids") if "input_ids" in kwargs else args[0])))
        return forward(*args, **kwargs)
    net.encoder.forward = counting
    T.train_supernet(net, spec, train, dev, tok.pad_token_id, T.TrainConfig(
        max_steps=6, batch_size=8, heads_per_step=2, checkpoint_every=100, eval_every=1, freeze_encoder=True), tmp_path)
    assert sum(rows_encoded) == len(train) + len(dev)  # the training cache, then the validation rows once
    history = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["progress"]["history"]
    assert len(history) == 6
    fresh = T.score_probes(net, spec, dev, tok.pad_token_id, T.probe_architectures(net.space, 3), "cpu")
    for i, scores in enumerate(fresh):
        for name, value in scores.items():
            assert history[-1][f"probe{i}/{name}"] == pytest.approx(value, abs=1e-6)


def test_every_ranking_variant_builds_its_supernet_config_with_its_overrides():
    """Each remedy's overrides win over the shared budget (head_lr_3e-4 once clashed with lr_head)."""
    import sys

    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bench"))
    from ranking import VARIANTS, supernet_config

    from retrain.run import RetrainConfig
    cfg = RetrainConfig(epochs=5, lr_head=1e-3, freeze_encoder=True)
    for variant in VARIANTS:
        train = supernet_config("mlp", cfg, variant, seed=0)
        assert train.freeze_encoder and train.seed == 0
    assert supernet_config("mlp", cfg, "head_lr_3e-4", 0).lr_head == 3e-4
    assert supernet_config("mlp", cfg, "base", 0).lr_head == 1e-3
    assert supernet_config("mlp", cfg, "long", 0).epochs == 15
    assert supernet_config("mlp", cfg, "sandwich_distill", 0).distill
