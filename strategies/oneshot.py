"""One-shot strategies on the head space through NNI's one-shot engine (Lightning + sequential engine).

NNI's one-shot strategies turn a model space into a supernet with *mutation hooks*: each hook
replaces a module carrying choices with a ``BaseSuperNetModule`` that knows how to sample,
mix or export them. Our ``SuperHead`` takes its architecture explicitly, which no built-in hook
understands, so ``head_hook(policy)`` replaces it with a ``OneShotHead``: the same layers and
classifier (the same parameters, not copies) plus the *policy* of the algorithm:

=============  ===========================================================================
policy         what ``OneShotHead.forward`` computes
=============  ===========================================================================
``sample``     the one head ``resample()`` drew (RandomOneShot = SPOS, and our ENAS)
``softmax``    every candidate of every label, mixed by ``softmax(alpha)`` (DARTS) or by
               NNI's ``GumbelSoftmax`` (GumbelDARTS): the strategy hands the softmax module
``binary_gate``the sampled candidate's value; every candidate feeds alpha's gradient
               (ProxylessNAS's binary-gate estimator), only the sampled one gets weight gradients
=============  ===========================================================================

Mixing candidates of different widths is exact: a layer's output is zero-padded to the max
width, and the next linear layer / the classifier read zeros as no input.

NNI's ``ENAS`` needs ``tianshou<0.5``, which pins ``protobuf~=3.19`` (tensorboard here needs
newer) and ``gym``/``numba`` (not numpy-2 ready); its ``ConcatLoader`` also loses the dataloader
index under Lightning 2.6. ``--strategy enas`` therefore runs ``ReinforceENAS``: NNI's one-shot
machinery (``RandomOneShot`` subclass, ``BaseOneShotLightningModule``) with the ENAS update rule
(REINFORCE on the dev-style reward of a held-out batch, moving-average baseline, entropy bonus)
and one categorical distribution per label instead of ENAS's LSTM controller.
"""
from __future__ import annotations

import random
from functools import partial
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

from supernet.model import SuperHead
from supernet.nni_compat import patch_darts_arch_parameter_order
from supernet.ops import create_activation, fit_width
from supernet.space import SearchSpace, layer_label

from . import ONE_SHOT
from .config import OneShotConfig

patch_darts_arch_parameter_order()  # NNI's order is per-process random: breaks resuming (see nni_compat)

POLICIES = ("sample", "softmax", "binary_gate")


class OneShotHead(BaseSuperNetModule):
    """The super head under a one-shot policy. Holds the head's own layer modules (shared, not copied)."""

    def __init__(self, head: SuperHead, policy: str, alphas: Mapping[str, nn.Parameter] | None = None,
                 softmax: nn.Module | None = None, seed: int = 0):
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"unknown one-shot policy {policy!r}; valid: {POLICIES}")
        self.space: SearchSpace = head.space
        self.labels = self.space.labels()
        self.policy = policy
        self.layers, self.classifier = head.layers, head.classifier
        self.num_labels = head.num_labels
        # kept outside the module tree: after search the plain SuperHead (same parameters) goes back
        # into the supernet, so checkpoints, scoring and freeze() see the usual structure
        object.__setattr__(self, "origin", head)
        self._arch_alpha = nn.ParameterDict(dict(alphas or {}))
        if policy != "sample" and set(self._arch_alpha) != set(self.labels):
            raise ValueError(f"policy {policy!r} needs one alpha per label: {list(self.labels)}")
        self.softmax = softmax or nn.Softmax(dim=-1)
        self._rng = random.Random(seed)
        self._sample: dict[str, Any] | None = None
        self._gates: dict[str, int] = {}

    # ------------------------------------------------------------------ NNI's supernet-module API
    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        if self.policy == "sample":
            drawn = self.space.sample(self._rng)
            self._sample = {k: memo.get(k, drawn[k]) for k in self.labels}
            return {k: v for k, v in self._sample.items() if k not in memo}
        if self.policy == "binary_gate":  # one path per label, drawn from softmax(alpha)
            with torch.no_grad():
                self._gates = {k: int(torch.multinomial(F.softmax(a.float(), -1), 1)) for k, a in self._arch_alpha.items()}
        return {}

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        if self.policy == "sample":
            if self._sample is None:
                raise RuntimeError("OneShotHead: export() before any resample()")
            return {k: v for k, v in self._sample.items() if k not in memo}
        return {k: self.labels[k][int(a.argmax())] for k, a in self._arch_alpha.items() if k not in memo}

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        if self.policy == "sample":
            raise NotImplementedError("uniform sampling has no learned distribution")
        return {k: dict(zip(self.labels[k], F.softmax(a.detach().float(), -1).tolist()))
                for k, a in self._arch_alpha.items() if k not in memo}

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self._arch_alpha.values())

    @classmethod
    def mutate(cls, module, name, memo, mutate_kwargs):  # NNI's signature; see head_hook
        raise NotImplementedError("use head_hook(policy) as the mutation hook")

    # ------------------------------------------------------------------ forward
    def needed_pools(self) -> tuple[str, ...]:
        """The poolings ``forward`` reads (the encoder pools only those)."""
        if self.policy != "sample":
            return self.space.pool
        if self._sample is None:
            raise RuntimeError("OneShotHead: forward() before resample()")
        return (self._sample["pool"],)

    def forward(self, pooled: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``pooled``: pooling name -> (B, H) encoder features (every pooling of the space)."""
        if self.policy == "sample":
            if self._sample is None:
                raise RuntimeError("OneShotHead: forward() before resample()")
            return self.origin(pooled[self._sample["pool"]], self._sample)
        x = self.mix("pool", lambda p: pooled[p])                           # (B, H)
        outputs = {0: self.classifier(x, self.num_labels)}
        for i in range(self.space.max_depth):
            x = self.mix(layer_label("width", i), partial(self._layer_at_width, i, x))  # (B, max_width)
            outputs[i + 1] = self.classifier(x, self.num_labels)              # zero padding reads as no input
        return self.mix("depth", lambda d: outputs[d])                      # (B, C)

    def _layer_at_width(self, i: int, x: torch.Tensor, width: int) -> torch.Tensor:
        layer = self.layers[i]
        h = layer.linear(x, width)                                            # (B, width)
        h = self.mix(layer_label("norm", i), lambda n: layer.norms[n](h))
        h = self.mix(layer_label("act", i), lambda a: create_activation(a)(h))
        h = self.mix(layer_label("dropout", i), lambda p: F.dropout(h, p, self.training))
        h = self.mix(layer_label("residual", i), lambda r: h + fit_width(x, width) if r else h)
        return fit_width(h, self.space.max_width)

    def mix(self, label: str, candidate: Callable[[Any], torch.Tensor]) -> torch.Tensor:
        """Combine ``candidate(value)`` over the values of ``label`` as the policy says."""
        values, alpha = self.labels[label], self._arch_alpha[label]
        if self.policy == "softmax":
            weights = self.softmax(alpha)
            return sum(w * candidate(v) for w, v in zip(weights, values))
        chosen = self._gates[label]
        probs = F.softmax(alpha, -1)
        gates = probs - probs.detach()  # value 0; carries d(probs)/d(alpha)
        gates = gates + F.one_hot(torch.tensor(chosen, device=alpha.device), len(values)).to(gates.dtype)
        out = gates[chosen] * candidate(values[chosen])
        for j, v in enumerate(values):
            if j != chosen:  # other paths: value for alpha's gradient only, no graph through weights
                with torch.no_grad():
                    other = candidate(v)
                out = out + gates[j] * other
        return out


def head_hook(policy: str, seed: int = 0):
    """An NNI mutation hook replacing our ``SuperHead`` by a ``OneShotHead`` with ``policy``.

    For DARTS-family strategies NNI has created one alpha per label (``DARTS.mutate_model``) and
    put them in ``memo``; their softmax (plain or Gumbel) comes in ``mutate_kwargs``."""
    def hook(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]):
        if type(module) is not SuperHead:  # exact type: never re-wrap, never touch other modules
            return None
        alphas = {k: memo[k] for k in module.space.labels()} if policy != "sample" else None
        return OneShotHead(module, policy, alphas, mutate_kwargs.get("softmax"), seed)
    return hook


# ---------------------------------------------------------------------------------- ENAS (REINFORCE)

class Controller(nn.Module):
    """ENAS's policy, one categorical distribution per label, trained by REINFORCE with an
    exponential-moving-average baseline and an entropy bonus (Pham et al. 2018, sec. 2.2)."""

    def __init__(self, labels: Mapping[str, tuple], entropy_weight: float, baseline_decay: float):
        super().__init__()
        self.labels = dict(labels)
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.logits = nn.ParameterDict({k: nn.Parameter(torch.zeros(len(v))) for k, v in labels.items()})
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def draw(self) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        """A sample with its log-probability and entropy (differentiable in the logits)."""
        sample, log_prob, entropy = {}, torch.zeros(()), torch.zeros(())
        for k, logits in self.logits.items():
            dist = torch.distributions.Categorical(logits=logits)
            idx = dist.sample()
            sample[k] = self.labels[k][int(idx)]
            log_prob, entropy = log_prob + dist.log_prob(idx), entropy + dist.entropy()
        return sample, log_prob, entropy

    def loss(self, log_prob: torch.Tensor, entropy: torch.Tensor, reward: float) -> torch.Tensor:
        """REINFORCE loss of one sample; updates the baseline (the first reward initialises it)."""
        decay = self.baseline_decay if int(self.updates) > 0 else 0.0
        self.baseline.mul_(decay).add_((1 - decay) * reward)
        self.updates += 1
        return -(reward - self.baseline) * log_prob - self.entropy_weight * entropy

    def argmax(self) -> dict[str, Any]:
        return {k: self.labels[k][int(logits.argmax())] for k, logits in self.logits.items()}

    def probabilities(self) -> dict[str, dict[Any, float]]:
        return {k: dict(zip(self.labels[k], F.softmax(logits.detach(), -1).tolist()))
                for k, logits in self.logits.items()}


class ReinforceModule(BaseOneShotLightningModule):
    """ENAS on NNI's one-shot module: per step, a weight step on a sampled head (train batch), then a
    controller step: sample, reward on a held-out batch with the shared weights, REINFORCE."""

    def __init__(self, training_module, labels: Mapping[str, tuple], cfg: OneShotConfig,
                 gradient_clip_val: float | None = None):
        super().__init__(training_module)
        self.cfg, self.gradient_clip_val = cfg, gradient_clip_val
        self.controller = Controller(labels, cfg.enas_entropy, cfg.enas_baseline_decay)

    def configure_architecture_optimizers(self):
        return torch.optim.Adam(self.controller.parameters(), lr=self.cfg.arch_lr, betas=(0.0, 0.999))

    def _set_sample(self, sample: dict[str, Any]) -> None:
        for module in self.supernet_modules():
            module.resample(memo=dict(sample))

    def resample(self) -> dict[str, Any]:
        with torch.no_grad():
            sample = self.controller.draw()[0]
        self._set_sample(sample)
        return sample

    def training_step(self, batch, batch_idx):
        self.resample()
        loss = self.training_module.training_step(batch["train"], batch_idx)
        self.advance_optimization(loss, batch_idx, self.gradient_clip_val)

        sample, log_prob, entropy = self.controller.draw()
        self._set_sample(sample)
        reward = self.training_module.reward(batch["val"])
        arch_optim = self.architecture_optimizers()
        arch_optim.zero_grad()
        self.manual_backward(self.controller.loss(log_prob, entropy, reward))
        arch_optim.step()
        self.advance_lr_schedulers(batch_idx)
        self.log_dict({"enas/reward": reward, "enas/baseline": float(self.controller.baseline)})
        return loss

    def export(self) -> dict[str, Any]:
        return self.controller.argmax()

    def export_probs(self) -> dict[str, Any]:
        return self.controller.probabilities()


def _reinforce_enas_class():
    """Defined lazily: importing ``nni.nas.strategy`` pulls in Lightning, which scoring-only
    trial processes never need."""
    from nni.nas.strategy import RandomOneShot

    class ReinforceENAS(RandomOneShot):
        """``--strategy enas``: see the module docstring for why this replaces NNI's ``ENAS``."""

        def __init__(self, labels: Mapping[str, tuple], cfg: OneShotConfig, gradient_clip_val: float | None = None,
                     **kwargs):
            super().__init__(**kwargs)
            self.labels, self.cfg, self.gradient_clip_val = labels, cfg, gradient_clip_val

        def configure_oneshot_module(self, training_module):
            return ReinforceModule(training_module, self.labels, self.cfg, self.gradient_clip_val)

        def train_dataloader(self, train_dataloader_fn, val_dataloader_fn):
            return {"train": train_dataloader_fn(), "val": val_dataloader_fn()}  # Lightning combines them

        def val_dataloader(self, train_dataloader_fn, val_dataloader_fn):
            return None

    return ReinforceENAS


def make_oneshot_strategy(name: str, space: SearchSpace, cfg: OneShotConfig, grad_clip: float, seed: int):
    """The NNI strategy for ``--strategy name``, with our head hook first in its hook list."""
    from nni.nas import strategy
    if name == "spos":
        return strategy.RandomOneShot(mutation_hooks=[head_hook("sample", seed)])
    if name == "enas":
        return _reinforce_enas_class()(space.labels(), cfg, grad_clip, mutation_hooks=[head_hook("sample", seed)])
    if name == "darts":
        return strategy.DARTS(mutation_hooks=[head_hook("softmax")], arc_learning_rate=cfg.arch_lr,
                              gradient_clip_val=grad_clip)
    if name == "gumbel_darts":
        return strategy.GumbelDARTS(mutation_hooks=[head_hook("softmax")], arc_learning_rate=cfg.arch_lr,
                                    gradient_clip_val=grad_clip, temperature=cfg.gumbel_temperature)
    if name == "proxyless":
        return strategy.Proxyless(mutation_hooks=[head_hook("binary_gate")], arc_learning_rate=cfg.arch_lr,
                                  gradient_clip_val=grad_clip)
    raise ValueError(f"unknown one-shot strategy {name!r}; valid: {ONE_SHOT}")
