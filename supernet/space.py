"""The head search space as data: candidate tuples per choice kind, named presets, size, validation.

The labels produced here ARE the NNI labels of the model space and the keys of the architecture
JSON: ``pool``, ``depth``, and per hidden layer i: ``width_i``, ``act_i``, ``dropout_i``,
``norm_i``, ``residual_i``.

    python -m supernet.space --preset paper
"""
from __future__ import annotations

import argparse
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .ops import ACTIVATIONS, NORMS, POOLINGS

LAYER_KINDS = ("width", "act", "dropout", "norm", "residual")


def layer_label(kind: str, i: int) -> str:
    return f"{kind}_{i}"


@dataclass(frozen=True)
class SearchSpace:
    """Candidates of every choice kind. Per-layer kinds are shared by all layers, labelled per layer."""

    name: str
    pool: tuple[str, ...]
    depth: tuple[int, ...]
    width: tuple[int, ...]
    act: tuple[str, ...]
    dropout: tuple[float, ...]
    norm: tuple[str, ...]
    residual: tuple[bool, ...]

    def __post_init__(self):
        for kind, registry in (("pool", POOLINGS), ("act", ACTIVATIONS), ("norm", NORMS)):
            bad = [v for v in getattr(self, kind) if v not in registry]
            if bad:
                raise ValueError(f"space {self.name!r}: unknown {kind} {bad}; valid: {sorted(registry)}")
        for kind in ("pool", "depth", "width", "act", "dropout", "norm", "residual"):
            values = getattr(self, kind)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"space {self.name!r}: {kind} needs distinct candidates, got {values}")
        if min(self.depth) < 0 or min(self.width) < 1:
            raise ValueError(f"space {self.name!r}: depths must be >= 0 and widths >= 1")
        if not all(0.0 <= p < 1.0 for p in self.dropout):
            raise ValueError(f"space {self.name!r}: dropout must be in [0, 1), got {self.dropout}")

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    @property
    def max_width(self) -> int:
        return max(self.width)

    def labels(self) -> dict[str, tuple]:
        """Every NNI label with its candidates, in a stable order."""
        out: dict[str, tuple] = {"pool": self.pool, "depth": self.depth}
        for i in range(self.max_depth):
            for kind in LAYER_KINDS:
                out[layer_label(kind, i)] = getattr(self, kind)
        return out

    def per_layer_choices(self) -> int:
        return math.prod(len(getattr(self, k)) for k in LAYER_KINDS)

    def size(self) -> int:
        """Distinct architectures: the labels of layers deeper than ``depth`` do not change the model."""
        return len(self.pool) * sum(self.per_layer_choices() ** d for d in self.depth)

    def raw_size(self) -> int:
        """Product of all label cardinalities (what NNI sees; counts unused deeper labels too)."""
        return math.prod(len(v) for v in self.labels().values())

    def validate(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``choices`` as a plain dict, or raise one ValueError naming the first bad key."""
        if not isinstance(choices, Mapping):
            raise TypeError(f"architecture choices must be a mapping of label -> value, got {type(choices).__name__}")
        labels = self.labels()
        unknown = [k for k in choices if k not in labels]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} for space {self.name!r}; valid keys: {list(labels)}")
        missing = [k for k in labels if k not in choices]
        if missing:
            raise ValueError(f"missing key {missing[0]!r} for space {self.name!r}")
        for key, allowed in labels.items():
            value = choices[key]
            # bool is an int subclass: 1 must not pass for True, nor True for depth 1
            if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
                raise ValueError(f"{key}={value!r} is outside space {self.name!r}; allowed: {list(allowed)}")
        return {k: choices[k] for k in labels}

    def canonical(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """Set the labels of layers deeper than ``depth`` to their first candidate, so equal models compare equal."""
        out = dict(choices)
        for i in range(choices["depth"], self.max_depth):
            for kind in LAYER_KINDS:
                out[layer_label(kind, i)] = getattr(self, kind)[0]
        return out

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Uniform over labels (SPOS's uniform path sampling)."""
        return {k: rng.choice(v) for k, v in self.labels().items()}

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


_ALL_ACTS = ("relu", "gelu", "tanh", "silu", "leaky_relu", "elu")
_ALL_NORMS = ("none", "layernorm", "batchnorm")

PRESETS: dict[str, SearchSpace] = {
    # The space searched by default. Per hidden layer 7 widths x 6 activations x 5 dropouts x
    # 3 norms x 2 shortcuts; up to 4 hidden layers. Far larger than the seed paper's 7.5e7.
    "paper": SearchSpace("paper", pool=("cls", "mean", "max", "pooler"), depth=(0, 1, 2, 3, 4),
                         width=(64, 128, 256, 384, 512, 768, 1024), act=_ALL_ACTS,
                         dropout=(0.0, 0.1, 0.2, 0.3, 0.5), norm=_ALL_NORMS, residual=(False, True)),
    # A small space for quick searches and demos.
    "small": SearchSpace("small", pool=("cls", "mean", "max", "pooler"), depth=(0, 1, 2),
                         width=(64, 128, 256), act=_ALL_ACTS, dropout=(0.0, 0.1, 0.3),
                         norm=_ALL_NORMS, residual=(False, True)),
    # For tests: every norm kind, small widths, depth 0 included.
    "tiny": SearchSpace("tiny", pool=("cls", "mean"), depth=(0, 1, 2), width=(8, 16),
                        act=("relu", "tanh"), dropout=(0.0, 0.2), norm=_ALL_NORMS, residual=(False, True)),
}


def get_space(name: str) -> SearchSpace:
    if name not in PRESETS:
        raise ValueError(f"unknown space {name!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name]


def describe(space: SearchSpace) -> str:
    lines = [f"space {space.name!r}"]
    for kind in ("pool", "depth", "width", "act", "dropout", "norm", "residual"):
        values = getattr(space, kind)
        scope = "per layer" if kind in LAYER_KINDS else "global"
        lines.append(f"  {kind:<9} ({scope:<9}) {len(values)} x {list(values)}")
    lines.append(f"  labels: {len(space.labels())} ({', '.join(list(space.labels())[:7])}, ...)")
    lines.append(f"  distinct architectures: {space.size():,} ({space.size():.3e})")
    lines.append(f"  raw label combinations: {space.raw_size():,} ({space.raw_size():.3e})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m supernet.space",
                                     description="Print a head search space's choices and its exact size.")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="space preset (default: paper)")
    args = parser.parse_args(argv)
    print(describe(get_space(args.preset)))


if __name__ == "__main__":
    main()
