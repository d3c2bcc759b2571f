"""The supernet: one NNI ``ModelSpace`` = encoder + every head of the space, sharing weights.

``HeadSupernet`` registers one ``nni.choice`` per label of the space, so NNI strategies see the
labels that the architecture JSON uses. Its ``forward`` takes the architecture explicitly;
``freeze(choices)`` returns a plain ``FrozenModel`` (encoder copy + plain head) whose weights
are copies of the supernet's active slices.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace
from torch import nn

from .backbone import SuperBackbone
from .ops import POOLINGS, HiddenLayer, Pooling, SuperHiddenLayer, SuperLinear, create_activation, create_norm
from .space import SearchSpace, layer_label


def layer_args(choices: Mapping[str, Any], i: int) -> dict[str, Any]:
    """The choices of hidden layer ``i`` as keyword arguments of ``SuperHiddenLayer``."""
    return {"width": choices[layer_label("width", i)], "activation": choices[layer_label("act", i)],
            "dropout": choices[layer_label("dropout", i)], "norm": choices[layer_label("norm", i)],
            "residual": choices[layer_label("residual", i)]}


class SuperHead(nn.Module):
    """Every head of the space on a pooled vector: hidden layers share their first slices, and
    depth d uses the first d layers. The classifier reads its in-features from its input."""

    def __init__(self, space: SearchSpace, hidden_size: int, num_labels: int):
        super().__init__()
        self.space, self.hidden_size, self.num_labels = space, hidden_size, num_labels
        self.layers = nn.ModuleList(
            SuperHiddenLayer(hidden_size if i == 0 else space.max_width, space.max_width, space.norm)
            for i in range(space.max_depth))
        self.classifier = SuperLinear(max(hidden_size, space.max_width), num_labels)

    def forward(self, pooled: torch.Tensor, choices: Mapping[str, Any]) -> torch.Tensor:
        x = pooled                                                            # (B, H)
        for i in range(choices["depth"]):
            x = self.layers[i](x, **layer_args(choices, i))                   # (B, width_i)
        return self.classifier(x, self.num_labels)                           # (B, C)

    def freeze(self, choices: Mapping[str, Any]) -> nn.Sequential:
        modules, in_features = [], self.hidden_size
        for i in range(choices["depth"]):
            args = layer_args(choices, i)
            modules.append(self.layers[i].freeze(in_features, **args))
            in_features = args["width"]
        modules.append(self.classifier.freeze(in_features, self.num_labels))
        return nn.Sequential(*modules)


def plain_head(space: SearchSpace, choices: Mapping[str, Any], hidden_size: int, num_labels: int) -> nn.Sequential:
    """A freshly initialised plain head of ``choices``: the structure ``SuperHead.freeze`` returns,
    with PyTorch's default initialisation for its own sizes (what retraining starts from)."""
    choices = space.validate(choices)
    modules, in_features = [], hidden_size
    for i in range(choices["depth"]):
        a = layer_args(choices, i)
        modules.append(HiddenLayer(nn.Linear(in_features, a["width"]), create_norm(a["norm"], a["width"]),
                                   create_activation(a["activation"]), a["dropout"], a["residual"]))
        in_features = a["width"]
    modules.append(nn.Linear(in_features, num_labels))
    return nn.Sequential(*modules)


def encoder_outputs(encoder: nn.Module, batch: Mapping[str, torch.Tensor]):
    """(last hidden state, pooler output or None) of a HF encoder."""
    out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch.get("token_type_ids"))
    return out.last_hidden_state, getattr(out, "pooler_output", None)


class FrozenModel(nn.Module):
    """A plain model (no NNI): encoder -> pooling -> head. What retrain fine-tunes and ships."""

    def __init__(self, encoder: nn.Module, pooling: str, head: nn.Sequential):
        super().__init__()
        self.encoder, self.pooling, self.head = encoder, Pooling(pooling), head

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_ignored) -> torch.Tensor:
        hidden, pooler_output = encoder_outputs(
            self.encoder, {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids})
        return self.head(self.pooling(hidden, attention_mask, pooler_output))


class HeadSupernet(ModelSpace):
    """Encoder + all heads of ``space`` as one NNI model space with weight sharing. In a backbone
    space the encoder is a ``SuperBackbone`` over the pretrained one, and a forward needs the
    candidate's encoder-layer choices."""

    def __init__(self, encoder: nn.Module, space: SearchSpace, num_labels: int):
        super().__init__()
        self.space, self.num_labels = space, num_labels
        for label, values in space.labels().items():
            self.add_mutable(nni.choice(label, list(values)))
        self.encoder = SuperBackbone(encoder, space) if space.has_backbone else encoder
        self.head = SuperHead(space, encoder.config.hidden_size, num_labels)

    def encode(self, batch: Mapping[str, torch.Tensor], choices: Mapping[str, Any] | None = None):
        """(last hidden state, pooler output or None) of the encoder a candidate runs."""
        if not isinstance(self.encoder, SuperBackbone):
            return encoder_outputs(self.encoder, batch)
        if choices is None:
            raise ValueError(f"space {self.space.name!r} has backbone choices: an encoder forward needs a candidate")
        out = self.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), choices=choices)
        return out.last_hidden_state, out.pooler_output

    def pooled_features(self, batch: Mapping[str, torch.Tensor], pools: tuple[str, ...] | None = None,
                        choices: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
        """One encoder forward (with ``choices``' backbone), pooled every way in ``pools`` (default: all)."""
        hidden, pooler_output = self.encode(batch, choices)
        return {p: POOLINGS[p](hidden, batch["attention_mask"], pooler_output) for p in pools or self.space.pool}

    def forward(self, batch: Mapping[str, torch.Tensor], choices: Mapping[str, Any]) -> torch.Tensor:
        pooled = self.pooled_features(batch, (choices["pool"],), choices)[choices["pool"]]
        return self.head(pooled, choices)

    def freeze(self, sample: Mapping[str, Any]) -> FrozenModel:
        choices = self.space.validate({k: sample[k] for k in self.space.labels() if k in sample})
        encoder = (self.encoder.freeze(choices) if isinstance(self.encoder, SuperBackbone)
                   else copy.deepcopy(self.encoder))
        return FrozenModel(encoder, choices["pool"], self.head.freeze(choices))

    def encoder_parameters(self, choices: Mapping[str, Any]) -> int:
        """Parameters of the frozen encoder of ``choices`` (computed, not built)."""
        if isinstance(self.encoder, SuperBackbone):
            return self.encoder.num_parameters(choices)
        return sum(p.numel() for p in self.encoder.parameters())

    def head_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())
