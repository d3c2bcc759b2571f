"""The house rules of issue #29, checked: settings declared once and derived, one frozen-encoder path with
one cache type, builders in the strategy registry."""
from __future__ import annotations

import ast
import dataclasses

import numpy as np
import pytest
import torch

from conftest import ROOT

SOURCES = ("supernet", "strategies", "retrain", "bench")


def _source_files():
    for pkg in SOURCES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _non_default(f: dataclasses.Field):
    """A valid value of config field ``f`` that differs from its default."""
    d = f.default
    if f.name == "device":
        return "cpu:0"
    if f.name == "precision":
        return "bf16"
    if isinstance(d, bool):
        return not d
    if f.name in ("max_steps", "checkpoint_every"):
        return 7
    if isinstance(d, float):
        return d * 0.5 if d else 0.03
    if isinstance(d, int):
        return d + 3
    raise AssertionError(f"no test value for {f.name}")


def test_every_fine_tuning_setting_reaches_the_weight_sharing_supernet():
    """``retrain.compare``'s fine-tuning flags configure the supernet too, by construction: each field that
    ``RetrainConfig`` shares with the supernet's ``TrainConfig`` arrives there (``--grad-clip`` and
    ``--checkpoint-every`` once did not)."""
    from retrain.comparison import CompareConfig, search_job
    from retrain.run import RetrainConfig
    from supernet.data.sources import DataConfig
    from supernet.nn.encoder import EncoderConfig
    from supernet.train.supernet import TrainConfig
    shared = [f for f in dataclasses.fields(RetrainConfig) if f.name in {g.name for g in dataclasses.fields(TrainConfig)}]
    assert {"grad_clip", "checkpoint_every", "lr_encoder", "freeze_encoder", "epochs"} <= {f.name for f in shared}
    for f in shared:
        value = _non_default(f)
        ft = RetrainConfig(**{f.name: value})
        job = search_job(CompareConfig(space="tiny"), DataConfig(), EncoderConfig(), ft)
        assert getattr(job.train, f.name) == value, f.name
    # the supernet's own budget flags still override the shared one
    job = search_job(CompareConfig(space="tiny", supernet_epochs=2.0), DataConfig(), EncoderConfig(),
                     RetrainConfig(epochs=5.0, grad_clip=0.25))
    assert (job.train.epochs, job.train.grad_clip, job.train.seed) == (2.0, 0.25, 0)


@pytest.mark.parametrize("entry", ["supernet.search", "retrain.compare", "retrain.cli", "supernet.space"])
def test_each_setting_is_declared_once(entry):
    """No two configs of one command declare the same setting (``--seed`` was declared twice and shared)."""
    import importlib

    from supernet.core.config import Config
    module = importlib.import_module(entry)
    classes = {c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Config) and c is not Config}
    if entry == "supernet.search":
        classes = set(module.PARTS.values())
    assert len(classes) >= 1
    owners: dict[str, list[str]] = {}
    for cls in classes:
        own = {f.name for f in dataclasses.fields(cls)}
        for base in cls.__mro__[1:]:  # a field inherited from a shared base is one declaration
            if dataclasses.is_dataclass(base) and base in classes:
                own -= {f.name for f in dataclasses.fields(base)}
        for name in own:
            owners.setdefault(name, []).append(cls.__name__)
    doubles = {k: v for k, v in owners.items() if len(v) > 1}
    assert not doubles, doubles


def test_no_strategy_name_is_compared_outside_the_registry():
    """Strategies differ by what their registry entry builds, never by a name test in the code."""
    from strategies.registry import NAMES
    hits = []
    for path in _source_files():
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Compare, ast.match_case)):
                names = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and c.value in NAMES]
                if names:
                    hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert not hits, hits


def test_every_strategy_builds_from_its_registry_entry(tmp_path):
    from strategies.config import OneShotConfig, SearchConfig
    from strategies.registry import ARCHITECTURE, STRATEGIES, WEIGHTS
    from supernet.nn.space import get_space
    for name, spec in STRATEGIES.items():
        assert spec.learns in (WEIGHTS, ARCHITECTURE)
        if spec.search is not None:
            strategy = spec.build_search(SearchConfig(strategy=name), 0, tmp_path / f"{name}.pt", None, "tiny")
            assert type(strategy).__name__.startswith("Resumable")
        if spec.oneshot is not None:
            strategy = spec.build_oneshot(get_space("tiny"), OneShotConfig(), 1.0, 0)
            assert spec.nni_class.split(" ")[0] in [c.__name__ for c in type(strategy).__mro__], name


def test_the_frozen_encoder_has_one_path_and_one_cache_type():
    """``apply_regime`` is the one place an encoder is frozen, and ``EncoderCache`` the one cache: the
    types it replaced are gone, and nothing else builds one by hand."""
    gone = ("SplitFeatures", "dev_features", "score_heads_on", "head_features")
    frozen = ROOT / "supernet" / "train" / "frozen.py"
    for path in _source_files():
        text = path.read_text()
        for name in gone:
            assert name not in text, f"{path.relative_to(ROOT)} still names {name}"
        if path != frozen:
            assert "requires_grad_(False)" not in text, f"{path.relative_to(ROOT)} freezes an encoder itself"
            assert "EncoderCache(" not in text, f"{path.relative_to(ROOT)} builds a cache by hand"


def _toy_data(n=9, seed=0):
    from supernet.data.encoded import Encoded
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1000, 2000, int(k)).astype(np.int32) for k in rng.integers(3, 11, n)]
    return Encoded(ids, [np.zeros(len(x), np.int8) for x in ids], np.arange(n) % 2)


def test_encoder_cache_hands_out_what_the_encoder_computed(tiny_encoder):
    """Packed token states, gathered for any rows, equal the encoder's own outputs on those rows; the
    poolings too; ``outputs`` keeps row order."""
    from supernet.data.encoded import pad_batch
    from supernet.nn.encoder import encoder_outputs
    from supernet.nn.ops import POOLINGS
    from supernet.nn.reading import Needs
    from supernet.train.frozen import EncoderCache
    data = _toy_data()
    cache = EncoderCache.build(tiny_encoder, data, 0, Needs(hidden=True))
    assert cache.tokens.shape[0] == int(data.lengths.sum())  # no padding stored
    rows = np.array([7, 2, 5])
    f = cache.features(rows)
    batch = pad_batch(data, rows, 0)
    tiny_encoder.eval()
    with torch.no_grad():
        out = encoder_outputs(tiny_encoder, batch)
    hidden, pooler = out.hidden, out.pooler
    mask = batch["attention_mask"]
    assert torch.equal(f.mask, mask)
    torch.testing.assert_close(f.hidden * mask[..., None], hidden * mask[..., None], atol=1e-5, rtol=1e-5)
    for name in POOLINGS:
        torch.testing.assert_close(f.pooled[name], POOLINGS[name](hidden, mask, pooler), atol=1e-5, rtol=1e-5)
    lengths = cache.outputs(lambda feats: feats.mask.sum(1, keepdim=True))
    assert lengths.squeeze(1).tolist() == data.lengths.tolist()


def test_encoder_cache_keeps_no_batch_alive_while_it_encodes(tiny_encoder, monkeypatch):
    """Caching fills outputs allocated once: no batch's hidden states outlive the next batch. (Per-batch
    chunks did keep them: the [CLS] pooling is a view of them, and a full SST-2 peaked at 8.3 GiB.)"""
    import weakref
    from supernet.nn.encoder import encoder_outputs
    from supernet.nn.reading import Needs
    from supernet.train import frozen
    monkeypatch.setattr(frozen, "BATCH", 2)
    data, alive = _toy_data(), []

    def encode(batch, all_layers):
        out = encoder_outputs(tiny_encoder, batch, all_layers)
        alive.append(weakref.ref(out.hidden))
        stale = [i for i, ref in enumerate(alive[:-2]) if ref() is not None]
        assert not stale, f"batches {stale} are still held"
        return out

    cache = frozen.EncoderCache.build(encode, data, 0, Needs(hidden=True), modules=(tiny_encoder,))
    assert len(alive) == 5 and cache.tokens.shape[0] == int(data.lengths.sum())
    torch.testing.assert_close(cache.pooled["cls"], frozen.EncoderCache.build(tiny_encoder, data, 0).pooled["cls"])


def test_the_one_shot_head_holds_its_head_as_a_submodule():
    """No hidden submodule: the wrapped head is in the module tree (its parameters once each), NNI's
    top-down traversal does not wrap it twice, and a policy logs itself."""
    from strategies.oneshot import GumbelPolicy, OneShotHead, head_hook
    from supernet.nn.head import SuperHead
    from supernet.nn.space import get_space
    space = get_space("tiny")
    head = SuperHead(space, 8, 2)
    hook = head_hook("sample")
    wrapped = hook(head, "head", {}, {})
    assert isinstance(wrapped, OneShotHead) and wrapped.head is head
    assert hook(head, "head.head", {}, {}) is None  # NNI then visits the wrapper's children
    assert {id(p) for p in wrapped.parameters()} == {id(p) for p in head.parameters()}
    alphas = {k: torch.nn.Parameter(torch.zeros(len(v))) for k, v in space.labels().items()}
    logged = []
    writer = type("W", (), {"add_scalar": lambda self, *a: logged.append(a)})()
    GumbelPolicy(space.labels(), alphas, (1.0, 0.5)).log(writer, 10)
    assert logged and logged[0][0] == "gumbel/temperature"
    wrapped.policy.log(writer, 10)  # uniform sampling has nothing of its own to log
    assert len(logged) == 1
    wrapped.policy.resample({})
    assert wrapped.needs().pools == (wrapped.policy.choices()["pool"],)

