"""The super head: every head of the space over one encoder's outputs (token block, pooling, MLP),
weights shared by slicing; ``freeze`` copies a head's slices into plain modules, ``plain_head``
builds the same structure freshly initialised."""
from __future__ import annotations

from dataclasses import dataclass, field
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
from supernet.nn.space import SearchSpace, layer_label
from supernet.nn.tokens import TOKEN_KINDS, SuperTokenBlocks, TokenBlock, output_width, plain_token_block


def layer_args(choices: Mapping[str, Any], i: int) -> dict[str, Any]:
    """The choices of hidden layer ``i`` as keyword arguments of ``SuperHiddenLayer``."""
    return {"width": choices[layer_label("width", i)], "activation": choices[layer_label("act", i)],
            "dropout": choices[layer_label("dropout", i)], "norm": choices[layer_label("norm", i)],
            "residual": choices[layer_label("residual", i)]}


@dataclass
class Features:
    """What a head reads from one encoder forward: the poolings of the encoder's output it may need,
    and (for token blocks) the last hidden states with their padding mask."""

    pooled: Mapping[str, torch.Tensor]          # pooling name -> (B, H)
    hidden: torch.Tensor | None = None          # (B, T, H)
    mask: torch.Tensor | None = None            # (B, T)
    # token-block outputs already computed on these features, by the block's choices: heads of one
    # step that share a block run it once
    token_outputs: dict = field(default_factory=dict)


class SuperHead(nn.Module):
    """Every head of the space: an optional token block, the pooling, then the MLP. Hidden layers
    share their first slices, depth d uses the first d layers, and the first layer and the classifier
    read their in-features from their input. Any choice may be a ``Mixture`` (one-shot policies).
    ``forward`` takes ``Features``, or a tensor already pooled for these choices (scoring)."""

    def __init__(self, space: SearchSpace, hidden_size: int, num_labels: int):
        super().__init__()
        self.space, self.hidden_size, self.num_labels = space, hidden_size, num_labels
        if space.has_tokens and hidden_size < max(space.tok_heads):
            raise InputError(f"space {space.name!r} offers {max(space.tok_heads)} attention heads in its token "
                             f"blocks, and the encoder's hidden size is {hidden_size}")
        self.tokens = SuperTokenBlocks(space, hidden_size) if space.has_tokens else None
        self.in_width = self.tokens.out_width if self.tokens is not None else hidden_size
        self.layers = nn.ModuleList(
            SuperHiddenLayer(self.in_width if i == 0 else space.max_width, space.max_width, space.norm)
            for i in range(space.max_depth))
        self.classifier = SuperLinear(max(self.in_width, space.max_width), num_labels)

    def forward(self, features: Features | Mapping | torch.Tensor, choices: Mapping[str, Any]) -> torch.Tensor:
        if isinstance(features, Mapping):  # poolings only (a head without token blocks)
            features = Features(features)
        x = features if isinstance(features, torch.Tensor) else self.pooled(features, choices)  # (B, W)
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

    def pooled(self, f: Features, choices: Mapping[str, Any]) -> torch.Tensor:
        """The vector the MLP reads: the pooling of the token block's output (or of the encoder's)."""
        kind = choices.get("tok_kind", "none")
        if self.tokens is None or kind == "none":
            return mix(choices["pool"], f.pooled.__getitem__)                  # (B, H)
        tokens = self._token_output(f, choices)                                # (B, T, W)
        pool = lambda p: f.pooled[p] if p == "pooler" else POOLINGS[p](tokens, f.mask, None)
        if not isinstance(choices["pool"], Mixture):
            return pool(choices["pool"])
        return mix(choices["pool"], lambda p: fit_width(pool(p), self.in_width))

    def _token_output(self, f: Features, choices: Mapping[str, Any]) -> torch.Tensor:
        labels = ("tok_kind", *TOKEN_KINDS[choices["tok_kind"]]) if isinstance(choices["tok_kind"], str) else ()
        if not labels or any(isinstance(choices[k], Mixture) for k in labels):
            return self.tokens(f.hidden, f.mask, choices)
        key = tuple(choices[k] for k in labels)
        if key not in f.token_outputs:
            f.token_outputs[key] = self.tokens(f.hidden, f.mask, choices)
        return f.token_outputs[key]

    def freeze(self, choices: Mapping[str, Any]) -> nn.Sequential:
        """The plain MLP of ``choices`` (``freeze_tokens``: its token block)."""
        modules, in_features = [], self.input_width(choices)
        for i in range(choices["depth"]):
            args = layer_args(choices, i)
            modules.append(self.layers[i].freeze(in_features, **args))
            in_features = args["width"]
        modules.append(self.classifier.freeze(in_features, self.num_labels))
        return nn.Sequential(*modules)

    def freeze_tokens(self, choices: Mapping[str, Any]) -> TokenBlock | None:
        return self.tokens.freeze(choices) if self.tokens is not None and self.space.uses_tokens(choices) else None

    def input_width(self, choices: Mapping[str, Any]) -> int:
        return output_width(choices, self.hidden_size) if self.space.uses_tokens(choices) else self.hidden_size


def plain_head(space: SearchSpace, choices: Mapping[str, Any], hidden_size: int, num_labels: int
               ) -> tuple[nn.Sequential, TokenBlock | None]:
    """A freshly initialised plain head of ``choices`` (MLP, token block or None): the structure
    ``SuperHead.freeze`` / ``freeze_tokens`` return, with PyTorch's default initialisation for its own
    sizes (what retraining starts from)."""
    choices = space.validate(choices)
    tokens = plain_token_block(space, choices, hidden_size) if space.uses_tokens(choices) else None
    modules, in_features = [], output_width(choices, hidden_size) if tokens is not None else hidden_size
    for i in range(choices["depth"]):
        a = layer_args(choices, i)
        modules.append(HiddenLayer(nn.Linear(in_features, a["width"]), create_norm(a["norm"], a["width"]),
                                   create_activation(a["activation"]), a["dropout"], a["residual"]))
        in_features = a["width"]
    modules.append(nn.Linear(in_features, num_labels))
    return nn.Sequential(*modules), tokens
