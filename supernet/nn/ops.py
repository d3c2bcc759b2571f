"""Supernet ops: allocated at max size, the active choice sliced in ``forward``, ``freeze`` into plain modules.

Every op takes its active choice as an explicit ``forward`` argument (no "current sample"
stored elsewhere), either one value or a ``Mixture`` of values with weights (NNI's
``forward_argument`` idiom: the op slices, a one-shot policy in ``strategies`` decides the weights), and reads its input width from the input tensor, as once-for-all's dynamic
ops do, so a layer never holds a stale in-features value. ``freeze(...)`` returns a plain
``torch.nn`` module whose weights are copies of the active slice: the frozen op computes
exactly what the supernet op computes for that choice (tests check ``allclose``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from supernet.core.errors import InputError

# ---------------------------------------------------------------- registries (one per choice kind)

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "identity": nn.Identity,
}


def _registry_get(registry: dict, kind: str, name: str):
    key = str(name).lower().replace("-", "_")
    if key not in registry:
        raise InputError(f"unknown {kind} {name!r}; valid: {sorted(registry)}")
    return registry[key]


def create_activation(name: str) -> nn.Module:
    return _registry_get(ACTIVATIONS, "activation", name)()


# one shared instance per activation for supernet forwards (they hold no state or parameters)
_SHARED_ACTIVATIONS = {name: cls() for name, cls in ACTIVATIONS.items()}


@dataclass(frozen=True)
class Mixture:
    """A weighted combination of one label's candidates, passed to an op in place of a single value.

    ``weights``: candidate value -> scalar weight (a tensor, so the architecture parameters get
    gradients). Values in ``no_weight_grad`` are computed without gradients to the op's weights
    (ProxylessNAS: only the sampled path trains, the others only feed the gate's gradient)."""

    weights: Mapping[Any, torch.Tensor]
    no_weight_grad: frozenset = frozenset()


def mix(choice: Any, op: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """``op(choice)`` for a single value; the weighted sum of ``op(value)`` for a ``Mixture``."""
    if not isinstance(choice, Mixture):
        return op(choice)
    out = None
    for value, weight in choice.weights.items():
        if value in choice.no_weight_grad:
            with torch.no_grad():
                y = op(value)
        else:
            y = op(value)
        out = weight * y if out is None else out + weight * y
    return out


def _pool_cls(hidden: torch.Tensor, mask: torch.Tensor, pooler_output: torch.Tensor | None) -> torch.Tensor:
    return hidden[:, 0]


def _pool_mean(hidden: torch.Tensor, mask: torch.Tensor, pooler_output: torch.Tensor | None) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)                                   # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def _pool_max(hidden: torch.Tensor, mask: torch.Tensor, pooler_output: torch.Tensor | None) -> torch.Tensor:
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)


def _pool_pooler(hidden: torch.Tensor, mask: torch.Tensor, pooler_output: torch.Tensor | None) -> torch.Tensor:
    if pooler_output is None:
        raise InputError("pooling 'pooler' needs an encoder with a pooler layer (BertModel(add_pooling_layer=True))")
    return pooler_output


POOLINGS: dict[str, Callable[..., torch.Tensor]] = {
    "cls": _pool_cls, "mean": _pool_mean, "max": _pool_max, "pooler": _pool_pooler,
}


class Pooling(nn.Module):
    """Plain pooling module of a frozen model (parameter-free; the pooler's weights live in the encoder)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = _registry_get(POOLINGS, "pooling", name)

    def forward(self, hidden, mask, pooler_output=None):
        return self.fn(hidden, mask, pooler_output)

    def extra_repr(self) -> str:
        return self.name


# ---------------------------------------------------------------- elastic ops

class SuperLinear(nn.Module):
    """Linear layer allocated at (max_out, max_in); the active one is W[:out, :in], b[:out]."""

    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.max_in, self.max_out = max_in, max_out
        self.linear = nn.Linear(max_in, max_out)

    def forward(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        in_features = x.shape[-1]
        return F.linear(x, self.linear.weight[:out_features, :in_features], self.linear.bias[:out_features])

    def freeze(self, in_features: int, out_features: int) -> nn.Linear:
        plain = nn.Linear(in_features, out_features)
        with torch.no_grad():
            plain.weight.copy_(self.linear.weight[:out_features, :in_features])
            plain.bias.copy_(self.linear.bias[:out_features])
        return plain


class SuperIdentityNorm(nn.Module):
    """The 'none' normalisation."""

    def __init__(self, max_features: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def freeze(self, features: int) -> nn.Module:
        return nn.Identity()


class SuperLayerNorm(nn.Module):
    """LayerNorm over the active width, sharing the first ``width`` affine parameters."""

    def __init__(self, max_features: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(max_features, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        return F.layer_norm(x, (w,), self.norm.weight[:w], self.norm.bias[:w], self.norm.eps)

    def freeze(self, features: int) -> nn.LayerNorm:
        plain = nn.LayerNorm(features, eps=self.norm.eps)
        with torch.no_grad():
            plain.weight.copy_(self.norm.weight[:features])
            plain.bias.copy_(self.norm.bias[:features])
        return plain


class SuperBatchNorm1d(nn.Module):
    """BatchNorm1d over the active width. Running statistics are slices of the max-size buffers:
    ``F.batch_norm`` updates the slice in place, so training a width updates the shared buffer.
    Statistics mix across sampled subnets; recalibrate them per candidate before scoring."""

    def __init__(self, max_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.norm = nn.BatchNorm1d(max_features, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, bn = x.shape[-1], self.norm
        use_batch_stats = self.training or bn.running_mean is None
        if self.training and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        momentum = bn.momentum
        if momentum is None:  # cumulative moving average, as nn.BatchNorm1d does
            momentum = 1.0 / float(bn.num_batches_tracked)
        return F.batch_norm(x, bn.running_mean[:w], bn.running_var[:w], bn.weight[:w], bn.bias[:w],
                            use_batch_stats, momentum, bn.eps)

    def freeze(self, features: int) -> nn.BatchNorm1d:
        bn = self.norm
        plain = nn.BatchNorm1d(features, eps=bn.eps, momentum=bn.momentum)
        with torch.no_grad():
            plain.weight.copy_(bn.weight[:features])
            plain.bias.copy_(bn.bias[:features])
            plain.running_mean.copy_(bn.running_mean[:features])
            plain.running_var.copy_(bn.running_var[:features])
            plain.num_batches_tracked.copy_(bn.num_batches_tracked)
        return plain


NORMS: dict[str, type[nn.Module]] = {
    "none": SuperIdentityNorm, "layernorm": SuperLayerNorm, "batchnorm": SuperBatchNorm1d,
}


def create_norm(name: str, features: int) -> nn.Module:
    """A plain, freshly initialised norm of ``features`` (what a frozen super norm looks like)."""
    return _registry_get(NORMS, "norm", name)(features).freeze(features)


def fit_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """Parameter-free shortcut to another width: truncate, or zero-pad (PyramidNet's shortcut),
    so a residual connection is defined for every pair of widths in the space."""
    d = x.shape[-1]
    if d >= width:
        return x[..., :width]
    return F.pad(x, (0, width - d))


# ---------------------------------------------------------------- one hidden layer of the head

class HiddenLayer(nn.Module):
    """Plain (frozen) hidden layer: linear -> norm -> activation -> dropout (+ shortcut)."""

    def __init__(self, linear: nn.Linear, norm: nn.Module, activation: nn.Module, dropout: float, residual: bool):
        super().__init__()
        self.linear, self.norm, self.activation = linear, norm, activation
        self.dropout = nn.Dropout(dropout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.activation(self.norm(self.linear(x))))
        return h + fit_width(x, h.shape[-1]) if self.residual else h

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class SuperHiddenLayer(nn.Module):
    """Hidden layer of the supernet: one max-size linear and one max-size norm per norm kind.
    Each choice may be a ``Mixture``. Mixed widths are zero-padded to the max width, which is exact:
    the next layer and the classifier read the padding as no input."""

    def __init__(self, max_in: int, max_width: int, norms: tuple[str, ...]):
        super().__init__()
        self.max_width = max_width
        self.linear = SuperLinear(max_in, max_width)
        self.norms = nn.ModuleDict({name: _registry_get(NORMS, "norm", name)(max_width) for name in norms})

    def forward(self, x: torch.Tensor, width, activation, dropout, norm, residual) -> torch.Tensor:
        if not isinstance(width, Mixture):
            return self._at_width(x, width, activation, dropout, norm, residual)      # (B, width)
        return mix(width, lambda w: fit_width(self._at_width(x, w, activation, dropout, norm, residual),
                                              self.max_width))                        # (B, max_width)

    def _at_width(self, x: torch.Tensor, width: int, activation, dropout, norm, residual) -> torch.Tensor:
        h = self.linear(x, width)                                             # (B, width)
        h = mix(norm, lambda n: self.norms[n](h))
        h = mix(activation, lambda a: _SHARED_ACTIVATIONS[a](h))
        h = mix(dropout, lambda p: F.dropout(h, p, self.training))
        return mix(residual, lambda r: h + fit_width(x, width) if r else h)

    def freeze(self, in_features: int, width: int, activation: str, dropout: float, norm: str,
               residual: bool) -> HiddenLayer:
        return HiddenLayer(self.linear.freeze(in_features, width), self.norms[norm].freeze(width),
                           create_activation(activation), dropout, residual)