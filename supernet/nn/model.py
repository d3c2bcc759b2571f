"""The plain model a head becomes (no NNI): encoder -> token block -> pooling -> MLP. ``build_model``
makes it from pretrained weights (what retraining starts from); ``FrozenModel.predict`` runs it on
raw text once ``supernet.nn.saved.load_model`` has attached its tokenizer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from supernet.core.errors import InputError
from supernet.data.encoded import Encoded, batch_indices, encode, pad_batch
from supernet.data.readers import TextSplit
from supernet.nn.arch import Architecture
from supernet.nn.backbone import modified_encoder
from supernet.nn.encoder import encoder_outputs
from supernet.nn.head import Features, plain_head
from supernet.nn.ops import Pooling
from supernet.nn.tokens import TokenBlock


@dataclass(frozen=True)
class TextInterface:
    """What predicting from raw text needs besides the weights: kept in ``model.pt``."""

    tokenizer: Any
    text_columns: tuple[str, ...]   # the columns (one, or two for sentence pairs) the model reads
    max_length: int
    labels: tuple[str, ...] | None  # class names (None: class ids, or a regression score)
    regression: bool


class FrozenModel(nn.Module):
    """A plain model (no NNI): encoder -> token block (optional) -> pooling -> MLP head. What
    retrain fine-tunes and ships. ``load_model`` also attaches its ``TextInterface``, so
    ``predict(texts)`` works on raw text."""

    def __init__(self, encoder: nn.Module, pooling: str, head: nn.Sequential, tokens: TokenBlock | None = None):
        super().__init__()
        self.encoder, self.pooling, self.head, self.tokens = encoder, Pooling(pooling), head, tokens
        self.interface: TextInterface | None = None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, features: Features | None = None,
                **_ignored) -> torch.Tensor:
        """Logits of a batch of token ids, or of the cached encoder ``features`` of one (frozen encoder)."""
        if features is not None:
            if self.pooling.name == "pooler" or self.tokens is None:
                return self.head(features.pooled[self.pooling.name])
            hidden, attention_mask, pooler_output = features.hidden, features.mask, None
        else:
            hidden, pooler_output = encoder_outputs(self.encoder, {"input_ids": input_ids,
                                                                   "attention_mask": attention_mask,
                                                                   "token_type_ids": token_type_ids})
        if self.tokens is not None:
            hidden = self.tokens(hidden, attention_mask)                     # (B, T, W)
        return self.head(self.pooling(hidden, attention_mask, pooler_output))

    def outputs(self, texts: Sequence[str | tuple[str, str]], batch_size: int = 64, device: str | None = None,
                progress: bool = False) -> np.ndarray:
        """Raw outputs for ``texts`` (strings, or (first, second) pairs for a sentence-pair model)."""
        if self.interface is None:
            raise InputError("this model has no tokenizer attached: load it with supernet.load_model(path)")
        data = encode_texts(texts, self.interface)
        device = device or next(self.parameters()).device.type
        return model_outputs(self.to(device), data, self.interface.tokenizer.pad_token_id or 0, device, batch_size,
                             progress)

    def predict_proba(self, texts, **kwargs) -> np.ndarray:
        """Class probabilities, (len(texts), classes)."""
        if self.interface is not None and self.interface.regression:
            raise InputError("a regression model has no class probabilities; use predict()")
        return torch.softmax(torch.from_numpy(self.outputs(texts, **kwargs)), -1).numpy()

    def predict(self, texts, **kwargs) -> list:
        """Label names (or class ids where the task has none) for a classifier, scores for regression."""
        out = self.outputs(texts, **kwargs)
        if self.interface.regression:
            return out.reshape(-1).tolist()
        ids = out.argmax(-1).tolist()
        return [self.interface.labels[i] for i in ids] if self.interface.labels else ids


def encode_texts(texts: Sequence[str | tuple[str, str]], interface: TextInterface) -> Encoded:
    """Tokenised ``texts`` (one column, or pairs), checked against the columns the model reads."""
    texts = list(texts)
    if not texts:
        raise InputError("no texts to predict")
    pairs = not isinstance(texts[0], str)
    want = len(interface.text_columns)
    if (want == 2) != pairs or (pairs and any(len(t) != 2 for t in texts)):
        raise InputError(f"the model reads {want} text column(s) {list(interface.text_columns)}: give "
                         + ("(first, second) pairs" if want == 2 else "single strings"))
    columns = tuple(zip(*texts)) if pairs else (tuple(texts),)
    return encode(TextSplit(columns, np.zeros(len(texts), np.int64)), interface.tokenizer, interface.max_length)


@torch.no_grad()
def model_outputs(model: nn.Module, data: Encoded, pad_id: int, device: str = "cpu", batch_size: int = 128,
                  progress: bool = False) -> np.ndarray:
    """Outputs of a plain model over a split, in row order: logits (N, C) or regression scores (N, 1)."""
    from tqdm.auto import tqdm
    was_training = model.training
    model.eval()
    outputs = []
    for index in tqdm(batch_indices(data, batch_size, shuffle=False, bucket=False), desc="predict", unit="batch",
                      disable=not progress, dynamic_ncols=True):
        batch = {k: v.to(device) for k, v in pad_batch(data, index, pad_id).items() if k != "labels"}
        outputs.append(model(**batch).float().cpu())
    model.train(was_training)
    return torch.cat(outputs).numpy()


def build_model(arch: Architecture, encoder: nn.Module, num_labels: int) -> FrozenModel:
    """Plain model of ``arch`` on a pretrained encoder, head freshly initialised: what retraining
    starts from. In a backbone space the encoder is first modified (FFNs skipped, conv blocks in
    place of attention; conv blocks start fresh)."""
    space = arch.search_space
    if space.has_backbone and encoder.config.num_hidden_layers != space.encoder_layers:
        raise InputError(f"the architecture's space {space.name!r} has {space.encoder_layers} encoder layers, and the "
                         f"encoder has {encoder.config.num_hidden_layers}; pass the --model / --num-hidden-layers "
                         "it was searched with")
    head, tokens = plain_head(space, arch.choices, encoder.config.hidden_size, num_labels)
    return FrozenModel(modified_encoder(encoder, space, arch.choices), arch.choices["pool"], head, tokens)
