"""Token-level head blocks: a convolution or a Transformer-encoder block over the encoder's last hidden
states, before the pooling (Kenneweg et al. 2024's head families).

- ``conv``: ``layers`` x [zero the padding -> Conv1d over tokens (kernel k, ``width`` channels) ->
  GELU (-> + shortcut)]. The first layer maps the hidden size to ``width``. The supernet holds each
  layer at the largest width and kernel: width w uses the first w output channels (and input
  channels), kernel k the centre k taps (once-for-all's elastic kernel).
- ``attention``: ``layers`` x a post-LN Transformer-encoder layer (self-attention with a key padding
  mask, then a feed-forward of the hidden size, as the paper's ``EncoderBlock``). Heads are elastic as
  in AutoFormer/HAT: the head dimension is fixed at hidden / max heads, and h heads use the first
  h x head_dim outputs of Q, K, V and the matching input columns of the output projection.
- ``skip``: a shortcut: around each conv layer (its input truncated or zero-padded to the layer's
  width, as in the MLP's layers), and around the whole attention block.

Every op takes each choice as a value or a ``Mixture`` (one-shot policies) and ``freeze``s into plain
modules with copied weights. Padding never reaches a real token: it is zeroed before every
convolution and masked out of every attention.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from supernet.nn.ops import Mixture, fit_width, mix

# ---------------------------------------------------------------- registry (one per choice kind)

# token-block kind -> the labels (besides ``tok_kind``) it reads; ``none`` pools the encoder output
TOKEN_KINDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "conv": ("tok_layers", "tok_width", "tok_kernel", "tok_skip"),
    "attention": ("tok_layers", "tok_heads", "tok_skip"),
}
TOKEN_LABELS = ("tok_kind", "tok_layers", "tok_width", "tok_kernel", "tok_heads", "tok_skip")


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x * mask.unsqueeze(-1).to(x.dtype)                                # (B, T, C), pads zeroed


def _taps(max_kernel: int, kernel: int) -> slice:
    start = (max_kernel - kernel) // 2
    return slice(start, start + kernel)


# ---------------------------------------------------------------- convolution

class TokenConvLayer(nn.Module):
    """Plain (frozen) token convolution layer."""

    def __init__(self, in_channels: int, width: int, kernel: int, skip: bool):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, width, kernel, padding=kernel // 2)
        self.skip = skip

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.conv(_masked(x, mask).transpose(1, 2)).transpose(1, 2))  # (B, T, width)
        return h + fit_width(x, h.shape[-1]) if self.skip else h


class SuperTokenConvLayer(nn.Module):
    """One token convolution layer at (max_width, max_in, max_kernel)."""

    def __init__(self, max_in: int, max_width: int, max_kernel: int):
        super().__init__()
        self.max_width, self.max_kernel = max_width, max_kernel
        self.conv = nn.Conv1d(max_in, max_width, max_kernel)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, width, kernel, skip) -> torch.Tensor:
        if not isinstance(width, Mixture):
            return self._at(x, mask, width, kernel, skip)                       # (B, T, width)
        return mix(width, lambda w: fit_width(self._at(x, mask, w, kernel, skip), self.max_width))

    def _at(self, x, mask, width: int, kernel, skip) -> torch.Tensor:
        xt = _masked(x, mask).transpose(1, 2)                                   # (B, C_in, T)
        c = x.shape[-1]

        def conv(k: int) -> torch.Tensor:
            w = self.conv.weight[:width, :c, _taps(self.max_kernel, k)]
            return F.conv1d(xt, w, self.conv.bias[:width], padding=k // 2)
        h = F.gelu(mix(kernel, conv).transpose(1, 2))                           # (B, T, width)
        return mix(skip, lambda s: h + fit_width(x, width) if s else h)

    def freeze(self, in_channels: int, width: int, kernel: int, skip: bool) -> TokenConvLayer:
        plain = TokenConvLayer(in_channels, width, kernel, skip)
        with torch.no_grad():
            plain.conv.weight.copy_(self.conv.weight[:width, :in_channels, _taps(self.max_kernel, kernel)])
            plain.conv.bias.copy_(self.conv.bias[:width])
        return plain


# ---------------------------------------------------------------- attention

def _attention(x: torch.Tensor, mask: torch.Tensor, q, k, v, heads: int, head_dim: int, dropout: float
               ) -> torch.Tensor:
    b, t, _ = x.shape
    split = lambda y: y.view(b, t, heads, head_dim).transpose(1, 2)            # (B, h, T, d)
    keep = mask.bool()[:, None, None, :]                                        # (B, 1, 1, T) keys attended
    ctx = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=keep, dropout_p=dropout)
    return ctx.transpose(1, 2).reshape(b, t, heads * head_dim)                 # (B, T, h*d)


class TokenAttentionLayer(nn.Module):
    """Plain (frozen) post-LN Transformer-encoder layer with ``heads`` heads of ``head_dim``."""

    def __init__(self, hidden: int, heads: int, head_dim: int, dropout: float, eps: float = 1e-5):
        super().__init__()
        self.heads, self.head_dim, self.dropout_p = heads, head_dim, dropout
        self.q, self.k, self.v = (nn.Linear(hidden, heads * head_dim) for _ in range(3))
        self.out = nn.Linear(heads * head_dim, hidden)
        self.norm1, self.norm2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.up, self.down = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        p = self.dropout_p if self.training else 0.0
        ctx = _attention(x, mask, self.q(x), self.k(x), self.v(x), self.heads, self.head_dim, p)
        x = self.norm1(x + F.dropout(self.out(ctx), p, self.training))
        return self.norm2(x + F.dropout(self.down(F.relu(self.up(x))), p, self.training))


class SuperTokenAttentionLayer(nn.Module):
    """A Transformer-encoder layer with elastic heads (AutoFormer): allocated at ``max_heads``."""

    def __init__(self, hidden: int, max_heads: int, dropout: float):
        super().__init__()
        self.hidden, self.head_dim, self.dropout_p = hidden, hidden // max_heads, dropout
        self.layer = TokenAttentionLayer(hidden, max_heads, self.head_dim, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, heads) -> torch.Tensor:
        return mix(heads, lambda h: self._at(x, mask, h))

    def _at(self, x: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
        L, d, p = self.layer, heads * self.head_dim, self.dropout_p if self.training else 0.0
        lin = lambda m, y: F.linear(y, m.weight[:d], m.bias[:d])
        ctx = _attention(x, mask, lin(L.q, x), lin(L.k, x), lin(L.v, x), heads, self.head_dim, p)
        x = L.norm1(x + F.dropout(F.linear(ctx, L.out.weight[:, :d], L.out.bias), p, self.training))
        return L.norm2(x + F.dropout(L.down(F.relu(L.up(x))), p, self.training))

    def freeze(self, heads: int) -> TokenAttentionLayer:
        d, L = heads * self.head_dim, self.layer
        plain = TokenAttentionLayer(self.hidden, heads, self.head_dim, self.dropout_p, L.norm1.eps)
        with torch.no_grad():
            for name in ("q", "k", "v"):
                getattr(plain, name).weight.copy_(getattr(L, name).weight[:d])
                getattr(plain, name).bias.copy_(getattr(L, name).bias[:d])
            plain.out.weight.copy_(L.out.weight[:, :d])
            plain.out.bias.copy_(L.out.bias)
            for name in ("norm1", "norm2", "up", "down"):
                getattr(plain, name).load_state_dict(getattr(L, name).state_dict())
        return plain


# ---------------------------------------------------------------- the block

class TokenBlock(nn.Module):
    """Plain (frozen) token block: its layers, then the block's shortcut (attention blocks only:
    a conv layer carries its own, since its widths change)."""

    def __init__(self, layers: list[nn.Module], skip: bool):
        super().__init__()
        self.layers, self.skip = nn.ModuleList(layers), skip

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = hidden
        for layer in self.layers:
            x = layer(x, mask)
        return x + hidden if self.skip else x

    def extra_repr(self) -> str:
        return f"skip={self.skip}"


class SuperTokenBlocks(nn.Module):
    """Every token block of a space: the conv layers and the attention layers, each at max size."""

    def __init__(self, space, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.space, self.hidden = space, hidden
        layers = max(space.tok_layers)
        self.conv = (nn.ModuleList(SuperTokenConvLayer(hidden if i == 0 else max(space.tok_width), max(space.tok_width),
                                                       max(space.tok_kernel)) for i in range(layers))
                     if "conv" in space.tok_kind else None)
        self.attention = (nn.ModuleList(SuperTokenAttentionLayer(hidden, max(space.tok_heads), dropout)
                                        for _ in range(layers)) if "attention" in space.tok_kind else None)

    @property
    def out_width(self) -> int:
        """The widest output of any block (mixtures pad to it)."""
        return max([self.hidden, *(self.space.tok_width if self.conv is not None else ())])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, choices: Mapping[str, Any]) -> torch.Tensor:
        """The block of ``choices['tok_kind']`` over ``hidden`` (B, T, H) -> (B, T, width); with a mixed
        kind, every kind's output padded to ``out_width`` and mixed."""
        kind = choices["tok_kind"]
        if not isinstance(kind, Mixture):
            return self._kind(kind, hidden, mask, choices)
        return mix(kind, lambda k: fit_width(self._kind(k, hidden, mask, choices), self.out_width))

    def _kind(self, kind: str, hidden, mask, c: Mapping[str, Any]) -> torch.Tensor:
        if kind == "none":
            return hidden
        if kind == "conv":
            step = lambda x, layer: layer(x, mask, c["tok_width"], c["tok_kernel"], c["tok_skip"])
            return self._stack(self.conv, hidden, c["tok_layers"], step, fit_to=max(self.space.tok_width))
        step = lambda x, layer: layer(x, mask, c["tok_heads"])
        out = self._stack(self.attention, hidden, c["tok_layers"], step, fit_to=self.hidden)
        return mix(c["tok_skip"], lambda s: out + hidden if s else out)

    @staticmethod
    def _stack(layers: nn.ModuleList, x: torch.Tensor, count, step, fit_to: int) -> torch.Tensor:
        """The first ``count`` layers; a mixed count mixes the output after each layer (padded)."""
        if not isinstance(count, Mixture):
            for layer in layers[:count]:
                x = step(x, layer)
            return x
        outputs = {}
        for i, layer in enumerate(layers[:max(count.weights)]):
            x = step(x, layer)
            outputs[i + 1] = fit_width(x, fit_to)
        return mix(count, outputs.__getitem__)

    def freeze(self, choices: Mapping[str, Any]) -> TokenBlock | None:
        """The plain block of ``choices`` (None for kind ``none``), weights copied."""
        kind = choices["tok_kind"]
        if kind == "none":
            return None
        n = choices["tok_layers"]
        if kind == "conv":
            w, k, s = choices["tok_width"], choices["tok_kernel"], choices["tok_skip"]
            return TokenBlock([layer.freeze(self.hidden if i == 0 else w, w, k, s)
                               for i, layer in enumerate(self.conv[:n])], skip=False)
        return TokenBlock([layer.freeze(choices["tok_heads"]) for layer in self.attention[:n]], choices["tok_skip"])


def plain_token_block(space, choices: Mapping[str, Any], hidden: int) -> TokenBlock | None:
    """A freshly initialised block of ``choices`` (what retraining starts from): the structure
    ``SuperTokenBlocks.freeze`` returns, with PyTorch's default initialisation for its sizes."""
    kind = choices.get("tok_kind", "none")
    if kind == "none":
        return None
    n = choices["tok_layers"]
    if kind == "conv":
        w, k, s = choices["tok_width"], choices["tok_kernel"], choices["tok_skip"]
        return TokenBlock([TokenConvLayer(hidden if i == 0 else w, w, k, s) for i in range(n)], skip=False)
    head_dim = hidden // max(space.tok_heads)
    return TokenBlock([TokenAttentionLayer(hidden, choices["tok_heads"], head_dim, 0.1) for _ in range(n)],
                      choices["tok_skip"])


def output_width(choices: Mapping[str, Any], hidden: int) -> int:
    """The width of the pooled vector a token block gives the MLP."""
    return choices["tok_width"] if choices.get("tok_kind", "none") == "conv" else hidden