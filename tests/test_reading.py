"""What a head reads (issue #30): layer reads, sentence pairs encoded apart (siamese, cosine), in the space,
the supernet, the plain model, the cache and predictions."""
from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
import torch

from supernet.data.encoded import Encoded, pad_batch
from supernet.nn.encoder import encoder_outputs
from supernet.nn.ops import POOLINGS
from supernet.nn.reading import LAYER_READS, PAIRS, Needs
from supernet.nn.space import get_space, resolve_space
from supernet.nn.supernet import HeadSupernet

SPACE = "tiny-pairs"


def _pairs(n: int = 6, seed: int = 0) -> Encoded:
    """A toy pair split: each text alone ([CLS] x [SEP]) and the pair joint ([CLS] a [SEP] b [SEP])."""
    rng = np.random.default_rng(seed)
    a = [rng.integers(1000, 2000, int(k)) for k in rng.integers(2, 7, n)]
    b = [rng.integers(1000, 2000, int(k)) for k in rng.integers(2, 7, n)]
    alone = lambda xs: Encoded([np.r_[101, x, 102].astype(np.int32) for x in xs],
                               [np.zeros(len(x) + 2, np.int8) for x in xs], np.arange(n) % 2)
    joint = [np.r_[101, x, 102, y, 102].astype(np.int32) for x, y in zip(a, b)]
    types = [np.r_[np.zeros(len(x) + 2), np.ones(len(y) + 1)].astype(np.int8) for x, y in zip(a, b)]
    return Encoded(joint, types, np.arange(n) % 2, (alone(a), alone(b)))


def _every_read(space, rng, n_random=3):
    """Heads covering every pool x layers x pair read (plus random rest)."""
    for pool, layers, pair in itertools.product(space.pool, space.layers, space.pair):
        for _ in range(n_random):
            yield {**space.sample(rng), "pool": pool, "layers": layers, "pair": pair}


def test_a_siamese_head_reads_u_v_and_their_differences(tiny_encoder):
    """On a 2-row toy pair the siamese head's output is its classifier on [u, v, |u-v|, u*v], u and v
    computed by hand: each text encoded alone, mean-pooled."""
    space = get_space(SPACE)
    data = _pairs(2)
    net = HeadSupernet(tiny_encoder, space, 2).eval()
    choices = space.canonical({**space.reference(), "pair": "siamese", "pool": "mean", "depth": 0})
    batch = pad_batch(data, np.arange(2), 0, sides=True)
    with torch.no_grad():
        u, v = (POOLINGS["mean"](encoder_outputs(tiny_encoder, {k[2:]: t for k, t in batch.items()
                                                                 if k.startswith(s + "_")}).hidden,
                                 batch[f"{s}_attention_mask"], None) for s in "ab")
        by_hand = net.head.freeze(choices)(torch.cat([u, v, (u - v).abs(), u * v], -1))
        assert torch.allclose(net(batch, choices), by_hand, atol=1e-6)
    assert net.head.freeze(choices)[0].in_features == 4 * tiny_encoder.config.hidden_size


def test_cosine_of_a_text_with_itself_is_the_scale_plus_the_bias(tiny_encoder):
    space = get_space(SPACE)
    data = _pairs(3)
    same = Encoded(data.input_ids, data.token_type_ids, data.labels, (data.sides[0], data.sides[0]))
    net = HeadSupernet(tiny_encoder, space, 1).eval()
    with torch.no_grad():
        net.head.cosine.weight.fill_(2.5)
        net.head.cosine.bias.fill_(0.75)
        out = net(pad_batch(same, np.arange(3), 0, sides=True), {**space.reference(), "pair": "cosine", "pool": "cls"})
    assert torch.allclose(out, torch.full((3, 1), 3.25), atol=1e-5)


def test_a_projected_cosine_starts_as_the_cosine_and_learns_a_projection(tiny_encoder):
    """cosine_proj starts where the cosine head is (P = identity), then moves with its projection:
    the supernet trains P for every head that reads it, and freeze() carries it."""
    space = get_space(SPACE)
    batch = pad_batch(_pairs(4), np.arange(4), 0, sides=True)
    net = HeadSupernet(tiny_encoder, space, 1).eval()
    base = {**space.reference(), "pool": "mean"}
    cos, proj = space.canonical({**base, "pair": "cosine"}), space.canonical({**base, "pair": "cosine_proj"})
    with torch.no_grad():
        assert torch.allclose(net(batch, proj), net(batch, cos), atol=1e-6)
    net.train()
    loss = (net(batch, proj) - torch.arange(4.0)[:, None]).pow(2).mean()
    loss.backward()
    assert net.head.projection.delta.weight.grad.abs().sum() > 0
    with torch.no_grad():
        net.head.projection.delta.weight.add_(0.3 * torch.randn(net.head.projection.delta.weight.shape))
        net.eval()
        assert not torch.allclose(net(batch, proj), net(batch, cos), atol=1e-3)
        frozen = net.freeze(proj).eval()
        assert torch.allclose(frozen(**batch), net(batch, proj), atol=1e-5)
    assert frozen.head[0].delta.weight.shape == (tiny_encoder.config.hidden_size,) * 2


def test_a_projected_cosine_trains_from_a_fitted_scale_and_bias(tiny_encoder):
    """Frozen encoder: stand-alone (``fine_tune``) and in the supernet, the cosine's scale and bias start
    fitted to the training rows (labels 3 cos + 1 here: scale 3, bias 1), not at 1 and 0, so the
    projection's first steps do not chase an affine map that is far off."""
    from retrain.run import RetrainConfig, fine_tune
    from supernet.data.tasks import get_task
    from supernet.nn.arch import Architecture
    from supernet.nn.model import build_model
    from supernet.train.frozen import EncoderCache
    from supernet.train.supernet import fit_shared_cosine
    space, stsb = get_space(SPACE), get_task("stsb")
    data = _pairs(32)
    cache = EncoderCache.build(tiny_encoder, data, 0, space.needs())
    cos = torch.nn.functional.cosine_similarity(*(s.pooled["mean"] for s in cache.sides)).numpy()
    data = Encoded(data.input_ids, data.token_type_ids, (3 * cos + 1).astype(np.float32), data.sides)
    arch = Architecture(SPACE, space.canonical({**space.reference(), "pool": "mean", "pair": "cosine_proj"}))
    model = build_model(arch, tiny_encoder, 1)
    fine_tune(model, stsb, data, data, 0, RetrainConfig(max_steps=1, batch_size=4, seeds=(1,), freeze_encoder=True,
                                                        lr_head=1e-9), 1, None)
    assert model.head[1].weight.item() == pytest.approx(3.0, abs=1e-3)
    assert model.head[1].bias.item() == pytest.approx(1.0, abs=1e-3)
    net = HeadSupernet(tiny_encoder, space, 1)
    fit_shared_cosine(net, cache, data.labels, stsb)
    assert net.head.cosine.weight.item() == pytest.approx(3.0, abs=1e-3)
    assert net.head.cosine.bias.item() == pytest.approx(1.0, abs=1e-3)
    from supernet.train.finetune import fit_cosine_scale
    with torch.no_grad():  # a projection off its start (inherited from a supernet) keeps its scale and bias
        model.head[0].delta.bias.fill_(0.01)
        model.head[1].weight.fill_(7.0)
    fit_cosine_scale(model, cache, data.labels, stsb)
    assert model.head[1].weight.item() == 7.0


@pytest.mark.parametrize("pair", ["cosine", "cosine_proj"])
def test_under_full_fine_tuning_a_cosine_starts_fitted_on_the_pretrained_cosines(tiny_encoder, pair, tmp_path):
    """Full fine-tuning too (stand-alone and the supernet): the scale and bias start fitted on the pretrained
    encoder's cosines (labels 3 cos + 1: scale 3, bias 1). From scale 1, bias 0 the encoder would first be
    pushed to raise every cosine towards STS-B's 0-5 labels (and, for classes, get no gradient at all)."""
    import copy

    from retrain.run import RetrainConfig, fine_tune
    from supernet.data.tasks import get_task
    from supernet.nn.arch import Architecture
    from supernet.nn.model import build_model
    from supernet.train.frozen import EncoderCache
    from supernet.train.supernet import TrainConfig, train_supernet
    space, stsb = get_space(SPACE), get_task("stsb")
    data = _pairs(32)
    cache = EncoderCache.build(tiny_encoder, data, 0, space.needs())
    cos = torch.nn.functional.cosine_similarity(*(s.pooled["mean"] for s in cache.sides)).numpy()
    data = Encoded(data.input_ids, data.token_type_ids, (3 * cos + 1).astype(np.float32), data.sides)
    arch = Architecture(SPACE, space.canonical({**space.reference(), "pool": "mean", "pair": pair}))
    model = build_model(arch, copy.deepcopy(tiny_encoder), 1)
    fine_tune(model, stsb, data, data, 0, RetrainConfig(max_steps=1, batch_size=4, seeds=(1,), lr_head=1e-9,
                                                        lr_encoder=1e-9), 1, None)
    assert model.head[-1].weight.item() == pytest.approx(3.0, abs=1e-3)
    assert model.head[-1].bias.item() == pytest.approx(1.0, abs=1e-3)
    # two classes, the second where the cosine is above its median: the tie (scale 1 on both logits) is broken
    classes = Encoded(data.input_ids, data.token_type_ids, (cos > np.median(cos)).astype(np.int64), data.sides)
    binary = build_model(arch, copy.deepcopy(tiny_encoder), 2)
    fine_tune(binary, get_task("mrpc"), classes, classes, 0, RetrainConfig(max_steps=1, batch_size=4, seeds=(1,),
                                                                          lr_head=1e-9, lr_encoder=1e-9), 1, None)
    scale = binary.head[-1].weight[:, 0]
    assert scale[1] - scale[0] > 1.0
    net = HeadSupernet(copy.deepcopy(tiny_encoder), space, 1)
    train_supernet(net, stsb, data, data, 0, TrainConfig(space=SPACE, max_steps=1, batch_size=4, lr_head=1e-9,
                                                          lr_encoder=1e-9), tmp_path)
    assert net.head.cosine.weight.item() == pytest.approx(3.0, abs=1e-3)
    assert net.head.cosine.bias.item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("num_labels", [1, 3])
def test_frozen_heads_of_every_read_compute_what_the_supernet_computes(tiny_encoder, num_labels):
    """``freeze()`` of every pair and layer read (scalar mix included, its weights moved off their start)
    is allclose to the supernet path, from token ids and from the cache."""
    from supernet.train.frozen import EncoderCache
    space = get_space(SPACE)
    net = HeadSupernet(tiny_encoder, space, num_labels).eval()
    with torch.no_grad():
        net.head.scalar_mix.weights.copy_(torch.linspace(-1, 1, net.head.scalar_mix.weights.numel()))
        for p in net.head.projection.parameters():  # a fresh projection is the identity: move it off its start
            p.copy_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    data = _pairs(5)
    batch = pad_batch(data, np.arange(5), 0, sides=True)
    cache = EncoderCache.build(tiny_encoder, data, 0, space.needs())
    seen = set()
    for choices in _every_read(space, random.Random(0)):
        frozen = net.freeze(choices).eval()
        with torch.no_grad():
            expected = net(batch, choices)
            assert torch.allclose(frozen(**batch), expected, atol=1e-5), choices
            assert torch.allclose(frozen(features=cache.features(np.arange(5))), expected, atol=1e-5), choices
        seen.add(tuple(space.reads(choices)[k] for k in ("layers", "pair")))
    assert {r for r in seen} >= {(layers, pair) for layers in LAYER_READS for pair in PAIRS}


def test_layer_reads_reduce_every_layers_pooled_vectors():
    """mean4 / max3 / scalar mix over the embeddings and every layer, as their definitions say (five
    layers, so that the last 4, the last 3 and all of them differ)."""
    from supernet.nn.encoder import tiny_encoder as make_encoder
    tiny_encoder = make_encoder(layers=5)
    space = get_space(SPACE)
    net = HeadSupernet(tiny_encoder, space, 2).eval()
    data = _pairs(4)
    batch = pad_batch(data, np.arange(4), 0)
    with torch.no_grad():
        states = encoder_outputs(tiny_encoder, batch, all_layers=True).layers
        stack = torch.stack([POOLINGS["cls"](h, batch["attention_mask"], None) for h in states], 1)
        f = net.features(batch, Needs(("cls",), layers=True))
        for how, want in (("mean4", stack[:, -4:].mean(1)), ("max3", stack[:, -3:].amax(1)),
                          ("scalar_mix", stack.mean(1))):  # a fresh scalar mix: uniform weights, gamma 1
            got = net.head.view(f, {"pool": "cls", "layers": how}, tokens=False)
            assert torch.allclose(got, want, atol=1e-6), how
    assert len(states) == tiny_encoder.config.num_hidden_layers + 1


def test_the_space_reads_by_one_set_of_rules():
    """``reads`` decides what is read, and canonical, size and BO-HB's conditional space follow it: the
    pooler has no per-layer form; a token block reads the joint last layer; a cosine head has no MLP."""
    space = get_space(SPACE)
    base = {**space.reference(), "pool": "mean", "tok_kind": "conv", "depth": 2}
    assert space.reads(base)["tokens"]
    assert not space.reads({**base, "pair": "siamese"})["tokens"]
    assert not space.reads({**base, "layers": "mean4"})["tokens"]
    assert space.reads({**base, "pool": "pooler", "layers": "max3"})["layers"] == "last"
    cosine = space.canonical({**base, "pair": "cosine"})
    assert cosine["depth"] == space.depth[0] and cosine["tok_kind"] == "none"
    # size() counts distinct networks: brute force over every canonical head of the front labels
    fronts = {k: v for k, v in space.labels().items() if not k[-1].isdigit()}
    distinct = {json.dumps(space.canonical({**space.reference(), **dict(zip(fronts, values)), "depth": 0}),
                           sort_keys=True)
                for values in itertools.product(*fronts.values())}
    mlp = sum(space.per_layer_choices() ** d for d in space.depth)
    heads = sum(1 if json.loads(d)["pair"] in ("cosine", "cosine_proj") else mlp for d in distinct)
    assert space.size() == heads


def test_bohb_asks_only_what_a_head_reads():
    import optuna

    from retrain.bohb import suggest_choices
    space = get_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        choices = suggest_choices(trial, space)
        assert space.canonical(choices) == choices
        reads = space.reads(choices)
        asked = set(trial.params)
        assert ("layers" in asked) == (choices["pool"] != "pooler")
        assert ("tok_kind" in asked) == (reads["pair"] == "joint" and reads["layers"] == "last"
                                         and choices["pool"] != "pooler")
        assert ("width_0" in asked) == (reads["mlp"] and choices["depth"] > 0)
        study.tell(trial, 0.0)


def test_auto_picks_the_space_per_task_and_a_pair_space_needs_two_texts():
    from supernet.core.errors import InputError
    assert resolve_space("auto", 2) == "pairs" and resolve_space("auto", 1) == "heads"
    assert get_space("pairs").size() > get_space("heads").size() > get_space("paper").size()
    with pytest.raises(InputError, match="searches how a sentence pair is read, and the task has 1 text column"):
        resolve_space("pairs", 1)
    with pytest.raises(InputError, match="backbone parts go with a head preset"):
        get_space("heads+ffn@2")


def test_predict_reads_a_pair_csv_with_a_siamese_head(tmp_path, tiny_model_dir):
    """A siamese head retrained on a pair CSV, saved, and asked for predictions on another pair CSV: its
    ``model.pt`` encodes each text alone, as it was trained."""
    from retrain.predict import main as predict_main
    from supernet.nn.arch import Architecture
    space = get_space(SPACE)
    rows = "".join(f"a text {i},another text {i % 3},{i % 2}\n" for i in range(40))
    for name in ("train", "dev", "new"):
        (tmp_path / f"{name}.csv").write_text("s1,s2,label\n" + rows)
    arch = Architecture(SPACE, space.canonical({**space.reference(), "pair": "siamese", "pool": "mean", "depth": 1}),
                        encoder=tiny_model_dir.name, task="custom")
    arch.save(tmp_path / "arch.json")
    from retrain.cli import main as retrain_main
    out = tmp_path / "out"
    assert retrain_main([str(tmp_path / "arch.json"), "--model", str(tiny_model_dir), "--train-file",
                         str(tmp_path / "train.csv"), "--dev-file", str(tmp_path / "dev.csv"), "--text-columns", "s1,s2",
                         "--max-steps", "2", "--batch-size", "8", "--seeds", "1", "--output-dir", str(out)]) == 0
    assert predict_main([str(out / "arch"), "--input", str(tmp_path / "new.csv"),
                         "--output", str(tmp_path / "p.csv")]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 41 and lines[0].startswith("row,s1,s2,prediction")
    from supernet import load_model
    model = load_model(out / "arch" / "model.pt")
    assert model.pair == "siamese" and model.needs.sides
    assert model.predict([("a text 1", "another text 1")]) in ([0], [1], ["0"], ["1"])


def test_lp_ft_warms_the_head_on_the_frozen_encoder_first(tiny_encoder, monkeypatch):
    """``--head-warmup-epochs``: the head trains on cached outputs of the untouched encoder, then the
    whole model fine-tunes; a seed resumed from a checkpoint (which holds the warmed head) skips it."""
    import supernet.train.finetune as run
    from retrain.run import RetrainConfig
    from supernet.train.finetune import fine_tune
    from supernet.data.tasks import get_task
    from supernet.nn.arch import Architecture
    from supernet.nn.model import build_model
    from supernet.train.frozen import warm_up_heads
    space = get_space(SPACE)
    arch = Architecture(SPACE, space.canonical({**space.reference(), "pair": "siamese", "pool": "mean", "depth": 1}))
    model = build_model(arch, tiny_encoder, 2)
    data = _pairs(24)
    cfg = RetrainConfig(max_steps=2, batch_size=8, seeds=(1,), head_warmup_epochs=2.0, lr_head=1e-2)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = [p.clone() for p in model.head.parameters()]
    seen = []

    def spy(m, *args, **kwargs):
        out = warm_up_heads(m, *args, **kwargs)
        seen.append((all(torch.equal(encoder_before[k], v) for k, v in m.encoder.state_dict().items()),
                     any(not torch.equal(a, b) for a, b in zip(head_before, m.head.parameters()))))
        return out
    monkeypatch.setattr(run, "warm_up_heads", spy)
    r = fine_tune(model, get_task("mrpc"), data, data, 0, cfg, 1, None)
    assert seen == [(True, True)]  # after the warm-up: encoder as pretrained, head trained
    assert any(not torch.equal(encoder_before[k], v) for k, v in model.encoder.state_dict().items())
    assert r["head_warmup"]["cpu_seconds"] > 0 and r["cpu_seconds"] >= r["head_warmup"]["cpu_seconds"]


def test_lp_ft_is_refused_where_it_means_nothing():
    from retrain.run import RetrainConfig
    from supernet.core.errors import InputError
    with pytest.raises(InputError, match="with --freeze-encoder there is no fine-tuning after it"):
        RetrainConfig(freeze_encoder=True, head_warmup_epochs=1.0)


def test_lp_ft_warms_every_supernet_head_first(tiny_encoder, tmp_path, monkeypatch):
    import supernet.train.supernet as T
    from supernet.data.tasks import get_task
    space = get_space(SPACE)
    net = HeadSupernet(tiny_encoder, space, 2)
    data = _pairs(24)
    calls = []
    real = T.warm_up_heads
    monkeypatch.setattr(T, "warm_up_heads", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    cfg = T.TrainConfig(space=SPACE, max_steps=2, batch_size=8, heads_per_step=2, head_warmup_epochs=1.0,
                        eval_every=2)
    stats = T.train_supernet(net, get_task("mrpc"), data, data, 0, cfg, tmp_path)
    assert calls == [space.needs()] and stats["cpu_seconds"] > 0
    T.train_supernet(net, get_task("mrpc"), data, data, 0, cfg, tmp_path, resume=True)  # the checkpoint: no again
    assert len(calls) == 1


@pytest.mark.parametrize("freeze", [True, False])
def test_probes_score_at_most_probe_rows_evaluation_rows(tiny_encoder, tmp_path, monkeypatch, freeze):
    """The probes' training curve reads a bounded, evenly spread sample of the evaluation rows, in both
    regimes (on every row it cost ~40 % of supernet training on full SST-2)."""
    import supernet.train.supernet as T
    from supernet.data.tasks import get_task
    monkeypatch.setattr(T, "PROBE_ROWS", 7)
    seen = []
    real_heads, real_probes = T.score_heads, T.score_probes
    monkeypatch.setattr(T, "score_heads", lambda head, spec, cache, labels, archs:
                        seen.append(cache.rows) or real_heads(head, spec, cache, labels, archs))
    monkeypatch.setattr(T, "score_probes", lambda net, spec, dev, *a:
                        seen.append(len(dev)) or real_probes(net, spec, dev, *a))
    net = HeadSupernet(tiny_encoder, get_space(SPACE), 2)
    cfg = T.TrainConfig(space=SPACE, max_steps=2, batch_size=8, heads_per_step=2, eval_every=1, freeze_encoder=freeze)
    T.train_supernet(net, get_task("mrpc"), _pairs(24), _pairs(30), 0, cfg, tmp_path)
    assert len(seen) >= 2 and set(seen) == {7}  # two evaluations, each on 7 of the 30 rows
    assert T.probe_rows(30).tolist() == [0, 5, 10, 14, 19, 24, 29] and T.probe_rows(7).tolist() == list(range(7))


@pytest.mark.parametrize("freeze", [True, False])
def test_a_scalar_mix_trains_with_its_head(tiny_encoder, freeze):
    """The mix's weights are the head's parameters: the optimizer trains them (they were once left out)."""
    from retrain.run import RetrainConfig
    from supernet.data.tasks import get_task
    from supernet.nn.arch import Architecture
    from supernet.nn.model import build_model
    from supernet.train.finetune import fine_tune
    space = get_space(SPACE)
    arch = Architecture(SPACE, space.canonical({**space.reference(), "pool": "mean", "layers": "scalar_mix"}))
    model = build_model(arch, tiny_encoder, 2)
    before = model.scalar_mix.weights.detach().clone()
    fine_tune(model, get_task("mrpc"), _pairs(16), _pairs(8), 0,
              RetrainConfig(max_steps=3, batch_size=8, seeds=(1,), lr_head=0.1, freeze_encoder=freeze), 1, None)
    assert not torch.equal(before, model.scalar_mix.weights)


def test_a_fine_tuned_supernet_step_reads_one_view_of_the_pair(tiny_encoder, tmp_path, monkeypatch):
    """Under fine-tuning a step's heads all read the pair jointly or all read its texts apart: one encoder
    forward, or one per text, never three (a mixed step cost 1.5x a BO-HB trial's step). Each head's pair
    read stays uniform over the space's; sampling without ``one_view`` (a frozen encoder's: its cache holds
    both views) still mixes them."""
    import supernet.train.supernet as T
    from supernet.data.tasks import get_task
    space = get_space(SPACE)
    counts, mixed = {p: 0 for p in space.pair}, 0
    for step in range(400):
        shared = T.step_architectures(space, T.arch_rng(0, step), 4, one_view=True)
        free = T.step_architectures(space, T.arch_rng(0, step), 4)
        needs = space.needs(shared)
        assert not (needs.joint and needs.sides)
        assert [{k: v for k, v in a.items() if k != "pair"} for a in shared] == \
               [{k: v for k, v in a.items() if k != "pair"} for a in free]  # only the pair read moves
        mixed += space.needs(free).joint and space.needs(free).sides
        for a in shared[1:]:
            counts[a["pair"]] += 1
    assert mixed > 100 and all(240 <= c <= 360 for c in counts.values()), (mixed, counts)  # 1,200 draws, 300 each
    forwards = []
    real = T.HeadSupernet.features
    monkeypatch.setattr(T.HeadSupernet, "features", lambda self, batch, needs, *a: forwards.append(
        needs.joint + 2 * needs.sides) or real(self, batch, needs, *a))
    net = HeadSupernet(tiny_encoder, space, 2)
    cfg = T.TrainConfig(space=SPACE, max_steps=12, batch_size=4, heads_per_step=4, eval_every=100)
    T.train_supernet(net, get_task("mrpc"), _pairs(24), _pairs(8), 0, cfg, tmp_path)
    assert len(forwards) >= 12 and max(forwards) <= 2 and set(forwards) == {1, 2}, forwards
