"""The supernet: one NNI ``ModelSpace`` = encoder + every head of the space, sharing weights.

``LabelSpace`` registers one ``nni.choice`` per label of a space, so NNI strategies see the
labels that the architecture JSON uses; ``HeadSupernet`` is that space over the encoder and all
heads. Its ``forward`` takes the architecture explicitly; ``freeze(choices)`` returns a plain
``FrozenModel`` (encoder copy + plain head) whose weights are copies of the supernet's active
slices. ``build_model`` makes the same plain model from pretrained weights (what retraining
starts from), and ``save_model`` / ``load_model`` store and restore a trained one.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace
from torch import nn

from .arch import Architecture
from .backbone import SuperBackbone, modified_encoder
from .data import Encoded, TextSplit, batch_indices, encode, pad_batch
from .errors import InputError
from .files import atomic_torch_save
from .ops import (POOLINGS, HiddenLayer, Mixture, Pooling, SuperHiddenLayer, SuperLinear, create_activation, create_norm,
                  fit_width, mix)
from .space import SearchSpace, layer_label
from .tokens import TOKEN_KINDS, SuperTokenBlocks, TokenBlock, output_width, plain_token_block


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


def encoder_outputs(encoder: nn.Module, batch: Mapping[str, torch.Tensor]):
    """(last hidden state, pooler output or None) of a HF encoder."""
    out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch.get("token_type_ids"))
    return out.last_hidden_state, getattr(out, "pooler_output", None)


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
            raise InputError("this model has no tokenizer attached: load it with supernet.model.load_model(path)")
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


def save_model(path: Path, model: FrozenModel, arch: Architecture, num_labels: int, source: str | None,
               text_columns: tuple[str, ...], max_length: int) -> None:
    """A trained plain model with everything ``load_model`` needs, the tokenizer's files included:
    no pretrained files, no NNI, no network."""
    import tempfile

    from .encoder import load_tokenizer
    with tempfile.TemporaryDirectory() as d:
        load_tokenizer(source).save_pretrained(d)
        tokenizer_files = {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}
    atomic_torch_save({"architecture": arch.to_dict(), "num_labels": num_labels, "encoder_source": source,
                       "encoder_config": model.encoder.config.to_dict(), "tokenizer_files": tokenizer_files,
                       "text_columns": list(text_columns), "max_length": max_length,
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a ``model.pt``, or one error naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "architecture" not in state:
            raise ValueError("no architecture record")
    except FileNotFoundError:
        raise InputError(f"{path}: no such model file") from None
    except Exception as e:
        raise InputError(f"{path} is not a saved retrain model (corrupt or truncated: {type(e).__name__}); "
                         "retrain again or use another model.pt") from None
    return state


def load_model(path: str | os.PathLike) -> FrozenModel:
    """One call from a saved ``model.pt`` to a ready plain model (eval mode; no NNI involved)."""
    from transformers import AutoConfig, AutoModel
    state = read_model_file(path)
    arch = Architecture.from_dict(state["architecture"])
    config_dict = dict(state["encoder_config"])
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    model = build_model(arch, AutoModel.from_config(config), state["num_labels"])
    model.load_state_dict(state["state_dict"])
    model.interface = _interface(state, arch)
    return model.eval()


def _interface(state: dict[str, Any], arch: Architecture) -> TextInterface:
    import tempfile

    from transformers import AutoTokenizer

    from .encoder import load_tokenizer
    if "tokenizer_files" in state:
        with tempfile.TemporaryDirectory() as d:
            for name, data in state["tokenizer_files"].items():
                (Path(d) / name).write_bytes(data)
            tokenizer = AutoTokenizer.from_pretrained(d)
    else:  # saved before tokenizers were kept in the file
        tokenizer = load_tokenizer(state["encoder_source"])
    return TextInterface(tokenizer, tuple(state.get("text_columns", ())), state.get("max_length", 128), arch.labels,
                         state["num_labels"] == 1)
