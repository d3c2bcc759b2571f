"""The plain model a head becomes (no NNI): encoder -> what the head reads -> MLP (or cosine head). ``build_model``
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
from supernet.nn.head import plain_head
from supernet.nn.ops import Pooling
from supernet.nn.reading import Features, Needs, ScalarMix, pair_vector, read, reduce_layers
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
    """A plain model (no NNI): encoder -> what the head reads (a pooling of the last layer after an
    optional token block, or of every layer; one encoding or a pair's two) -> MLP or cosine head.
    What retrain fine-tunes and ships. ``load_model`` also attaches its ``TextInterface``, so
    ``predict(texts)`` works on raw text."""

    def __init__(self, encoder: nn.Module, pooling: str, head: nn.Sequential, tokens: TokenBlock | None = None,
                 layers: str = "last", pair: str = "joint", scalar_mix: ScalarMix | None = None):
        super().__init__()
        self.encoder, self.pooling, self.head, self.tokens = encoder, Pooling(pooling), head, tokens
        self.layers, self.pair, self.scalar_mix = layers, pair, scalar_mix
        self.interface: TextInterface | None = None

    @property
    def needs(self) -> Needs:
        """What this model reads from its encoder (``pad_batch(..., sides=needs.sides)`` feeds it)."""
        return Needs((self.pooling.name,), joint=self.pair == "joint", hidden=self.tokens is not None,
                     layers=self.layers != "last", sides=self.pair != "joint")

    def forward(self, features: Features | None = None, **batch: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of token ids (``pad_batch``'s keys), or of the cached encoder ``features``
        of one (frozen encoder)."""
        if features is None:
            features = read(lambda b, all_layers: encoder_outputs(self.encoder, b, all_layers), batch, self.needs)
        return self.head(self.vector(features))

    def vector(self, f: Features) -> torch.Tensor:
        if self.pair == "joint":
            return self.view(f)
        return pair_vector(self.view(f.sides[0]), self.view(f.sides[1]), self.pair)

    def view(self, f: Features) -> torch.Tensor:
        if self.tokens is not None:
            return self.pooling(self.tokens(f.hidden, f.mask), f.mask, None)  # (B, W)
        if self.layers == "last":
            return f.pooled[self.pooling.name]                               # (B, H)
        return reduce_layers(f.layered[self.pooling.name], self.layers, self.scalar_mix)

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
        sides = bool(getattr(model, "needs", None) and model.needs.sides)
        batch = {k: v.to(device) for k, v in pad_batch(data, index, pad_id, sides).items() if k != "labels"}
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
    head, tokens, scalar_mix = plain_head(space, arch.choices, encoder.config.hidden_size, num_labels,
                                          encoder.config.num_hidden_layers)
    reads = space.reads(arch.choices)
    return FrozenModel(modified_encoder(encoder, space, arch.choices), reads["pool"], head, tokens, reads["layers"],
                       reads["pair"], scalar_mix)
