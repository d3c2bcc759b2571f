"""The search space as data: candidate tuples per choice kind, named presets, size, validation.

The labels produced here ARE the NNI labels of the model space and the keys of the architecture
JSON: ``pool``, ``depth``, and per hidden layer i: ``width_i``, ``act_i``, ``dropout_i``,
``norm_i``, ``residual_i``.

Backbone spaces (opt-in) add per encoder layer j: ``enc_ffn_j`` (keep or skip the feed-forward
sublayer) and/or ``enc_mixer_j`` (the pretrained self-attention or a depthwise-separable
convolution). Their names compose a head preset with backbone parts and the encoder's depth:
``small+ffn+conv@6`` is the ``small`` head space over a 6-layer encoder whose layers may drop
their FFN and swap attention for a convolution. ``head`` stands for the default head preset.

    python -m supernet.space --space paper
    python -m supernet.space --space small+ffn+conv@6
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping

from supernet.core.config import arg
from supernet.core.errors import InputError
from supernet.nn.ops import ACTIVATIONS, NORMS, POOLINGS
from supernet.nn.reading import COSINE_PAIRS, LAYER_READS, PAIRS, Needs
from supernet.nn.tokens import TOKEN_KINDS, TOKEN_LABELS

# backbone registries (one per choice kind); ``supernet.nn.backbone`` builds the blocks they name
# mixer name -> depthwise kernel size (None: the pretrained self-attention)
MIXERS: dict[str, int | None] = {"attention": None, "conv3": 3, "conv7": 7, "conv15": 15}
# ffn choice -> whether the layer keeps its feed-forward sublayer
FFN_CHOICES: dict[str, bool] = {"keep": True, "skip": False}
# the standard head (BertForSequenceClassification's): the pooler's [CLS] vector, one linear layer.
# The baseline of every comparison and the reference that costs are measured against.
POOL = "pool"  # the label of the pooling choice, which decides what an encoder forward must compute
LINEAR_HEAD = {POOL: "pooler", "depth": 0}

LAYER_KINDS = ("width", "act", "dropout", "norm", "residual")
BACKBONE_KINDS = ("ffn", "mixer")
DEFAULT_HEAD = "paper"  # what ``head`` means in a composed name such as ``head+ffn``
# the candidates a backbone part opens up; a part not named keeps the pretrained layer's
BACKBONE_PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ffn": ("ffn", ("keep", "skip")),
    "conv": ("mixer", ("attention", "conv3", "conv7", "conv15")),
}


def layer_label(kind: str, i: int) -> str:
    return f"{kind}_{i}"


def backbone_label(kind: str, j: int) -> str:
    return f"enc_{kind}_{j}"


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
    # token-level blocks before the pooling (supernet.nn.tokens); ("none",): none searched
    tok_kind: tuple[str, ...] = ("none",)
    tok_layers: tuple[int, ...] = (1,)
    tok_width: tuple[int, ...] = (64,)
    tok_kernel: tuple[int, ...] = (3,)
    tok_heads: tuple[int, ...] = (1,)
    tok_skip: tuple[bool, ...] = (False,)
    # what the pooled vector is read from (supernet.nn.reading): the last layer or a reduction of every
    # layer's, and for sentence pairs the joint encoding or the two texts encoded apart; ("last",) and
    # ("joint",): not searched. The first candidate is the standard head's ("last", "joint").
    layers: tuple[str, ...] = ("last",)
    pair: tuple[str, ...] = ("joint",)
    ffn: tuple[str, ...] = ("keep",)
    mixer: tuple[str, ...] = ("attention",)
    encoder_layers: int = 0  # the encoder depth a backbone space is bound to (0: head-only space)

    def __post_init__(self):
        self._check_tokens()
        self._check_reads()
        for kind, registry in (("pool", POOLINGS), ("act", ACTIVATIONS), ("norm", NORMS), ("ffn", FFN_CHOICES),
                               ("mixer", MIXERS)):
            bad = [v for v in getattr(self, kind) if v not in registry]
            if bad:
                raise InputError(f"space {self.name!r}: unknown {kind} {bad}; valid: {sorted(registry)}")
        for kind in ("pool", "depth", "width", "act", "dropout", "norm", "residual", "ffn", "mixer"):
            values = getattr(self, kind)
            if not values or len(set(values)) != len(values):
                raise InputError(f"space {self.name!r}: {kind} needs distinct candidates, got {values}")
        if min(self.depth) < 0 or min(self.width) < 1:
            raise InputError(f"space {self.name!r}: depths must be >= 0 and widths >= 1")
        if not all(0.0 <= p < 1.0 for p in self.dropout):
            raise InputError(f"space {self.name!r}: dropout must be in [0, 1), got {self.dropout}")
        if self.backbone_kinds and self.encoder_layers < 1:
            raise InputError(f"space {self.name!r} has backbone choices: bind it to an encoder depth "
                             f"(e.g. '{self.name}@6'); the search binds it to --model's depth")

    @property
    def backbone_kinds(self) -> tuple[str, ...]:
        """The backbone choice kinds that are searched (more than one candidate)."""
        return tuple(k for k in BACKBONE_KINDS if len(getattr(self, k)) > 1)

    @property
    def has_backbone(self) -> bool:
        return bool(self.backbone_kinds)

    def backbone_choices(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """The encoder-layer choices of ``choices`` (the fixed candidate for a kind not searched)."""
        out = {}
        for j in range(self.encoder_layers):
            for kind in BACKBONE_KINDS:
                label = backbone_label(kind, j)
                out[label] = choices[label] if label in choices else getattr(self, kind)[0]
        return out

    def backbone_key(self, choices: Mapping[str, Any]) -> tuple:
        """Identity of the encoder a candidate runs (candidates sharing it share encoder outputs)."""
        return tuple(choices[backbone_label(k, j)] for j in range(self.encoder_layers) for k in self.backbone_kinds)

    def _check_reads(self) -> None:
        for kind, valid in (("layers", LAYER_READS), ("pair", PAIRS)):
            values = getattr(self, kind)
            if not values or len(set(values)) != len(values) or any(v not in valid for v in values):
                raise InputError(f"space {self.name!r}: {kind} needs distinct candidates of {list(valid)}, got {values}")
            if values[0] != valid[0]:
                raise InputError(f"space {self.name!r}: {kind} lists the standard head's {valid[0]!r} first")

    @property
    def has_layers(self) -> bool:
        """Whether the layers a head reads are searched."""
        return len(self.layers) > 1

    @property
    def has_pairs(self) -> bool:
        """Whether a sentence pair's reading (joint, siamese, cosine) is searched: a space for two text columns."""
        return len(self.pair) > 1

    def reads(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """What the head of ``choices`` reads, by the one set of rules every part follows (the heads,
        ``canonical``, ``size``, BO-HB's conditional space): the pooler has no per-layer form; a token
        block reads the joint view's last layer; a cosine head has no MLP."""
        pool, pair = choices[POOL], choices.get("pair", "joint")
        layers = choices.get("layers", "last") if pool != "pooler" else "last"
        tokens = (self.has_tokens and pair == "joint" and layers == "last" and pool != "pooler"
                  and choices.get("tok_kind", "none") != "none")
        return {"pool": pool, "layers": layers, "pair": pair, "tokens": tokens, "mlp": pair not in COSINE_PAIRS}

    def needs(self, heads: Iterable[Mapping[str, Any]] | None = None) -> Needs:
        """What ``heads`` read from the encoder (default: any head of the space, e.g. under a one-shot
        policy's mixtures)."""
        if heads is None:
            return Needs(self.pool, True, self.has_tokens, self.has_layers, self.has_pairs)
        out = None
        for choices in heads:
            r = self.reads(choices)
            one = Needs((r["pool"],), r["pair"] == "joint", r["tokens"], r["layers"] != "last", r["pair"] != "joint")
            out = one if out is None else out | one
        return out

    def _check_tokens(self) -> None:
        bad = [k for k in self.tok_kind if k not in TOKEN_KINDS]
        if bad:
            raise InputError(f"space {self.name!r}: unknown tok_kind {bad}; valid: {sorted(TOKEN_KINDS)}")
        for label in TOKEN_LABELS:
            values = getattr(self, label)
            if not values or len(set(values)) != len(values):
                raise InputError(f"space {self.name!r}: {label} needs distinct candidates, got {values}")
        if min(self.tok_layers) < 1 or min(self.tok_width) < 1 or min(self.tok_heads) < 1:
            raise InputError(f"space {self.name!r}: token layers, widths and heads must be >= 1")
        if any(k < 1 or k % 2 == 0 for k in self.tok_kernel):
            raise InputError(f"space {self.name!r}: token kernels must be odd (same-length output), got {self.tok_kernel}")

    @property
    def has_tokens(self) -> bool:
        """Whether token-level blocks are searched (their labels are part of the space)."""
        return self.tok_kind != ("none",)

    def uses_tokens(self, choices: Mapping[str, Any]) -> bool:
        """Whether the head of ``choices`` runs a token block (see ``reads``)."""
        return self.reads(choices)["tokens"]

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    @property
    def max_width(self) -> int:
        return max(self.width)

    def labels(self) -> dict[str, tuple]:
        """Every NNI label with its candidates, in a stable order."""
        out: dict[str, tuple] = {POOL: self.pool, "depth": self.depth}
        if self.has_layers:
            out["layers"] = self.layers
        if self.has_pairs:
            out["pair"] = self.pair
        if self.has_tokens:
            out.update({label: getattr(self, label) for label in TOKEN_LABELS})
        for i in range(self.max_depth):
            for kind in LAYER_KINDS:
                out[layer_label(kind, i)] = getattr(self, kind)
        for j in range(self.encoder_layers):
            for kind in self.backbone_kinds:
                out[backbone_label(kind, j)] = getattr(self, kind)
        return out

    def per_layer_choices(self) -> int:
        return math.prod(len(getattr(self, k)) for k in LAYER_KINDS)

    def token_choices(self) -> int:
        """Distinct token blocks (each kind counts only the labels it reads)."""
        return sum(math.prod(len(getattr(self, label)) for label in TOKEN_KINDS[kind]) for kind in self.tok_kind)

    def size(self) -> int:
        """Distinct architectures: a label a head does not read (layers deeper than ``depth``, token labels
        of another block kind, anything ``reads`` rules out) does not change the model."""
        backbone = math.prod(len(getattr(self, k)) for k in self.backbone_kinds) ** self.encoder_layers
        mlp = sum(self.per_layer_choices() ** d for d in self.depth)
        fronts = 0
        for pool in self.pool:
            for pair in self.pair:
                for layers in (self.layers if pool != "pooler" else self.layers[:1]):
                    blocks = self.token_choices() if pair == "joint" and layers == "last" and pool != "pooler" else 1
                    fronts += blocks * (mlp if pair not in COSINE_PAIRS else 1)
        return backbone * fronts

    def raw_size(self) -> int:
        """Product of all label cardinalities (what NNI sees; counts unused deeper labels too)."""
        return math.prod(len(v) for v in self.labels().values())

    def validate(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``choices`` as a plain dict, or raise one ValueError naming the first bad key."""
        if not isinstance(choices, Mapping):
            raise InputError(f"architecture choices must be a mapping of label -> value, got {type(choices).__name__}")
        labels = self.labels()
        unknown = [k for k in choices if k not in labels]
        if unknown:
            raise InputError(f"unknown key {unknown[0]!r} for space {self.name!r}; valid keys: {list(labels)}")
        missing = [k for k in labels if k not in choices]
        if missing:
            raise InputError(f"missing key {missing[0]!r} for space {self.name!r}")
        for key, allowed in labels.items():
            value = choices[key]
            # bool is an int subclass: 1 must not pass for True, nor True for depth 1
            if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
                raise InputError(f"{key}={value!r} is outside space {self.name!r}; allowed: {list(allowed)}")
        return {k: choices[k] for k in labels}

    def choices_of(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """This space's labels of an NNI sample (which may hold other labels too), validated."""
        labels = self.labels()
        return self.validate({k: sample[k] for k in labels if k in sample})

    def canonical(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """Set every label the model does not read to its first candidate, so equal models compare
        equal: layers deeper than ``depth``, and token labels its block kind does not read."""
        out = dict(choices)
        reads = self.reads(choices)
        if not reads["mlp"]:  # a cosine head: no MLP at all
            out["depth"] = self.depth[0]
        if self.has_layers and reads["layers"] != choices["layers"]:
            out["layers"] = self.layers[0]
        for i in range(out["depth"], self.max_depth):
            for kind in LAYER_KINDS:
                out[layer_label(kind, i)] = getattr(self, kind)[0]
        if self.has_tokens:
            if not self.uses_tokens(choices):
                out["tok_kind"] = "none" if "none" in self.tok_kind else out["tok_kind"]
            read = TOKEN_KINDS[out["tok_kind"]]
            out.update({label: getattr(self, label)[0] for label in TOKEN_LABELS[1:] if label not in read})
        return out

    def reference(self) -> dict[str, Any]:
        """The full pretrained encoder with a linear head (on the pooler if the space has it): what
        candidates' costs are measured against."""
        labels = self.labels()
        choices = {k: v[0] for k, v in labels.items()}
        choices.update(LINEAR_HEAD if LINEAR_HEAD["pool"] in self.pool else {**LINEAR_HEAD, "pool": self.pool[0]})
        if self.has_tokens:  # no token block, if the space offers none
            choices["tok_kind"] = "none" if "none" in self.tok_kind else self.tok_kind[0]
        choices.update({k: v for k, v in self.backbone_choices({}).items() if k in labels})
        return self.validate(choices)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """Uniform over labels (SPOS's uniform path sampling)."""
        return {k: rng.choice(v) for k, v in self.labels().items()}

    def largest(self, rng: random.Random) -> dict[str, Any]:
        """A sample at the space's largest size (the sandwich rule's biggest subnet): deepest, widest,
        the biggest token block; choices that set no size (activation, dropout, ...) drawn uniformly."""
        out = self.sample(rng)
        out["depth"] = self.max_depth
        out.update({layer_label("width", i): self.max_width for i in range(self.max_depth)})
        if self.has_tokens:
            kinds = [k for k in self.tok_kind if k != "none"] or list(self.tok_kind)
            out.update(tok_kind=rng.choice(kinds), tok_layers=max(self.tok_layers), tok_width=max(self.tok_width),
                       tok_kernel=max(self.tok_kernel), tok_heads=max(self.tok_heads))
            out["pool"] = rng.choice([p for p in self.pool if p != "pooler"] or list(self.pool))
        return out

    def smallest(self, rng: random.Random) -> dict[str, Any]:
        """A sample at the space's smallest size: no hidden layer, no token block."""
        out = {**self.sample(rng), "depth": min(self.depth)}
        if self.has_tokens:
            out["tok_kind"] = "none" if "none" in self.tok_kind else self.tok_kind[0]
        return out

    def fair_samples(self, rng: random.Random, n: int) -> list[dict[str, Any]]:
        """``n`` samples in which every label's candidates are used as evenly as ``n`` allows (FairNAS's
        strict fairness when ``n`` is at least the largest label's number of candidates): per label, a
        fresh random order of its candidates is dealt round-robin to the samples."""
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for label, values in self.labels().items():
            deck: list = []
            for sample in out:
                if not deck:
                    deck = rng.sample(list(values), len(values))
                sample[label] = deck.pop()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


_ALL_ACTS = ("relu", "gelu", "tanh", "silu", "leaky_relu", "elu")
_ALL_NORMS = ("none", "layernorm", "batchnorm")

_MLP = dict(pool=("cls", "mean", "max", "pooler"), depth=(0, 1, 2, 3, 4), width=(64, 128, 256, 384, 512, 768, 1024),
            act=_ALL_ACTS, dropout=(0.0, 0.1, 0.2, 0.3, 0.5), norm=_ALL_NORMS, residual=(False, True))
# Kenneweg et al.'s token blocks at hidden size 384. Kernels and heads are the paper's. Conv widths
# 32-256 span its 5-200 (for BERT-base's 768) at our hidden size and up. Layers stop at 3, not 5:
# an attention layer here costs about half an encoder layer, so 5 would add most of a second
# encoder to every step and candidate, for a head trained on GLUE-sized data.
_TOKENS = dict(tok_kind=("none", "conv", "attention"), tok_layers=(1, 2, 3), tok_width=(32, 64, 128, 256),
               tok_kernel=(3, 5, 7, 9, 11), tok_heads=(1, 2, 4, 8, 16), tok_skip=(False, True))
_TINY = dict(pool=("cls", "mean"), depth=(0, 1, 2), width=(8, 16), act=("relu", "tanh"), dropout=(0.0, 0.2),
             norm=_ALL_NORMS, residual=(False, True))

PRESETS: dict[str, SearchSpace] = {
    # The seed paper's head families (the default before layer and pair reads). Token blocks (none, conv, attention)
    # before the pooling, then up to 4 hidden layers of 7 widths x 6 activations x 5 dropouts x
    # 3 norms x 2 shortcuts. Far larger than the seed paper's 7.5e7.
    "paper": SearchSpace("paper", **_MLP, **_TOKENS),
    # The MLP-on-a-pooled-vector space (the default before token blocks; schema-1 "paper" records).
    "mlp": SearchSpace("mlp", **_MLP),
    # A small space for quick searches and demos.
    "small": SearchSpace("small", pool=("cls", "mean", "max", "pooler"), depth=(0, 1, 2),
                         width=(64, 128, 256), act=_ALL_ACTS, dropout=(0.0, 0.1, 0.3),
                         norm=_ALL_NORMS, residual=(False, True)),
    # For tests: every norm kind and token-block kind, small widths, depth 0 included.
    "tiny": SearchSpace("tiny", **_TINY, tok_kind=("none", "conv", "attention"), tok_layers=(1, 2),
                        tok_width=(8, 16), tok_kernel=(3, 5), tok_heads=(1, 2), tok_skip=(False, True)),
    # ``tiny`` without token blocks (schema-1 "tiny" records).
    "tiny-mlp": SearchSpace("tiny-mlp", **_TINY),
    # The default for one text column: the paper's heads, reading the last layer or every layer's
    # pooled vectors (mean of the last 4, max of the last 3 as MaxPoolBERT does with [CLS], ELMo's
    # learned scalar mix).
    "heads": SearchSpace("heads", **_MLP, **_TOKENS, layers=LAYER_READS),
    # The default for sentence pairs: ``heads`` plus the pair's reading: joint (cross-encoded, as BERT
    # fine-tuning does), siamese ([u, v, |u-v|, u*v] of the texts encoded apart, SentEval's features) or
    # cosine (cos(u, v) with a learned scale and bias, as sentence-transformers compares embeddings) or
    # cosine_proj (the same after a learned projection of each text's vector, started at the identity).
    "pairs": SearchSpace("pairs", **_MLP, **_TOKENS, layers=LAYER_READS, pair=PAIRS),
    # For tests: ``tiny`` with every layer and pair reading.
    "tiny-pairs": SearchSpace("tiny-pairs", **_TINY, tok_kind=("none", "conv"), tok_layers=(1,), tok_width=(8,),
                              tok_kernel=(3,), tok_heads=(1,), layers=LAYER_READS, pair=PAIRS),
}
AUTO = "auto"  # the default --space: "pairs" for a task of two text columns, "heads" for one


def resolve_space(name: str, text_columns: int) -> str:
    """The space a search of a task with ``text_columns`` runs: ``auto`` picks one; a pair space is
    refused for one text column (its siamese and cosine heads read two)."""
    if name == AUTO:
        return "pairs" if text_columns == 2 else "heads"
    head = _split_name(name)[0]
    if PRESETS[head].has_pairs and text_columns != 2:
        raise InputError(f"space {name!r} searches how a sentence pair is read, and the task has {text_columns} text "
                         "column; use --space heads (or auto)")
    return name
# schema-1 records named the MLP-only spaces "paper" and "tiny"
V1_PRESETS = {"paper": "mlp", "tiny": "tiny-mlp", "head": "mlp"}


def _split_name(name: str) -> tuple[str, tuple[str, ...], int | None]:
    """'small+ffn+conv@6' -> ('small', ('ffn', 'conv'), 6); the error names what is wrong."""
    if not isinstance(name, str) or not name:
        raise InputError(f"a space name must be a non-empty string, got {name!r}")
    if name == AUTO:
        raise InputError(f"space {AUTO!r} is chosen per task (pairs for two text columns, heads for one): "
                         "resolve it with resolve_space first")
    base, _, depth = name.partition("@")
    head, *parts = base.split("+")
    head = DEFAULT_HEAD if head == "head" else head
    if head not in PRESETS:
        raise InputError(f"unknown space {name!r}: head preset {head!r} is not one of {sorted(PRESETS)} "
                         f"(or 'head' = {DEFAULT_HEAD})")
    if parts and (PRESETS[head].has_layers or PRESETS[head].has_pairs):
        raise InputError(f"space {name!r}: backbone parts go with a head preset that reads the last layer of one "
                         "encoding (paper, mlp, small, tiny); the backbone search has no per-layer outputs")
    bad = [p for p in parts if p not in BACKBONE_PARTS]
    if bad or len(set(parts)) != len(parts):
        raise InputError(f"unknown space {name!r}: backbone parts must be distinct ones of {sorted(BACKBONE_PARTS)}, "
                         f"e.g. '{head}+ffn+conv'")
    if depth and not (depth.isdigit() and int(depth) >= 1):
        raise InputError(f"unknown space {name!r}: the encoder depth after '@' must be a positive integer")
    if depth and not parts:
        raise InputError(f"space {name!r}: '@{depth}' binds backbone choices, and the name has none (add +ffn/+conv)")
    return head, tuple(parts), int(depth) if depth else None


def names_backbone_choices(name: str) -> bool:
    """Whether the space ``name`` (bound to an encoder depth or not) searches encoder-layer choices."""
    return name != AUTO and bool(_split_name(name)[1])


def space_arg(default: str = AUTO, aliases: tuple[str, ...] = ()) -> Any:
    """The one declaration of a config's ``--space`` (the search's supernet, the comparison, the space
    CLI): the same help everywhere."""
    return arg(default, "search space: auto (pairs for a sentence-pair task, heads for one text), a head preset "
                        "(pairs, heads, paper, mlp, small, tiny) or a backbone space adding per encoder layer FFN "
                        "keep/skip (+ffn) and attention vs conv3/7/15 (+conv), e.g. head+ffn, small+ffn+conv (see "
                        "python -m supernet.space)", aliases=aliases)


def check_space_name(name: str) -> None:
    """Raise ValueError unless ``name`` is ``auto``, a preset or a composed backbone space (bound or not)."""
    if name != AUTO:
        _split_name(name)


def get_space(name: str) -> SearchSpace:
    head, parts, depth = _split_name(name)
    if not parts:
        return PRESETS[head]
    if depth is None:
        raise InputError(f"space {name!r} has backbone choices and needs the encoder's depth: "
                         f"'{name}@<layers>' (the search appends it from --model)")
    kwargs = dict(BACKBONE_PARTS[p] for p in parts)
    return replace(PRESETS[head], name=f"{head}+{'+'.join(parts)}@{depth}", encoder_layers=depth, **kwargs)


def bind_space(name: str, encoder_layers: int) -> SearchSpace:
    """The space ``name`` over an encoder of ``encoder_layers`` layers (a no-op for head-only spaces)."""
    head, parts, depth = _split_name(name)
    if not parts:
        return PRESETS[head]
    if depth is not None and depth != encoder_layers:
        raise InputError(f"space {name!r} is bound to {depth} encoder layers, and the encoder has {encoder_layers}")
    return get_space(f"{head}+{'+'.join(parts)}@{encoder_layers}")


PAPER_SPACE_SIZE = 7.5e7  # Kenneweg et al. 2024's head space, as the paper states it


def _scope(kind: str) -> str:
    if kind in LAYER_KINDS:
        return "per layer"
    if kind in BACKBONE_KINDS:
        return "per enc."
    return "tok. block" if kind.startswith("tok_") else "global"


def describe(space: SearchSpace) -> str:
    """The table for people: every choice kind with its candidates, and the exact size."""
    lines = [f"space {space.name!r}"]
    kinds = ("pool", "depth", *(("layers",) if space.has_layers else ()), *(("pair",) if space.has_pairs else ()),
             *(TOKEN_LABELS if space.has_tokens else ()), "width", "act", "dropout", "norm", "residual",
             *space.backbone_kinds)
    for kind in kinds:
        values = getattr(space, kind)
        lines.append(f"  {kind:<10} ({_scope(kind):<10}) {len(values)} x {list(values)}")
    lines.append(f"  labels: {len(space.labels())} ({', '.join(list(space.labels())[:7])}, ...)")
    lines.append(f"  distinct architectures: {space.size():,} ({space.size():.3e}; "
                 f"{space.size() / PAPER_SPACE_SIZE:.3g}x the seed paper's {PAPER_SPACE_SIZE:.1e})")
    lines.append(f"  raw label combinations: {space.raw_size():,} ({space.raw_size():.3e})")
    return "\n".join(lines)


def as_json(space: SearchSpace) -> dict[str, Any]:
    """The space for scripts: every label with its candidates, and the sizes."""
    return {"name": space.name, "labels": {k: list(v) for k, v in space.labels().items()}, "size": space.size(),
            "raw_size": space.raw_size(), "paper_space_size": PAPER_SPACE_SIZE,
            "token_kinds": {k: list(TOKEN_KINDS[k]) for k in space.tok_kind}}
