"""Token-level head blocks: frozen == supernet for every registry entry, padding never leaks, and whole
sampled heads with token blocks on the real 2-layer MiniLM."""
from __future__ import annotations

import itertools
import random

import pytest
import torch

from supernet.nn.head import SuperHead
from supernet.nn.ops import POOLINGS
from supernet.nn.reading import Features
from supernet.nn.space import get_space
from supernet.nn.supernet import HeadSupernet
from supernet.nn.tokens import TOKEN_KINDS, SuperTokenBlocks

from conftest import make_batch

SPACE = get_space("tiny")
HIDDEN = 12


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-default weights everywhere (norm gains included), so a wrong slice cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if p.ndim == 1 else 0.0))
    return module


def _inputs(batch: int = 3, length: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, HIDDEN, generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return hidden, mask


def _block_choices():
    """Every token block of the tiny space, one dict per distinct block."""
    for kind in SPACE.tok_kind:
        labels = TOKEN_KINDS[kind]
        for values in itertools.product(*(getattr(SPACE, label) for label in labels)):
            yield {"tok_kind": kind, **{label: getattr(SPACE, label)[0]
                                        for label in TOKEN_KINDS["conv"] + TOKEN_KINDS["attention"]},
                   **dict(zip(labels, values))}


@pytest.mark.parametrize("choices", list(_block_choices())[1:], ids=lambda c: "-".join(map(str, c.values())))
def test_frozen_block_computes_what_the_supernet_block_computes(choices):
    blocks = _randomise(SuperTokenBlocks(SPACE, HIDDEN)).eval()
    frozen = blocks.freeze(choices).eval()
    hidden, mask = _inputs()
    expected = blocks(hidden, mask, choices)
    torch.testing.assert_close(frozen(hidden, mask), expected, rtol=1e-5, atol=1e-5)
    width = choices["tok_width"] if choices["tok_kind"] == "conv" else HIDDEN
    assert expected.shape == (3, 7, width)


def test_none_is_the_identity_and_freezes_to_nothing():
    blocks = SuperTokenBlocks(SPACE, HIDDEN)
    hidden, mask = _inputs()
    assert blocks(hidden, mask, {"tok_kind": "none"}) is hidden and blocks.freeze({"tok_kind": "none"}) is None


@pytest.mark.parametrize("kind", ["conv", "attention"])
def test_padding_never_reaches_a_real_token(kind):
    """Real tokens' outputs do not change when the pads' hidden states change, or when more pads follow."""
    blocks = _randomise(SuperTokenBlocks(SPACE, HIDDEN), 1).eval()
    choices = {"tok_kind": kind, "tok_layers": 2, "tok_width": 16, "tok_kernel": 5, "tok_heads": 2, "tok_skip": True}
    hidden, mask = _inputs()
    out = blocks(hidden, mask, choices)
    garbage = torch.where(mask.bool().unsqueeze(-1), hidden, torch.full_like(hidden, 1e3))
    torch.testing.assert_close(blocks(garbage, mask, choices)[mask.bool()], out[mask.bool()])
    longer = torch.cat([hidden, torch.randn(3, 4, HIDDEN)], 1)
    longer_mask = torch.cat([mask, torch.zeros(3, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(blocks(longer, longer_mask, choices)[:, :7][mask.bool()], out[mask.bool()],
                               rtol=1e-5, atol=1e-5)
    frozen = blocks.freeze(choices).eval()
    torch.testing.assert_close(frozen(garbage, mask)[mask.bool()], out[mask.bool()], rtol=1e-5, atol=1e-5)


def test_the_masking_test_catches_an_unmasked_conv(monkeypatch):
    """Without zeroing the pads before the convolution, the padding test above fails."""
    from supernet.nn import tokens
    monkeypatch.setattr(tokens, "_masked", lambda x, mask: x)
    blocks = _randomise(SuperTokenBlocks(SPACE, HIDDEN), 1).eval()
    choices = {"tok_kind": "conv", "tok_layers": 1, "tok_width": 16, "tok_kernel": 5, "tok_heads": 1,
               "tok_skip": False}
    hidden, mask = _inputs()
    garbage = torch.where(mask.bool().unsqueeze(-1), hidden, torch.full_like(hidden, 1e3))
    assert not torch.allclose(blocks(garbage, mask, choices)[mask.bool()], blocks(hidden, mask, choices)[mask.bool()])


def test_elastic_heads_share_the_first_head_slices():
    """h heads use the first h x head_dim rows of Q/K/V: the 1-head block's query weight is the top
    slice of the 2-head block's."""
    blocks = _randomise(SuperTokenBlocks(SPACE, HIDDEN)).eval()
    one = blocks.freeze({"tok_kind": "attention", "tok_layers": 1, "tok_heads": 1, "tok_skip": False})
    two = blocks.freeze({"tok_kind": "attention", "tok_layers": 1, "tok_heads": 2, "tok_skip": False})
    d = HIDDEN // 2
    assert one.layers[0].q.weight.shape == (d, HIDDEN) and two.layers[0].q.weight.shape == (2 * d, HIDDEN)
    torch.testing.assert_close(two.layers[0].q.weight[:d], one.layers[0].q.weight)
    torch.testing.assert_close(two.layers[0].out.weight[:, :d], one.layers[0].out.weight)


def test_a_space_with_more_heads_than_hidden_units_is_refused():
    with pytest.raises(ValueError, match="offers 16 attention heads .* hidden size is 12"):
        SuperHead(get_space("paper"), 12, 2)


@pytest.fixture(scope="module")
def minilm2():
    from supernet.nn.encoder import load_encoder
    return load_encoder(None, 2)


def test_whole_sampled_heads_with_token_blocks_freeze_exactly_on_minilm(minilm2):
    """The supernet (MiniLM's first 2 layers + every head of ``paper``) and the frozen model of sampled
    architectures with token blocks compute the same outputs on a ragged batch."""
    space = get_space("paper")
    torch.manual_seed(0)
    supernet = HeadSupernet(minilm2, space, 3).eval()
    _randomise(supernet.head, 3)
    batch = make_batch(batch_size=4, length=11)
    rng, archs = random.Random(0), {"conv": [], "attention": []}
    while min(len(v) for v in archs.values()) < 3:  # three heads of each block kind
        arch = space.canonical(space.sample(rng))
        if space.uses_tokens(arch) and len(archs[arch["tok_kind"]]) < 3:
            archs[arch["tok_kind"]].append(arch)
    for arch in archs["conv"] + archs["attention"]:
        frozen = supernet.freeze(arch).eval()
        assert frozen.tokens is not None
        torch.testing.assert_close(frozen(**batch), supernet(batch, arch), rtol=1e-4, atol=1e-4)


def test_head_reads_the_pooling_of_the_blocks_output():
    """A head with a token block pools the block's output, not the encoder's."""
    head = _randomise(SuperHead(SPACE, HIDDEN, 2)).eval()
    hidden, mask = _inputs()
    f = Features({p: POOLINGS[p](hidden, mask, None) for p in SPACE.pool}, hidden, mask)
    arch = {**SPACE.sample(random.Random(1)), "pool": "mean", "depth": 0, "tok_kind": "conv", "tok_layers": 1,
            "tok_width": 8, "tok_kernel": 3, "tok_skip": False}
    tokens = head.tokens(hidden, mask, arch)
    torch.testing.assert_close(head(f, arch), head(POOLINGS["mean"](tokens, mask, None), arch))
