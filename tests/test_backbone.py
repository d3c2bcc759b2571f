"""Backbone spaces: per-layer FFN keep/skip and attention vs depthwise-separable convolution.

Supernet ops against their frozen forms (allclose), against transformers' own forward, exact
parameter accounting, the space's names and labels, scoring with per-backbone encoder outputs,
the cost objective and the Pareto front.
"""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from supernet.nn.arch import Architecture
from supernet.nn.backbone import BackboneEncoder, ConvBlock, SuperBackbone
from supernet.nn.encoder import tiny_encoder
from supernet.nn.space import FFN_CHOICES, MIXERS, backbone_label, bind_space, get_space
from supernet.nn.supernet import HeadSupernet
from supernet.nn.tokens import TOKEN_LABELS
from supernet.scoring.cost import Objective, pareto_front, predicted_latency
from supernet.train.supernet import step_architectures

from conftest import make_batch

LAYERS = 3


def _space(parts: str = "ffn+conv", layers: int = LAYERS):
    return get_space(f"tiny+{parts}@{layers}")


def _supernet(parts: str = "ffn+conv", seed: int = 0) -> HeadSupernet:
    torch.manual_seed(seed)
    net = HeadSupernet(tiny_encoder(layers=LAYERS, seed=seed), _space(parts), 2)
    with torch.no_grad():  # the conv blocks' zero-initialised pointwise layers would hide slicing bugs
        for layer in net.encoder.layers:
            layer.conv.pointwise.weight.normal_(0, 0.2)
            layer.conv.pointwise.bias.normal_(0, 0.2)
    return net.eval()


def _arch(space, mixer: str, ffn: str, **head) -> dict:
    choices = space.sample(random.Random(0))
    choices.update(head)
    for j in range(space.encoder_layers):
        choices[backbone_label("mixer", j)] = mixer
        choices[backbone_label("ffn", j)] = ffn
    return choices


def test_full_backbone_equals_the_transformers_forward():
    """All attention, all FFNs: our layer loop computes what transformers' BertModel computes."""
    encoder = tiny_encoder(layers=LAYERS).eval()
    batch = make_batch()
    expected = encoder(**batch)
    net = HeadSupernet(encoder, _space(), 2).eval()
    out = net.encode(batch, _arch(net.space, "attention", "keep"))
    hidden, pooler = out.hidden, out.pooler
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(hidden[mask], expected.last_hidden_state[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooler, expected.pooler_output, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mixer,ffn", list(itertools.product(MIXERS, FFN_CHOICES)))
def test_frozen_backbone_matches_the_supernet(mixer, ffn):
    net = _supernet()
    batch = make_batch()
    choices = _arch(net.space, mixer, ffn)
    frozen = net.freeze(choices).eval()
    assert isinstance(frozen.encoder, BackboneEncoder)
    torch.testing.assert_close(frozen(**batch), net(batch, choices), atol=1e-6, rtol=1e-5)
    kinds = {type(layer.mixer).__name__ for layer in frozen.encoder.layers}
    assert kinds == ({"SelfAttentionBlock"} if MIXERS[mixer] is None else {"ConvBlock"})
    if MIXERS[mixer]:
        assert frozen.encoder.layers[0].mixer.depthwise.kernel_size == (MIXERS[mixer],)
    assert all((layer.ffn is not None) == FFN_CHOICES[ffn] for layer in frozen.encoder.layers)


def test_mixed_layers_match_the_supernet_and_count_their_parameters():
    net = _supernet()
    batch = make_batch()
    for i in range(12):
        choices = net.space.sample(random.Random(i))
        frozen = net.freeze(choices).eval()
        torch.testing.assert_close(frozen(**batch), net(batch, choices), atol=1e-6, rtol=1e-5)
        assert net.encoder_parameters(choices) == sum(p.numel() for p in frozen.encoder.parameters())


def test_frozen_weights_are_copies():
    net = _supernet()
    frozen = net.freeze(_arch(net.space, "conv7", "keep"))
    with torch.no_grad():
        for p in frozen.encoder.parameters():
            p.add_(1.0)
    batch = make_batch()
    again = net.freeze(_arch(net.space, "conv7", "keep")).eval()
    torch.testing.assert_close(again(**batch), net(batch, _arch(net.space, "conv7", "keep")), atol=1e-6, rtol=1e-5)


def test_skipping_every_ffn_removes_exactly_their_parameters():
    encoder = tiny_encoder(layers=LAYERS)
    ffn_params = sum(p.numel() for layer in encoder.encoder.layer
                     for m in (layer.intermediate, layer.output) for p in m.parameters())
    total = sum(p.numel() for p in encoder.parameters())
    net = HeadSupernet(encoder, _space("ffn"), 2)
    keep = net.freeze(_arch(net.space, "attention", "keep")).encoder
    skip = net.freeze(_arch(net.space, "attention", "skip")).encoder
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(keep) == total
    assert count(keep) - count(skip) == ffn_params > 0
    assert not any(".ffn." in name for name, _ in skip.named_parameters())


def test_kernel_k_uses_the_centre_taps_of_the_shared_kernel():
    net = _supernet()
    conv = net.encoder.layers[0].conv
    for k in (3, 7, 15):
        frozen = conv.freeze(k)
        start = (15 - k) // 2
        torch.testing.assert_close(frozen.depthwise.weight, conv.depthwise.weight[:, :, start:start + k])


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_padding_does_not_change_real_tokens(mixer):
    """A row's outputs are the same with and without extra padding (the conv zeroes pads first)."""
    net = _supernet()
    frozen = net.freeze(_arch(net.space, mixer, "keep")).eval()
    batch = make_batch(batch_size=2, length=7)
    batch["attention_mask"][:] = 1
    padded = {k: torch.cat([v, torch.zeros(2, 5, dtype=v.dtype)], 1) for k, v in batch.items()}
    a = frozen.encoder(**batch).last_hidden_state
    b = frozen.encoder(**padded).last_hidden_state[:, :7]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_new_conv_block_starts_as_a_skipped_mixer():
    """Zero-initialised pointwise: before training, a conv layer is LayerNorm(x) (with the
    attention block's LayerNorm), not noise inside the pretrained network."""
    torch.manual_seed(0)
    net = HeadSupernet(tiny_encoder(layers=LAYERS), _space(), 2).eval()
    layer = net.encoder.layers[0]
    x = torch.randn(2, 5, 32)
    mask = torch.ones(2, 5, dtype=torch.long)
    torch.testing.assert_close(layer.conv(x, mask, 7), layer.attention.norm(x))


def test_training_updates_only_the_sampled_path():
    net = _supernet().train()
    choices = _arch(net.space, "conv3", "skip", pool="mean")
    net(make_batch(), choices).sum().backward()
    layer = net.encoder.layers[0]
    assert layer.conv.depthwise.weight.grad is not None and layer.conv.depthwise.weight.grad.abs().sum() > 0
    assert layer.attention.query.weight.grad is None and layer.ffn.up.weight.grad is None


def test_heads_of_one_step_share_the_encoder_choices():
    space = _space()
    archs = step_architectures(space, random.Random(3), 6)
    assert len({space.backbone_key(a) for a in archs}) == 1
    assert len({(a["pool"], a["depth"], a["width_0"]) for a in archs}) > 1
    head_only = step_architectures(get_space("tiny"), random.Random(3), 6)
    drawn = [get_space("tiny").sample(r) for r in [random.Random(3)] for _ in range(6)]
    # no encoder choices to share; the heads share the first one's token block (one block forward per step)
    block = {k: drawn[0][k] for k in TOKEN_LABELS if k in drawn[0]}
    assert head_only == [drawn[0], *({**a, **block} for a in drawn[1:])]


def test_every_nth_step_trains_the_full_pretrained_encoder():
    from supernet.train.supernet import TrainConfig, is_full_backbone_step
    space = _space()
    full = {k: v for k, v in space.reference().items() if k.startswith("enc_")}
    archs = step_architectures(space, random.Random(3), 4, full_backbone=True)
    assert all({k: a[k] for k in full} == full for a in archs)
    # the heads are the ones sampled anyway: the rng is consumed the same way
    assert [a["width_0"] for a in archs] == [a["width_0"] for a in step_architectures(space, random.Random(3), 4)]
    assert [is_full_backbone_step(TrainConfig(full_backbone_every=3), s) for s in range(6)] == [True, False, False] * 2
    assert not any(is_full_backbone_step(TrainConfig(full_backbone_every=0), s) for s in range(6))
    with pytest.raises(ValueError, match="--full-backbone-every must be >= 0"):
        TrainConfig(full_backbone_every=-1)


def test_optimizer_trains_conv_blocks_at_the_head_rate():
    from supernet.train.loop import make_optimizer
    from supernet.train.supernet import TrainConfig
    net = _supernet()
    optimizer, _ = make_optimizer(net, TrainConfig(lr_encoder=1e-5, lr_head=1e-3), 10)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    layer = net.encoder.layers[1]
    assert lr_of[id(layer.conv.depthwise.weight)] == 1e-3
    assert lr_of[id(layer.attention.query.weight)] == 1e-5
    assert len(lr_of) == len(list(net.parameters()))


# ---------------------------------------------------------------- the space and the record

def test_backbone_labels_and_size():
    space = get_space("tiny+ffn+conv@2")
    labels = space.labels()
    assert labels["enc_ffn_1"] == ("keep", "skip")
    assert labels["enc_mixer_0"] == ("attention", "conv3", "conv7", "conv15")
    assert space.size() == get_space("tiny").size() * 8 ** 2
    assert "enc_mixer_0" not in get_space("tiny+ffn@2").labels()
    assert get_space("head+ffn@6").name == "paper+ffn@6"
    assert bind_space("small+conv", 6).name == "small+conv@6"
    assert bind_space("small", 6) is get_space("small")


@pytest.mark.parametrize("name,message", [
    ("tiny+ffn", "needs the encoder's depth"),
    ("tiny+fnn@2", "backbone parts must be"),
    ("tiny+ffn+ffn@2", "backbone parts must be"),
    ("tiny@2", "has none"),
    ("tiny+ffn@0", "positive integer"),
    ("huge+ffn@2", "head preset 'huge'"),
])
def test_bad_space_names_name_the_problem(name, message):
    with pytest.raises(ValueError, match=message):
        get_space(name)


def test_bind_refuses_another_depth():
    with pytest.raises(ValueError, match="bound to 4 encoder layers, and the encoder has 6"):
        bind_space("small+ffn@4", 6)


def test_record_round_trip_and_values_outside_the_space(tmp_path):
    space = get_space("tiny+ffn+conv@2")
    arch = Architecture(space.name, space.sample(random.Random(1)), encoder="e", task="mrpc")
    arch.save(tmp_path / "a.json")
    assert Architecture.load(tmp_path / "a.json") == arch
    bad = {**arch.choices, "enc_mixer_1": "conv5"}
    with pytest.raises(ValueError, match="enc_mixer_1='conv5' is outside space"):
        Architecture(space.name, bad)
    with pytest.raises(ValueError, match="unknown key 'enc_ffn_2'"):
        Architecture(space.name, {**arch.choices, "enc_ffn_2": "keep"})


def test_a_non_bert_layout_is_refused():
    from transformers import GPT2Config, GPT2Model
    gpt = GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    gpt.config.num_hidden_layers = 2
    with pytest.raises(ValueError, match="BERT-layout encoder"):
        SuperBackbone(gpt, get_space("tiny+ffn@2"))


# ---------------------------------------------------------------- scoring, costs, objective

@pytest.fixture()
def backbone_state(tmp_path, tokenizer, glue_dir):
    from supernet.data.encoded import encode
    from supernet.data.sources import DataConfig, load_splits
    from supernet.scoring.candidates import write_search_state
    spec, splits = load_splits(DataConfig(task="mrpc", glue_dir=str(glue_dir), max_eval_samples=40,
                                          max_train_samples=40))
    dev = encode(splits["validation"], tokenizer, 64, None)
    calib = encode(splits["train"], tokenizer, 64, None)
    net = _supernet()
    path = tmp_path / "search_state.pt"
    write_search_state(path, net, spec.metrics, dev, calib, tokenizer.pad_token_id, "cpu",
                       Objective("latency", 0.1))
    return path, net, spec, dev


def test_scorer_matches_the_frozen_model_and_reuses_encoder_outputs(backbone_state, tokenizer):
    from supernet.core.metrics import compute_metrics
    from supernet.data.encoded import batch_indices, pad_batch
    from supernet.scoring.candidates import CandidateScorer
    path, net, spec, dev = backbone_state
    scorer = CandidateScorer.from_file(path)
    space = scorer.space
    # no batch norm: the scorer's recalibration is then a no-op and the frozen model is the reference
    cands = [_arch(space, m, f, norm_0="layernorm", norm_1="none") for m, f in (("conv7", "skip"), ("attention", "keep"))]
    cands.append({**cands[0], "pool": "cls" if cands[0]["pool"] != "cls" else "mean", "depth": 0})
    for c in cands:
        frozen = net.freeze(c).eval()
        with torch.no_grad():
            out = torch.cat([frozen(**{k: v for k, v in pad_batch(dev, i, tokenizer.pad_token_id).items()
                                       if k != "labels"})
                             for i in batch_indices(dev, 16, shuffle=False, bucket=False)])
        expected = compute_metrics(spec.metrics, out.numpy(), dev.labels)
        got = scorer.score(c)
        assert got["f1"] == pytest.approx(expected["f1"]) and got["accuracy"] == pytest.approx(expected["accuracy"])
        assert got["params"] == sum(p.numel() for p in frozen.parameters())
        assert got["objective"] == pytest.approx(
            got["f1"] - 0.1 * got["latency_ms"] / scorer.costs["reference"]["latency_ms"])
    assert len([k for k in scorer._cache if k[0] == "dev"]) == 2  # the third candidate reused the first's encoder


def test_lookup_latency_orders_architectures_by_their_blocks(backbone_state):
    from supernet.scoring.candidates import CandidateScorer
    scorer = CandidateScorer.from_file(backbone_state[0])
    table = scorer.costs["latency_table"]
    assert set(table) >= {"embeddings", "attention", "conv3", "conv7", "conv15", "ffn", "pooler"}
    space = scorer.space
    full = predicted_latency(space, table, _arch(space, "attention", "keep"))
    no_ffn = predicted_latency(space, table, _arch(space, "attention", "skip"))
    assert full - no_ffn == pytest.approx(LAYERS * table["ffn"])
    assert scorer.costs["reference"]["latency_ms"] == pytest.approx(full)


def test_objective_and_its_validation():
    scores = {"f1": 0.8, "params": 50.0}
    assert Objective()(scores, "f1", {"params": 100.0}) == 0.8
    assert Objective("params", 0.1)(scores, "f1", {"params": 100.0}) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="--penalty-weight needs --penalty"):
        Objective("none", 0.1)
    with pytest.raises(ValueError, match="--penalty must be one of"):
        Objective("flops", 0.1)
    with pytest.raises(ValueError, match="--penalty-weight must be >= 0"):
        Objective("params", -1.0)


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    rng = np.random.default_rng(0)
    points = [{"params": float(rng.integers(1, 50)), "f1": float(rng.random())} for _ in range(60)]
    front = pareto_front(points, "params", "f1")
    dominated = lambda p: any(q["params"] <= p["params"] and q["f1"] >= p["f1"] and
                              (q["params"], q["f1"]) != (p["params"], p["f1"]) for q in points)
    assert {id(p) for p in front} == {id(p) for p in points if not dominated(p)}
    assert [p["params"] for p in front] == sorted(p["params"] for p in front)


def test_retrained_backbone_model_saves_and_loads(tmp_path):
    from supernet.nn.model import build_model
    from supernet.nn.saved import load_model, save_model
    space = get_space(f"tiny+ffn+conv@{LAYERS}")
    arch = Architecture(space.name, _arch(space, "conv15", "skip", pool="mean"), task="mrpc")
    model = build_model(arch, tiny_encoder(layers=LAYERS), 2).eval()
    assert isinstance(model.encoder.layers[0].mixer, ConvBlock) and model.encoder.layers[0].ffn is None
    save_model(tmp_path / "model.pt", model, arch, 2, None, ("sentence1", "sentence2"), 128)
    batch = make_batch()
    torch.testing.assert_close(load_model(tmp_path / "model.pt")(**batch), model(**batch))
    with pytest.raises(ValueError, match="has 3 encoder layers, and the encoder has 2"):
        build_model(arch, tiny_encoder(layers=2), 2)
