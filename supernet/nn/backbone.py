"""Backbone choices over a pretrained BERT-layout encoder: per layer, keep or skip the feed-forward
sublayer, and the pretrained self-attention or a depthwise-separable 1-D convolution.

- FFN skip (Sridhar & Sarah 2020, "Undivided Attention"): the layer's output is its attention
  block's output (that block already ends in residual + LayerNorm); the FFN's two linears and its
  LayerNorm are gone from the frozen model.
- Convolution mixer (AutoBERT-Zero's conv blocks): depthwise conv over tokens -> GELU -> pointwise
  linear -> dropout -> residual -> LayerNorm. The supernet holds one block per layer at the largest
  kernel of the space; kernel k uses the centre k taps (once-for-all's elastic kernel), so every
  kernel size shares weights. The block is new: it is trained during supernet fine-tuning (and
  from the same initialisation when an architecture is retrained).

``SuperBackbone`` runs its own layer loop on the encoder's pretrained modules. Attention is
computed from the pretrained query/key/value/output weights with ``scaled_dot_product_attention``
and the 2-D padding mask, not through transformers' layer classes, whose mask handling changes
between releases; a test checks the all-attention, all-FFN path equals the transformers model.
``freeze(choices)`` returns a plain ``BackboneEncoder`` holding copies of the active weights.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from supernet.core.errors import InputError
from supernet.nn.space import FFN_CHOICES, MIXERS, backbone_label


def _check_layout(encoder: nn.Module) -> None:
    """Backbone choices need BERT's module layout (BERT, RoBERTa, MiniLM, ... share it)."""
    try:
        layer = encoder.encoder.layer[0]
        layer.attention.self.query, layer.attention.output.LayerNorm, layer.intermediate.dense
        layer.output.dense, encoder.embeddings
    except (AttributeError, IndexError, TypeError):
        kind = getattr(getattr(encoder, "config", None), "model_type", type(encoder).__name__)
        raise InputError(f"backbone spaces need a BERT-layout encoder (encoder.layer[i].attention.self.query, "
                         f".intermediate, .output); {kind!r} has another layout: use a head-only space") from None


def _copy_norm(norm: nn.LayerNorm) -> nn.LayerNorm:
    plain = nn.LayerNorm(norm.normalized_shape, eps=norm.eps)
    plain.load_state_dict(norm.state_dict())
    return plain


class SelfAttentionBlock(nn.Module):
    """The pretrained self-attention sublayer (post-LN): attention -> dense -> dropout -> residual -> LayerNorm."""

    def __init__(self, hf_attention: nn.Module, num_heads: int, attention_dropout: float):
        super().__init__()
        self.query, self.key, self.value = hf_attention.self.query, hf_attention.self.key, hf_attention.self.value
        self.dense, self.norm = hf_attention.output.dense, hf_attention.output.LayerNorm
        self.dropout = hf_attention.output.dropout
        self.num_heads, self.attention_dropout = num_heads, attention_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        heads = lambda y: y.view(b, t, self.num_heads, h // self.num_heads).transpose(1, 2)  # (B, nh, T, d)
        keep = mask.bool()[:, None, None, :]                                   # (B, 1, 1, T) keys to attend
        ctx = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             attn_mask=keep, dropout_p=self.attention_dropout if self.training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(b, t, h)                             # (B, T, H)
        return self.norm(self.dropout(self.dense(ctx)) + x)


class FeedForwardBlock(nn.Module):
    """The pretrained feed-forward sublayer: dense -> act -> dense -> dropout -> residual -> LayerNorm."""

    def __init__(self, hf_layer: nn.Module):
        super().__init__()
        self.up, self.act = hf_layer.intermediate.dense, hf_layer.intermediate.intermediate_act_fn
        self.down, self.norm, self.dropout = hf_layer.output.dense, hf_layer.output.LayerNorm, hf_layer.output.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.dropout(self.down(self.act(self.up(x)))) + x)


class ConvBlock(nn.Module):
    """Plain depthwise-separable convolution block of one kernel size (the frozen form)."""

    def __init__(self, hidden: int, kernel: int, dropout: float, eps: float):
        super().__init__()
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.pointwise = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # padding rows are zeroed first: a real token never sees a pad's embedding, as with attention
        h = self.depthwise((x * mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2)).transpose(1, 2)  # (B, T, H)
        return self.norm(self.dropout(self.pointwise(F.gelu(h))) + x)


class SuperConvBlock(nn.Module):
    """Depthwise-separable convolution block allocated at ``max_kernel``; kernel k uses the centre k taps."""

    def __init__(self, hidden: int, max_kernel: int, dropout: float, norm_init: nn.LayerNorm):
        super().__init__()
        self.max_kernel, self.dropout_p = max_kernel, dropout
        self.depthwise = nn.Conv1d(hidden, hidden, max_kernel, groups=hidden)
        self.pointwise = nn.Linear(hidden, hidden)
        # a zero residual branch: a new block starts as "skip the mixer", not as noise in a pretrained
        # network (the zero-init-residual trick); the LayerNorm starts as the attention block's
        nn.init.zeros_(self.pointwise.weight)
        nn.init.zeros_(self.pointwise.bias)
        self.norm = _copy_norm(norm_init)

    def _taps(self, kernel: int) -> slice:
        start = (self.max_kernel - kernel) // 2
        return slice(start, start + kernel)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kernel: int) -> torch.Tensor:
        weight = self.depthwise.weight[:, :, self._taps(kernel)]               # (H, 1, k)
        h = (x * mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2)               # (B, H, T), pads zeroed
        h = F.conv1d(h, weight, self.depthwise.bias, padding=kernel // 2, groups=x.shape[-1]).transpose(1, 2)
        h = F.dropout(self.pointwise(F.gelu(h)), self.dropout_p, self.training)
        return self.norm(h + x)

    def freeze(self, kernel: int) -> ConvBlock:
        plain = ConvBlock(self.pointwise.in_features, kernel, self.dropout_p, self.norm.eps)
        with torch.no_grad():
            plain.depthwise.weight.copy_(self.depthwise.weight[:, :, self._taps(kernel)])
            plain.depthwise.bias.copy_(self.depthwise.bias)
        plain.pointwise.load_state_dict(self.pointwise.state_dict())
        plain.norm.load_state_dict(self.norm.state_dict())
        return plain

    def num_parameters(self, kernel: int) -> int:
        h = self.pointwise.in_features
        return h * kernel + h + h * h + h + 2 * h


class EncoderLayer(nn.Module):
    """Plain encoder layer of a frozen backbone: a token mixer, then the FFN unless it was skipped."""

    def __init__(self, mixer: nn.Module, ffn: FeedForwardBlock | None):
        super().__init__()
        self.mixer, self.ffn = mixer, ffn

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.mixer(x, mask)
        return self.ffn(x) if self.ffn is not None else x


class SuperEncoderLayer(nn.Module):
    """One encoder layer of the supernet: the pretrained attention and FFN, plus a conv block when
    the space offers convolutions."""

    def __init__(self, hf_layer: nn.Module, config, max_kernel: int):
        super().__init__()
        self.attention = SelfAttentionBlock(hf_layer.attention, config.num_attention_heads,
                                            config.attention_probs_dropout_prob)
        self.conv = (SuperConvBlock(config.hidden_size, max_kernel, config.hidden_dropout_prob, self.attention.norm)
                     if max_kernel else None)
        self.ffn = FeedForwardBlock(hf_layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, mixer: str, ffn: str) -> torch.Tensor:
        kernel = MIXERS[mixer]
        x = self.attention(x, mask) if kernel is None else self.conv(x, mask, kernel)
        return self.ffn(x) if FFN_CHOICES[ffn] else x

    def freeze(self, mixer: str, ffn: str) -> EncoderLayer:
        kernel = MIXERS[mixer]
        block = copy.deepcopy(self.attention) if kernel is None else self.conv.freeze(kernel)
        return EncoderLayer(block, copy.deepcopy(self.ffn) if FFN_CHOICES[ffn] else None)

    def num_parameters(self, mixer: str, ffn: str) -> int:
        kernel = MIXERS[mixer]
        count = lambda m: sum(p.numel() for p in m.parameters())
        mixing = count(self.attention) if kernel is None else self.conv.num_parameters(kernel)
        return mixing + (count(self.ffn) if FFN_CHOICES[ffn] else 0)


def _encoder_output(x: torch.Tensor, pooler: nn.Module | None, hidden: list[torch.Tensor] | None):
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooler(x) if pooler is not None else None,
                                      hidden_states=tuple(hidden) if hidden is not None else None)


def _padding_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(input_ids) if attention_mask is None else attention_mask


class BackboneEncoder(nn.Module):
    """A plain modified encoder (no NNI): embeddings -> layers -> pooler, with a transformers-style
    output (``last_hidden_state``, ``pooler_output``, ``hidden_states``) and the encoder's ``config``."""

    def __init__(self, config, embeddings: nn.Module, layers: list[EncoderLayer], pooler: nn.Module | None):
        super().__init__()
        self.config, self.embeddings, self.layers, self.pooler = config, embeddings, nn.ModuleList(layers), pooler

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False, **_ignored):
        mask = _padding_mask(input_ids, attention_mask)
        x = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (B, T, H)
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            x = layer(x, mask)
            if hidden is not None:
                hidden.append(x)
        return _encoder_output(x, self.pooler, hidden)

    def new_parameters(self) -> list[nn.Parameter]:
        """The conv blocks' parameters (no pretrained value): fine-tuned at the head's learning rate."""
        return [p for layer in self.layers if isinstance(layer.mixer, ConvBlock) for p in layer.mixer.parameters()]


class SuperBackbone(nn.Module):
    """The encoder of a backbone space: every layer can take each mixer and FFN choice of ``space``.
    Holds (does not copy) the pretrained encoder's modules."""

    def __init__(self, encoder: nn.Module, space):
        super().__init__()
        _check_layout(encoder)
        config = encoder.config
        if config.num_hidden_layers != space.encoder_layers:
            raise InputError(f"space {space.name!r} is bound to {space.encoder_layers} encoder layers, and the "
                             f"encoder has {config.num_hidden_layers}")
        kernels = [MIXERS[m] for m in space.mixer if MIXERS[m]]
        self.space, self.config = space, config
        self.embeddings, self.pooler = encoder.embeddings, getattr(encoder, "pooler", None)
        self.layers = nn.ModuleList(SuperEncoderLayer(layer, config, max(kernels, default=0))
                                    for layer in encoder.encoder.layer)

    def _layer_choices(self, choices: Mapping[str, Any]) -> list[tuple[str, str]]:
        full = self.space.backbone_choices(choices)
        return [(full[backbone_label("mixer", j)], full[backbone_label("ffn", j)]) for j in range(len(self.layers))]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, choices: Mapping[str, Any],
                output_hidden_states: bool = False):
        mask = _padding_mask(input_ids, attention_mask)
        x = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (B, T, H)
        hidden = [x] if output_hidden_states else None
        for layer, (mixer, ffn) in zip(self.layers, self._layer_choices(choices)):
            x = layer(x, mask, mixer, ffn)
            if hidden is not None:
                hidden.append(x)
        return _encoder_output(x, self.pooler, hidden)

    def freeze(self, choices: Mapping[str, Any]) -> BackboneEncoder:
        layers = [layer.freeze(mixer, ffn) for layer, (mixer, ffn) in zip(self.layers, self._layer_choices(choices))]
        return BackboneEncoder(copy.deepcopy(self.config), copy.deepcopy(self.embeddings), layers,
                               copy.deepcopy(self.pooler))

    def num_parameters(self, choices: Mapping[str, Any]) -> int:
        """Parameters of ``freeze(choices)``, without building it."""
        count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0
        return count(self.embeddings) + count(self.pooler) + sum(
            layer.num_parameters(mixer, ffn) for layer, (mixer, ffn) in zip(self.layers, self._layer_choices(choices)))

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters with no pretrained value (the conv blocks): they train at the head's learning rate."""
        return [p for layer in self.layers if layer.conv is not None for p in layer.conv.parameters()]


def modified_encoder(encoder: nn.Module, space, choices: Mapping[str, Any]) -> nn.Module:
    """The plain encoder of ``choices`` built from a pretrained encoder (the encoder itself for a
    head-only space): what retrain fine-tunes."""
    if not space.has_backbone:
        return encoder
    return SuperBackbone(encoder, space).freeze(choices)