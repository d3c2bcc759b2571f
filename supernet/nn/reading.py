"""What a head reads from the encoder, and reading it.

A head reads a vector from one of three *views* of a row and its encoder outputs:

- the last layer, pooled (``pool``): the only view before layer and pair choices;
- every layer, pooled (``layers``: the mean of the last 4, the max of the last 3, a learned scalar mix
  of all): the layer choices of ELMo's scalar mix and MaxPoolBERT;
- a sentence pair's two texts encoded apart by the same encoder (``pair``: ``siamese`` reads
  ``[u, v, |u-v|, u*v]``, ``cosine`` reads cos(u, v), ``cosine_proj`` reads ``[u, v]`` for a learned
  projection of each before their cosine), as sentence-transformers compares two embeddings;
  ``joint`` is the cross-encoding of the pair as one sequence, what BERT fine-tuning does.

``Needs`` says which of them a set of heads reads, ``read`` computes them from one batch (one encoder
forward per view), and ``EncoderCache`` (``supernet.train.frozen``) keeps them for a frozen encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from supernet.nn.encoder import EncoderOutput
from supernet.nn.ops import POOLINGS

PAIRS = ("joint", "siamese", "cosine", "cosine_proj")
COSINE_PAIRS = ("cosine", "cosine_proj")  # heads with no MLP: a cosine's scale and bias (after a projection)
LAYER_READS = ("last", "mean4", "max3", "scalar_mix")
SIDES = ("a", "b")  # a batch's keys for a pair's texts encoded alone: a_input_ids, b_attention_mask, ...
BATCH_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Needs:
    """What a set of heads reads: which poolings, and which views."""

    pools: tuple[str, ...] = tuple(POOLINGS)
    joint: bool = True       # the row as one sequence (a pair cross-encoded)
    hidden: bool = False     # the joint view's last token states (token blocks)
    layers: bool = False     # every layer's poolings (layer choices)
    sides: bool = False      # a pair's texts encoded apart (siamese / cosine heads)

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(tuple(dict.fromkeys(self.pools + other.pools)), self.joint or other.joint,
                     self.hidden or other.hidden, self.layers or other.layers, self.sides or other.sides)


@dataclass
class Features:
    """What heads read from one encoder forward per view (see the module docstring)."""

    pooled: Mapping[str, torch.Tensor]                   # pooling -> (B, H), the last layer
    hidden: torch.Tensor | None = None                   # (B, T, H), the last layer's token states
    mask: torch.Tensor | None = None                     # (B, T)
    layered: Mapping[str, torch.Tensor] | None = None    # pooling -> (B, L+1, H), embeddings first
    sides: tuple["Features", "Features"] | None = None   # the pair's texts encoded apart
    # token-block outputs already computed on these features, by the block's choices: heads of one
    # step that share a block run it once
    token_outputs: dict = field(default_factory=dict)


# an encoder forward: (batch, all_layers) -> its outputs
EncodeFn = Callable[[Mapping[str, torch.Tensor], bool], EncoderOutput]


def side_batch(batch: Mapping[str, torch.Tensor], side: str) -> dict[str, torch.Tensor]:
    """The token tensors of one text of a pair, encoded alone (``pad_batch(..., sides=True)``)."""
    return {k: batch[f"{side}_{k}"] for k in BATCH_KEYS if f"{side}_{k}" in batch}


def pooled_view(out: EncoderOutput, mask: torch.Tensor, needs: Needs, hidden: bool) -> Features:
    """One view's Features from its encoder outputs."""
    pools = [p for p in needs.pools if p != "pooler" or out.pooler is not None]
    layered = None
    if needs.layers:  # the pooler reads the last layer's [CLS] only: no per-layer form
        layered = {p: torch.stack([POOLINGS[p](h, mask, None) for h in out.layers], 1) for p in pools
                   if p != "pooler"}
    return Features({p: POOLINGS[p](out.hidden, mask, out.pooler) for p in pools},
                    out.hidden if hidden else None, mask if hidden else None, layered)


def read(encode: EncodeFn, batch: Mapping[str, torch.Tensor], needs: Needs) -> Features:
    """The Features ``needs`` asks for: one encoder forward for the joint view, one per side."""
    out = Features({})
    if needs.joint:
        out = pooled_view(encode(batch, needs.layers), batch["attention_mask"], needs, needs.hidden)
    if needs.sides:
        views = []
        for side in SIDES:
            b = side_batch(batch, side)
            if not b:
                raise ValueError("a siamese / cosine head reads a pair's texts apart: pad the batch with sides=True")
            views.append(pooled_view(encode(b, needs.layers), b["attention_mask"], needs, False))
        out.sides = (views[0], views[1])
    return out


def reduce_layers(stack: torch.Tensor, how: str, scalar_mix: Callable[[torch.Tensor], torch.Tensor] | None
                  ) -> torch.Tensor:
    """One vector per row from every layer's pooled vectors (B, L+1, H)."""
    if how == "mean4":
        return stack[:, -4:].mean(1)
    if how == "max3":  # MaxPoolBERT: with [CLS] pooling, the max over the last 3 layers' [CLS] vectors
        return stack[:, -3:].amax(1)
    if how == "scalar_mix":
        return scalar_mix(stack)
    raise ValueError(f"unknown layer read {how!r}; valid: {list(LAYER_READS)}")


def pair_vector(u: torch.Tensor, v: torch.Tensor, how: str) -> torch.Tensor:
    """What a siamese or cosine head reads from the two texts' vectors."""
    if how == "siamese":
        return torch.cat([u, v, (u - v).abs(), u * v], -1)                    # (B, 4H), SentEval / InferSent
    if how == "cosine":
        return F.cosine_similarity(u.float(), v.float(), dim=-1)[:, None].to(u.dtype)  # (B, 1)
    if how == "cosine_proj":  # both sides, for the head's projection (``ProjectedCosine``)
        return torch.cat([u, v], -1)                                          # (B, 2H)
    raise ValueError(f"unknown pair read {how!r}; valid: {list(PAIRS[1:])}")


class ScalarMix(torch.nn.Module):
    """ELMo's scalar mix: gamma * sum_l softmax(w)_l * x_l over the layers' pooled vectors."""

    def __init__(self, layers: int):
        super().__init__()
        self.weights = torch.nn.Parameter(torch.zeros(layers))
        self.gamma = torch.nn.Parameter(torch.ones(()))

    def forward(self, stack: torch.Tensor) -> torch.Tensor:                   # (B, L+1, H) -> (B, H)
        w = torch.softmax(self.weights[:stack.shape[1]], 0).to(stack.dtype)
        return self.gamma.to(stack.dtype) * torch.einsum("blh,l->bh", stack, w)


def reading_of(choices: Mapping[str, Any]) -> dict[str, Any]:
    """The read choices of a head, with their defaults (spaces without pair or layer choices)."""
    return {"pool": choices["pool"], "layers": choices.get("layers", "last"), "pair": choices.get("pair", "joint")}
