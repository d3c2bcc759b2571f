import random

import pytest
import torch
from nni.mutable import Categorical

from supernet.nn.encoder import load_encoder
from supernet.nn.space import get_space
from supernet.nn.supernet import HeadSupernet

from conftest import make_batch


def _assert_frozen_matches(supernet, space, n, seed, batch):
    rng = random.Random(seed)
    supernet.eval()
    for _ in range(n):
        choices = space.sample(rng)
        frozen = supernet.freeze(choices).eval()
        assert torch.allclose(supernet(batch, choices), frozen(**batch), atol=1e-5), choices


def test_nni_labels_are_the_space_labels(tiny_encoder):
    space = get_space("tiny")
    supernet = HeadSupernet(tiny_encoder, space, 2)
    simplified = supernet.simplify()
    assert list(simplified) == list(space.labels())
    assert all(isinstance(m, Categorical) and tuple(m.values) == space.labels()[k] for k, m in simplified.items())


@pytest.mark.parametrize("num_labels", [1, 3])
def test_frozen_output_allclose_tiny_encoder(tiny_encoder, num_labels):
    space = get_space("tiny")
    supernet = HeadSupernet(tiny_encoder, space, num_labels)
    _assert_frozen_matches(supernet, space, 40, 0, make_batch())


def test_frozen_output_allclose_real_minilm_paper_space():
    space = get_space("paper")
    supernet = HeadSupernet(load_encoder(None, num_hidden_layers=2), space, 2)
    _assert_frozen_matches(supernet, space, 8, 1, make_batch(length=12))


def test_frozen_model_is_plain_torch(tiny_encoder):
    space = get_space("tiny")
    supernet = HeadSupernet(tiny_encoder, space, 2)
    frozen = supernet.freeze(space.sample(random.Random(0)))
    nni_modules = [type(m).__name__ for m in frozen.modules() if type(m).__module__.startswith(("nni", "supernet.nn.ops"))
                   and type(m).__name__.startswith("Super")]
    assert nni_modules == []
    with torch.no_grad():  # weights copied, not shared: changing the frozen model leaves the supernet
        frozen.head[-1].weight.add_(1.0)
    assert not torch.equal(frozen.head[-1].weight, supernet.head.classifier.linear.weight[:2, :frozen.head[-1].in_features])


def test_weight_sharing_is_real(tiny_encoder):
    space = get_space("mlp")  # the MLP's sharing; token blocks' in tests/test_tokens.py
    supernet = HeadSupernet(tiny_encoder, space, 2)
    head_params = supernet.head_parameters()
    hidden, w, depth = 32, space.max_width, space.max_depth
    per_layer_norms = 2 * w * 2  # layernorm (w, b) + batchnorm (w, b); running stats are buffers
    expected = (hidden * w + w) + (depth - 1) * (w * w + w) + depth * per_layer_norms + (w * 2 + 2)
    assert head_params == expected
    biggest = {"pool": "cls", "depth": depth} | {f"{k}_{i}": v for i in range(depth) for k, v in
                                                 (("width", w), ("act", "relu"), ("dropout", 0.0),
                                                  ("norm", "batchnorm"), ("residual", True))}
    frozen_head = sum(p.numel() for p in supernet.freeze(biggest).head.parameters())
    # the largest head is the supernet minus the norms it did not pick (one layernorm per layer)
    assert frozen_head == head_params - depth * 2 * w
    small = biggest | {"depth": 1, "width_0": 64, "norm_0": "none"}
    assert sum(p.numel() for p in supernet.freeze(small).head.parameters()) == hidden * 64 + 64 + 64 * 2 + 2


def test_freeze_rejects_a_sample_outside_the_space(tiny_encoder):
    supernet = HeadSupernet(tiny_encoder, get_space("tiny"), 2)
    choices = get_space("tiny").sample(random.Random(0)) | {"width_0": 999}
    with pytest.raises(ValueError, match="width_0=999 is outside"):
        supernet.freeze(choices)


def test_bad_model_dir_is_one_clear_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="is not a model directory"):
        load_encoder(str(tmp_path))
