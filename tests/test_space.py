import itertools
import random
import subprocess
import sys
from dataclasses import replace

import pytest

from supernet.nn.space import PRESETS, SearchSpace, get_space

PAPER_SPACE_SIZE = 7.5e7  # Kenneweg et al. 2024's head space


def test_paper_preset_is_the_documented_space():
    """The candidate sets the README documents, and the size they give by the formula written out:
    4 poolings x (sum over depth 0..4 of (7 widths x 6 acts x 5 dropouts x 3 norms x 2 shortcuts)^d)."""
    space = get_space("paper")
    assert space.pool == ("cls", "mean", "max", "pooler") and space.depth == (0, 1, 2, 3, 4)
    assert space.width == (64, 128, 256, 384, 512, 768, 1024) and space.dropout == (0.0, 0.1, 0.2, 0.3, 0.5)
    assert set(space.act) == {"relu", "gelu", "tanh", "silu", "leaky_relu", "elu"}
    assert set(space.norm) == {"none", "layernorm", "batchnorm"} and space.residual == (False, True)
    assert space.tok_kind == ("none", "conv", "attention") and space.tok_layers == (1, 2, 3)
    assert space.tok_width == (32, 64, 128, 256) and space.tok_kernel == (3, 5, 7, 9, 11)
    assert space.tok_heads == (1, 2, 4, 8, 16) and space.tok_skip == (False, True)
    blocks = 1 + 3 * 4 * 5 * 2 + 3 * 5 * 2  # none + conv (layers x width x kernel x skip) + attention
    front = 3 * blocks + 1  # cls / mean / max read a token block; the pooler reads the encoder's [CLS]
    assert space.size() == front * sum((7 * 6 * 5 * 3 * 2) ** d for d in range(5))
    assert space.size() > PAPER_SPACE_SIZE


@pytest.mark.parametrize("space", [get_space("tiny-mlp"), replace(get_space("tiny"), depth=(0, 1))],
                         ids=["tiny-mlp", "tiny-tokens"])
def test_size_counts_distinct_architectures_exactly(space):
    labels = space.labels()
    distinct = {tuple(sorted(space.canonical(dict(zip(labels, values))).items()))
                for values in itertools.product(*labels.values())}
    assert len(distinct) == space.size() == {"tiny-mlp": 4706, "tiny": 2 * (1 + 16 + 8) * (1 + 48)}[space.name]
    assert space.raw_size() == len(list(itertools.product(*labels.values())))


def test_labels_name_every_layer_choice():
    labels = get_space("paper").labels()
    assert list(labels)[:2] == ["pool", "depth"]
    assert {"width_3", "act_3", "dropout_3", "norm_3", "residual_3"} <= set(labels)
    assert "width_4" not in labels


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_samples_validate(preset):
    space = get_space(preset)
    rng = random.Random(0)
    for _ in range(50):
        choices = space.sample(rng)
        assert space.validate(choices) == choices


def _valid(space):
    return space.sample(random.Random(1))


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(colour="red"), r"unknown key 'colour'"),
    (lambda c: c.pop("act_1"), r"missing key 'act_1'"),
    (lambda c: c.update(width_0=12), r"width_0=12 is outside space 'tiny'; allowed: \[8, 16\]"),
    (lambda c: c.update(depth=True), r"depth=True is outside"),
    (lambda c: c.update(residual_0=1), r"residual_0=1 is outside"),
    (lambda c: c.update(act_0="swish"), r"act_0='swish' is outside.*\['relu', 'tanh'\]"),
])
def test_validate_names_the_bad_key_and_the_allowed_values(mutate, message):
    space = get_space("tiny")
    choices = _valid(space)
    mutate(choices)
    with pytest.raises(ValueError, match=message):
        space.validate(choices)


def test_validate_accepts_an_int_for_a_float_dropout():
    space = get_space("tiny")
    choices = _valid(space) | {"dropout_0": 0}
    assert space.validate(choices)["dropout_0"] == 0


def test_bad_space_definitions_are_refused():
    with pytest.raises(ValueError, match="unknown act"):
        SearchSpace("x", ("cls",), (0,), (8,), ("swish",), (0.0,), ("none",), (False,))
    with pytest.raises(ValueError, match="dropout must be in"):
        SearchSpace("x", ("cls",), (0,), (8,), ("relu",), (1.0,), ("none",), (False,))
    with pytest.raises(ValueError, match="unknown space 'huge'"):
        get_space("huge")


def test_cli_prints_choices_and_exact_count():
    out = subprocess.run([sys.executable, "-m", "supernet.space", "--preset", "paper"],
                         capture_output=True, text=True, check=True).stdout
    assert f"distinct architectures: {get_space('paper').size():,}" in out
    assert "leaky_relu" in out and "batchnorm" in out
