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
from supernet.nn.encoder import EncoderOutput, encoder_outputs
from supernet.nn.head import SuperHead
from supernet.nn.model import FrozenModel
from supernet.nn.reading import Features, Needs, read
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
        self.head = SuperHead(space, encoder.config.hidden_size, num_labels, encoder.config.num_hidden_layers)

    def encode(self, batch: Mapping[str, torch.Tensor], choices: Mapping[str, Any] | None = None,
               all_layers: bool = False) -> EncoderOutput:
        """The outputs of the encoder a candidate runs (``all_layers``: every layer's states too)."""
        if not isinstance(self.encoder, SuperBackbone):
            return encoder_outputs(self.encoder, batch, all_layers)
        if choices is None:
            raise ValueError(f"space {self.space.name!r} has backbone choices: an encoder forward needs a candidate")
        assert not all_layers, "backbone spaces have no layer choices (space._split_name refuses them)"
        out = self.encoder(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), choices=choices)
        return EncoderOutput(out.last_hidden_state, out.pooler_output)

    def features(self, batch: Mapping[str, torch.Tensor], needs: Needs | None = None,
                 choices: Mapping[str, Any] | None = None) -> Features:
        """What ``needs`` asks for (default: what every head of the space reads) from one encoder forward
        per view, with ``choices``' backbone."""
        return read(lambda b, all_layers: self.encode(b, choices, all_layers), batch, needs or self.space.needs())

    def forward(self, batch: Mapping[str, torch.Tensor], choices: Mapping[str, Any]) -> torch.Tensor:
        return self.head(self.features(batch, self.space.needs([choices]), choices), choices)

    def freeze(self, sample: Mapping[str, Any]) -> FrozenModel:
        choices = self.choices_of(sample)
        encoder = (self.encoder.freeze(choices) if isinstance(self.encoder, SuperBackbone)
                   else copy.deepcopy(self.encoder))
        reads = self.space.reads(choices)
        return FrozenModel(encoder, reads["pool"], self.head.freeze(choices), self.head.freeze_tokens(choices),
                           reads["layers"], reads["pair"], self.head.freeze_mix(choices))

    def encoder_parameters(self, choices: Mapping[str, Any]) -> int:
        """Parameters of the frozen encoder of ``choices`` (computed, not built)."""
        if isinstance(self.encoder, SuperBackbone):
            return self.encoder.num_parameters(choices)
        return sum(p.numel() for p in self.encoder.parameters())

    def head_parameters(self) -> int:
        return sum(p.numel() for p in self.head.parameters())
