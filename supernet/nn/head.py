"""The super head: every head of the space over one encoder's outputs (what it reads: a pooling of the
last layer or of every layer, a token block, a pair's texts apart; then an MLP, or a cosine's scale and
bias), weights shared by slicing; ``freeze`` copies a head's slices into plain modules, ``plain_head``
builds the same structure freshly initialised."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from supernet.core.errors import InputError
from supernet.nn.ops import (
    POOLINGS,
    HiddenLayer,
    Mixture,
    SuperHiddenLayer,
    SuperLinear,
    create_activation,
    create_norm,
    fit_width,
    mix,
)
from supernet.nn.reading import COSINE_PAIRS, Features, ScalarMix, pair_vector, reduce_layers
from supernet.nn.space import SearchSpace, layer_label
from supernet.nn.tokens import TOKEN_KINDS, SuperTokenBlocks, TokenBlock, output_width, plain_token_block


def layer_args(choices: Mapping[str, Any], i: int) -> dict[str, Any]:
    """The choices of hidden layer ``i`` as keyword arguments of ``SuperHiddenLayer``."""
    return {"width": choices[layer_label("width", i)], "activation": choices[layer_label("act", i)],
            "dropout": choices[layer_label("dropout", i)], "norm": choices[layer_label("norm", i)],
            "residual": choices[layer_label("residual", i)]}


class SuperHead(nn.Module):
    """Every head of the space: what it reads (``vector``), then the MLP (or a cosine head's scale and
    bias). Hidden layers share their first slices, depth d uses the first d layers, and the first layer
    and the classifier read their in-features from their input. Any choice may be a ``Mixture``
    (one-shot policies). ``forward`` takes ``Features``, or a vector already read (scoring).
    ``encoder_layers``: the encoder's depth, for a space whose heads may mix every layer."""

    def __init__(self, space: SearchSpace, hidden_size: int, num_labels: int, encoder_layers: int | None = None):
        super().__init__()
        self.space, self.hidden_size, self.num_labels = space, hidden_size, num_labels
        self.encoder_layers = encoder_layers
        if space.has_tokens and hidden_size < max(space.tok_heads):
            raise InputError(f"space {space.name!r} offers {max(space.tok_heads)} attention heads in its token "
                             f"blocks, and the encoder's hidden size is {hidden_size}")
        self.tokens = SuperTokenBlocks(space, hidden_size) if space.has_tokens else None
        self.view_width = self.tokens.out_width if self.tokens is not None else hidden_size  # one text's vector
        self.in_width = max(self.view_width, 4 * hidden_size if "siamese" in space.pair else 0)
        self.layers = nn.ModuleList(
            SuperHiddenLayer(self.in_width if i == 0 else space.max_width, space.max_width, space.norm)
            for i in range(space.max_depth))
        self.classifier = SuperLinear(max(self.in_width, space.max_width), num_labels)
        self.scalar_mix = None
        if "scalar_mix" in space.layers:
            if not encoder_layers:
                raise InputError(f"space {space.name!r} mixes every encoder layer: give the encoder's depth")
            self.scalar_mix = ScalarMix(encoder_layers + 1)  # the embeddings and every layer
        self.cosine = cosine_head(num_labels) if set(COSINE_PAIRS) & set(space.pair) else None
        # one projection at full width, shared by every head that reads cosine_proj (nothing to slice)
        self.projection = ProjectedCosine(hidden_size) if "cosine_proj" in space.pair else None

    def forward(self, features: Features | Mapping | torch.Tensor, choices: Mapping[str, Any]) -> torch.Tensor:
        if isinstance(features, torch.Tensor):  # the vector, read already
            return self.classify(features, choices)
        if isinstance(features, Mapping):  # poolings only (a head without token blocks)
            features = Features(features)
        pair = choices.get("pair", "joint")
        if isinstance(pair, Mixture):  # each reading has its own width and classifier: mix their logits
            return mix(pair, lambda p: self.forward(features, {**choices, "pair": p}))
        return self.classify(self.vector(features, choices), choices)

    def classify(self, x: torch.Tensor, choices: Mapping[str, Any]) -> torch.Tensor:
        """The logits of a read vector: the MLP, or a cosine head's scale and bias."""
        pair = choices.get("pair")
        if pair in COSINE_PAIRS:
            return self.cosine(self.projection(x) if pair == "cosine_proj" else x)  # (B, C)
        depth = choices["depth"]
        if not isinstance(depth, Mixture):
            for i in range(depth):
                x = self.layers[i](x, **layer_args(choices, i))               # (B, width_i)
            return self.classifier(x, self.num_labels)                       # (B, C)
        outputs = {0: self.classifier(x, self.num_labels)}
        for i in range(max(depth.weights)):  # every depth's output, mixed by the depth weights
            x = self.layers[i](x, **layer_args(choices, i))                   # (B, max_width)
            outputs[i + 1] = self.classifier(x, self.num_labels)
        return mix(depth, outputs.__getitem__)                               # (B, C)

    def vector(self, f: Features, choices: Mapping[str, Any]) -> torch.Tensor:
        """What the head of ``choices`` reads: one view's vector, or a pair's two combined (space.reads)."""
        pair = choices.get("pair", "joint")
        if pair == "joint":
            return self.view(f, choices, tokens=True)                        # (B, W)
        u, v = (self.view(side, choices, tokens=False) for side in f.sides)
        return pair_vector(u, v, pair)                                       # (B, 4H) or (B, 1)

    def view(self, f: Features, choices: Mapping[str, Any], tokens: bool) -> torch.Tensor:
        """One text's vector: a pooling of the last layer (after a token block) or of every layer."""
        layers = choices.get("layers", "last")
        if isinstance(layers, Mixture):
            return mix(layers, lambda v: fit_width(self.view(f, {**choices, "layers": v}, tokens), self.view_width))
        if layers == "last":
            return self.pooled(f, choices if tokens else {**choices, "tok_kind": "none"})
        read = lambda p: f.pooled[p] if p == "pooler" else reduce_layers(f.layered[p], layers, self.scalar_mix)
        return mix(choices["pool"], read)                                     # (B, H)

    def pooled(self, f: Features, choices: Mapping[str, Any]) -> torch.Tensor:
        """The last layer's vector: the pooling of the token block's output (or of the encoder's)."""
        kind = choices.get("tok_kind", "none")
        if self.tokens is None or kind == "none" or choices["pool"] == "pooler":  # the pooler reads no block
            return mix(choices["pool"], f.pooled.__getitem__)                  # (B, H)
        tokens = self._token_output(f, choices)                                # (B, T, W)
        pool = lambda p: f.pooled[p] if p == "pooler" else POOLINGS[p](tokens, f.mask, None)
        if not isinstance(choices["pool"], Mixture):
            return pool(choices["pool"])
        return mix(choices["pool"], lambda p: fit_width(pool(p), self.view_width))

    def _token_output(self, f: Features, choices: Mapping[str, Any]) -> torch.Tensor:
        labels = ("tok_kind", *TOKEN_KINDS[choices["tok_kind"]]) if isinstance(choices["tok_kind"], str) else ()
        if not labels or any(isinstance(choices[k], Mixture) for k in labels):
            return self.tokens(f.hidden, f.mask, choices)
        key = tuple(choices[k] for k in labels)
        if key not in f.token_outputs:
            f.token_outputs[key] = self.tokens(f.hidden, f.mask, choices)
        return f.token_outputs[key]

    def freeze(self, choices: Mapping[str, Any]) -> nn.Sequential:
        """The plain classifier of ``choices``: its MLP, or a cosine head (``freeze_tokens``: its token
        block; ``freeze_mix``: its scalar mix)."""
        if not self.space.reads(choices)["mlp"]:
            projection = [copy.deepcopy(self.projection)] if choices.get("pair") == "cosine_proj" else []
            return nn.Sequential(*projection, copy.deepcopy(self.cosine))
        modules, in_features = [], self.input_width(choices)
        for i in range(choices["depth"]):
            args = layer_args(choices, i)
            modules.append(self.layers[i].freeze(in_features, **args))
            in_features = args["width"]
        modules.append(self.classifier.freeze(in_features, self.num_labels))
        return nn.Sequential(*modules)

    def freeze_tokens(self, choices: Mapping[str, Any]) -> TokenBlock | None:
        return self.tokens.freeze(choices) if self.tokens is not None and self.space.uses_tokens(choices) else None

    def freeze_mix(self, choices: Mapping[str, Any]) -> ScalarMix | None:
        return copy.deepcopy(self.scalar_mix) if self.space.reads(choices)["layers"] == "scalar_mix" else None

    def input_width(self, choices: Mapping[str, Any]) -> int:
        return input_width(self.space, choices, self.hidden_size)


def input_width(space: SearchSpace, choices: Mapping[str, Any], hidden_size: int) -> int:
    """The width of the vector the head of ``choices`` reads."""
    reads = space.reads(choices)
    if reads["tokens"]:
        return output_width(choices, hidden_size)
    return {"siamese": 4 * hidden_size, "cosine": 1, "cosine_proj": 2 * hidden_size}.get(reads["pair"], hidden_size)


def cosine_head(num_labels: int) -> nn.Linear:
    """A cosine head's scale and bias, cos(u, v) -> logits (or a score); it starts as the cosine itself."""
    linear = nn.Linear(1, num_labels)
    with torch.no_grad():
        linear.weight.fill_(1.0)
        linear.bias.zero_()
    return linear


class ProjectedCosine(nn.Module):
    """cos(P u, P v) of a pair's two vectors, read as ``[u, v]``; P(x) = x + W x + b starts at W = 0, b = 0,
    so training starts from the pretrained embeddings' cosine and weight decay pulls P back towards the
    identity (sentence-transformers' cosine fine-tuning, with the encoder kept and a projection learned:
    on frozen STS-B a projection started at the identity scored dev Pearson 0.875 against the bare
    cosine's 0.870, ``bench/results/cosine-projection-stsb-frozen/``)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.delta = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = x.chunk(2, -1)                                                # (B, H) each
        return pair_vector(u + self.delta(u), v + self.delta(v), "cosine")  # (B, 1)


def plain_head(space: SearchSpace, choices: Mapping[str, Any], hidden_size: int, num_labels: int,
               encoder_layers: int | None = None) -> tuple[nn.Sequential, TokenBlock | None, ScalarMix | None]:
    """A freshly initialised plain head of ``choices``: (classifier, token block or None, scalar mix or
    None), the structure ``SuperHead.freeze`` / ``freeze_tokens`` / ``freeze_mix`` return, with PyTorch's
    default initialisation for its own sizes (what retraining starts from)."""
    choices = space.validate(choices)
    reads = space.reads(choices)
    tokens = plain_token_block(space, choices, hidden_size) if reads["tokens"] else None
    scalar_mix = None
    if reads["layers"] == "scalar_mix":
        if not encoder_layers:
            raise InputError("a scalar-mix head mixes every encoder layer: give the encoder's depth")
        scalar_mix = ScalarMix(encoder_layers + 1)
    if not reads["mlp"]:
        projection = [ProjectedCosine(hidden_size)] if reads["pair"] == "cosine_proj" else []
        return nn.Sequential(*projection, cosine_head(num_labels)), tokens, scalar_mix
    modules, in_features = [], input_width(space, choices, hidden_size)
    for i in range(choices["depth"]):
        a = layer_args(choices, i)
        modules.append(HiddenLayer(nn.Linear(in_features, a["width"]), create_norm(a["norm"], a["width"]),
                                   create_activation(a["activation"]), a["dropout"], a["residual"]))
        in_features = a["width"]
    modules.append(nn.Linear(in_features, num_labels))
    return nn.Sequential(*modules), tokens, scalar_mix
