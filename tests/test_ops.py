"""Every registry entry: the frozen op computes what the supernet op computes for that choice."""
import pytest
import torch
from torch import nn

from supernet.nn.ops import (
    ACTIVATIONS,
    NORMS,
    POOLINGS,
    Pooling,
    SuperBatchNorm1d,
    SuperHiddenLayer,
    SuperLinear,
    create_activation,
    fit_width,
)

MAX_IN, MAX_W = 24, 32


def _randomise(module: nn.Module):
    """Non-trivial affine parameters and running stats, so a wrong slice cannot pass by luck."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
        for name, b in module.named_buffers():
            if "running_var" in name:
                b.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                b.normal_()


def test_super_linear_slices_one_max_size_matrix():
    op = SuperLinear(MAX_IN, MAX_W)
    x = torch.randn(5, 10)
    plain = op.freeze(10, 7)
    assert isinstance(plain, nn.Linear) and plain.weight.shape == (7, 10)
    assert torch.equal(plain.weight, op.linear.weight[:7, :10])
    assert torch.allclose(op(x, 7), plain(x))
    plain.weight.data.zero_()  # a copy, not a view: the supernet keeps its weights
    assert op.linear.weight[:7, :10].abs().sum() > 0


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("width, in_features", [(8, 24), (32, 16)])
def test_hidden_layer_freeze_allclose(act, norm, residual, width, in_features):
    layer = SuperHiddenLayer(MAX_IN, MAX_W, tuple(NORMS))
    _randomise(layer)
    layer.eval()
    x = torch.randn(6, in_features)
    args = dict(width=width, activation=act, dropout=0.3, norm=norm, residual=residual)
    frozen = layer.freeze(in_features, **args).eval()
    assert not any(isinstance(m, (SuperLinear,)) for m in frozen.modules())
    assert torch.allclose(layer(x, **args), frozen(x), atol=1e-6)


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_norm_freeze_allclose_in_training_mode(norm):
    op = NORMS[norm](MAX_W)
    _randomise(op)
    frozen = op.freeze(12)
    x = torch.randn(8, 12)
    assert torch.allclose(op.train()(x), frozen.train()(x), atol=1e-6)


def test_batchnorm_statistics_live_in_the_shared_buffer():
    op = SuperBatchNorm1d(MAX_W).train()
    op(torch.randn(16, 8) + 3.0)
    assert op.norm.running_mean[:8].mean() > 0.2       # updated in place through the slice
    assert torch.equal(op.norm.running_mean[8:], torch.zeros(MAX_W - 8))
    frozen = op.freeze(8)
    assert torch.equal(frozen.running_mean, op.norm.running_mean[:8])


@pytest.mark.parametrize("pool", sorted(POOLINGS))
def test_pooling_registry(pool):
    hidden = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    pooler_output = torch.randn(3, 4)
    out = Pooling(pool)(hidden, mask, pooler_output)
    expected = {"cls": hidden[:, 0], "pooler": pooler_output,
                "mean": torch.stack([hidden[i, :n].mean(0) for i, n in enumerate([5, 3, 1])]),
                "max": torch.stack([hidden[i, :n].amax(0) for i, n in enumerate([5, 3, 1])])}[pool]
    assert torch.allclose(out, expected, atol=1e-6)


def test_fit_width_truncates_or_zero_pads():
    x = torch.arange(6.0).reshape(1, 6)
    assert fit_width(x, 4).tolist() == [[0, 1, 2, 3]]
    assert fit_width(x, 8).tolist() == [[0, 1, 2, 3, 4, 5, 0, 0]]


def test_unknown_registry_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'; valid: \['elu'"):
        create_activation("swish")
