"""The supernet: one NNI ``ModelSpace`` = encoder + every head of the space, sharing weights.

``LabelSpace`` registers one ``nni.choice`` per label of a space, so NNI strategies see the
labels that the architecture JSON uses; ``HeadSupernet`` is that space over the encoder and all
heads. Its ``forward`` takes the architecture explicitly; ``freeze(choices)`` returns a plain
``FrozenModel`` (encoder copy + plain head) whose weights are copies of the supernet's active
slices."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace
from torch import nn

from supernet.nn.backbone import SuperBackbone
from supernet.nn.encoder import encoder_outputs
from supernet.nn.head import Features, SuperHead
from supernet.nn.model import FrozenModel
from supernet.nn.ops import POOLINGS
from supernet.nn.space import SearchSpace


class LabelSpace(ModelSpace):
    """The labels of ``space`` as an NNI model space: one ``nni.choice`` per label, named as in the
    architecture record. Multi-trial strategies search this directly (its frozen form is just the
    choices: trials score on cached encoder outputs); ``HeadSupernet`` adds the weights."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        for label, values in space.labels().items():
            self.add_mutable(nni.choice(label, list(values)))

    def choices_of(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return self.space.choices_of(sample)


class HeadSupernet(LabelSpace):
    """Encoder + all heads of ``space`` as one NNI model space with weight sharing. In a backbone
    space the encoder is a ``SuperBackbone`` over the pretrained one, and a forward needs the
    candidate's encoder-layer choices."""

    def __init__(self, encoder: nn.Module, space: SearchSpace, num_labels: int):
        super().__init__(space)
        self.num_labels = num_labels
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

    def features(self, batch: Mapping[str, torch.Tensor], pools: tuple[str, ...] | None = None,
                 choices: Mapping[str, Any] | None = None) -> Features:
        """One encoder forward (with ``choices``' backbone), pooled every way in ``pools`` (default:
        all), with the hidden states kept for token blocks."""
        hidden, pooler_output = self.encode(batch, choices)
        mask = batch["attention_mask"]
        return Features({p: POOLINGS[p](hidden, mask, pooler_output) for p in pools or self.space.pool}, hidden, mask)

    def forward(self, batch: Mapping[str, torch.Tensor], choices: Mapping[str, Any]) -> torch.Tensor:
        return self.head(self.features(batch, (choices["pool"],), choices), choices)

    def freeze(self, sample: Mapping[str, Any]) -> FrozenModel:
        choices = self.choices_of(sample)
        encoder = (self.encoder.freeze(choices) if isinstance(self.encoder, SuperBackbone)
                   else copy.deepcopy(self.encoder))
        return FrozenModel(encoder, choices["pool"], self.head.freeze(choices), self.head.freeze_tokens(choices))

    def encoder_parameters(self, choices: Mapping[str, Any]) -> int:
        """Parameters of the frozen encoder of ``choices`` (computed, not built)."""
        if isinstance(self.encoder, SuperBackbone):
            return self.encoder.num_parameters(choices)
        return sum(p.numel() for p in self.encoder.parameters())

    def head_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())
