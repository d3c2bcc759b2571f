"""One-shot strategies on the head space through NNI's one-shot engine (Lightning + sequential engine).

NNI's one-shot strategies turn a model space into a supernet with *mutation hooks*: each hook
replaces a module carrying choices with a ``BaseSuperNetModule`` that knows how to sample,
mix or export them. Our ``SuperHead`` takes its architecture explicitly, which no built-in hook
understands, so ``head_hook(policy)`` replaces it with a ``OneShotHead``: the same head (the same
parameters, not copies) driven by one *policy* of the algorithm. As in NNI's own design, the
operator (``SuperHead`` and its ops: slicing, and mixing when handed a ``Mixture``) is kept apart
from the policy, which only decides what each label gets per step:

=================  ======================================================================
policy             what each label gets
=================  ======================================================================
``sample``         the value ``resample()`` drew (RandomOneShot = SPOS, and our ENAS)
``softmax``        a ``Mixture`` of every candidate, weighted by ``softmax(alpha)`` (DARTS)
``gumbel``         the same with Gumbel-softmax weights, the noise drawn once per label per
                   forward and the temperature annealed per step (GumbelDARTS)
``binary_gate``    a ``Mixture`` whose weights are ProxylessNAS's binary gates: the value of
                   the sampled candidate, every candidate feeding alpha's gradient, only the
                   sampled one getting weight gradients
=================  ======================================================================

NNI's ``ENAS`` needs ``tianshou<0.5``, which pins ``protobuf~=3.19`` (tensorboard here needs
newer) and ``gym``/``numba`` (not numpy-2 ready); its ``ConcatLoader`` also loses the dataloader
index under Lightning 2.6. ``--strategy enas`` therefore runs ``ReinforceENAS``: NNI's one-shot
machinery (``RandomOneShot`` subclass, ``BaseOneShotLightningModule``) with the ENAS update rule
(REINFORCE on the dev-style reward of a held-out batch, moving-average baseline, entropy bonus)
and one categorical distribution per label instead of ENAS's LSTM controller.
"""
from __future__ import annotations

import random
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
from torch import nn

from supernet.core.errors import InputError
from supernet.core.nni_compat import patch_darts_arch_parameter_order
from supernet.nn.head import SuperHead
from supernet.nn.ops import Mixture
from supernet.nn.reading import Needs
from supernet.nn.space import SearchSpace

from .config import OneShotConfig

patch_darts_arch_parameter_order()  # NNI's order is per-process random: breaks resuming (see nni_compat)


class Policy:
    """What the head computes per step: ``choices()`` maps every label to a value or a ``Mixture``."""

    def __init__(self, labels: Mapping[str, tuple]):
        self.labels = dict(labels)

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        return {}

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] (for schedules such as Gumbel's temperature)."""

    def choices(self) -> dict[str, Any]:
        raise NotImplementedError

    def fixed(self) -> dict[str, Any] | None:
        """This step's head when it is one head (None: mixtures, which read every view of the encoder)."""
        return None

    def log(self, writer, step: int) -> None:
        """Write what the policy itself learns or schedules to TensorBoard (nothing, unless it has some)."""

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError("uniform sampling has no learned distribution")


class SamplePolicy(Policy):
    """One head per step, drawn uniformly (labels in NNI's ``memo`` keep the value given there)."""

    def __init__(self, space: SearchSpace, seed: int = 0):
        super().__init__(space.labels())
        self.space, self._rng, self._sample = space, random.Random(seed), None

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        drawn = self.space.sample(self._rng)
        self._sample = {k: memo.get(k, drawn[k]) for k in self.labels}
        return {k: v for k, v in self._sample.items() if k not in memo}

    def choices(self) -> dict[str, Any]:
        if self._sample is None:
            raise RuntimeError("OneShotHead: forward() before resample()")
        return self._sample

    def fixed(self) -> dict[str, Any] | None:
        return self.choices()

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        if self._sample is None:
            raise RuntimeError("OneShotHead: export() before any resample()")
        return {k: v for k, v in self._sample.items() if k not in memo}


class SoftmaxPolicy(Policy):
    """DARTS: every label a mixture of all its candidates, weighted by ``softmax(alpha)``."""

    def __init__(self, labels: Mapping[str, tuple], alphas: Mapping[str, nn.Parameter]):
        super().__init__(labels)
        if set(alphas) != set(self.labels):
            raise InputError(f"policy {type(self).__name__} needs one alpha per label: {list(self.labels)}")
        self.alphas = alphas

    def weights(self, label: str) -> torch.Tensor:
        return F.softmax(self.alphas[label], -1)

    def choices(self) -> dict[str, Any]:
        return {k: Mixture(dict(zip(v, self.weights(k)))) for k, v in self.labels.items()}

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        return {k: self.labels[k][int(a.argmax())] for k, a in self.alphas.items() if k not in memo}

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        return {k: dict(zip(self.labels[k], F.softmax(a.detach().float(), -1).tolist()))
                for k, a in self.alphas.items() if k not in memo}


class GumbelPolicy(SoftmaxPolicy):
    """GumbelDARTS: Gumbel-softmax weights. ``choices()`` is called once per forward, so each label's
    noise is drawn once per forward and shared by everything that label shapes (e.g. one draw of
    ``act_0`` for all widths of layer 0). The temperature falls linearly per step from ``init`` to
    ``low``: NNI anneals per epoch, which at a fine-tune's 1-3 epochs barely anneals at all."""

    def __init__(self, labels, alphas, temperature: tuple[float, float]):
        super().__init__(labels, alphas)
        self.init, self.low = temperature
        self.temperature = self.init

    def set_progress(self, fraction: float) -> None:
        self.temperature = self.init - (self.init - self.low) * min(max(fraction, 0.0), 1.0)

    def weights(self, label: str) -> torch.Tensor:
        return F.gumbel_softmax(self.alphas[label], tau=self.temperature, hard=False, dim=-1)

    def log(self, writer, step: int) -> None:
        if step % 10 == 0:
            writer.add_scalar("gumbel/temperature", self.temperature, step)


class BinaryGatePolicy(SoftmaxPolicy):
    """ProxylessNAS: one candidate per label sampled from ``softmax(alpha)`` per step; its gate is 1,
    the others 0, and the gates carry d(softmax(alpha))/d(alpha), so every candidate's output feeds
    alpha's gradient (ProxylessNAS eq. 4) while only the sampled one gets weight gradients."""

    def __init__(self, labels, alphas):
        super().__init__(labels, alphas)
        self._gates: dict[str, int] = {}

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            self._gates = {k: int(torch.multinomial(F.softmax(a.float(), -1), 1)) for k, a in self.alphas.items()}
        return {}

    def sampled(self) -> dict[str, Any]:
        return {k: self.labels[k][i] for k, i in self._gates.items()}

    def choices(self) -> dict[str, Any]:
        out = {}
        for k, values in self.labels.items():
            probs = F.softmax(self.alphas[k], -1)
            gates = probs - probs.detach() + F.one_hot(torch.tensor(self._gates[k], device=probs.device),
                                                       len(values)).to(probs.dtype)  # values 0/1
            chosen = values[self._gates[k]]
            out[k] = Mixture(dict(zip(values, gates)), frozenset(v for v in values if v != chosen))
        return out


class OneShotHead(BaseSuperNetModule):
    """The super head under a one-shot policy: NNI's supernet-module API, delegated to the policy."""

    def __init__(self, head: SuperHead, policy: Policy, alphas: Mapping[str, nn.Parameter] | None = None):
        super().__init__()
        self.space: SearchSpace = head.space
        # the plain head, whose parameters train; after search it goes back into the supernet, so that
        # checkpoints, scoring and freeze() see the usual structure (``head_hook`` never wraps it twice)
        self.head = head
        self._arch_alpha = nn.ParameterDict(dict(alphas or {}))
        self.policy = policy

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        return self.policy.resample(memo)

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        return self.policy.export(memo)

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        return self.policy.export_probs(memo)

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self._arch_alpha.values())

    @classmethod
    def mutate(cls, module, name, memo, mutate_kwargs):  # NNI's signature; see head_hook
        raise NotImplementedError("use head_hook(policy) as the mutation hook")

    def needs(self) -> Needs:
        """What ``forward`` reads from the encoder this step (the encoder computes only that)."""
        fixed = self.policy.fixed()
        return self.space.needs([fixed] if fixed is not None else None)

    def forward(self, features) -> torch.Tensor:
        """``features``: the encoder's ``Features`` (or its poolings by name, for a space without token blocks)."""
        return self.head(features, self.policy.choices())


def make_policy(name: str, space: SearchSpace, alphas: Mapping[str, nn.Parameter] | None,
                cfg: OneShotConfig | None = None, seed: int = 0) -> Policy:
    """The policy ``name`` over ``space``'s labels (registry: ``StrategySpec.policy``)."""
    labels = space.labels()
    if name == "sample":
        return SamplePolicy(space, seed)
    policies = {"softmax": lambda: SoftmaxPolicy(labels, alphas),
                "gumbel": lambda: GumbelPolicy(labels, alphas, (cfg or OneShotConfig()).gumbel_temperature),
                "binary_gate": lambda: BinaryGatePolicy(labels, alphas)}
    if name not in policies:
        raise InputError(f"unknown one-shot policy {name!r}; valid: {['sample', *policies]}")
    return policies[name]()


def head_hook(policy: str, cfg: OneShotConfig | None = None, seed: int = 0):
    """An NNI mutation hook replacing our ``SuperHead`` by a ``OneShotHead`` with ``policy``.
    For DARTS-family strategies NNI has created one alpha per label (``DARTS.mutate_model``) and
    put them in ``memo``."""
    wrapped: set[int] = set()

    def hook(module: nn.Module, name: str, memo: dict[str, Any], mutate_kwargs: dict[str, Any]):
        # exact type: never touch other modules; NNI then visits the wrapper's children, the head among
        # them, which must stay itself
        if type(module) is not SuperHead or id(module) in wrapped:
            return None
        wrapped.add(id(module))
        alphas = {k: memo[k] for k in module.space.labels()} if policy != "sample" else None
        return OneShotHead(module, make_policy(policy, module.space, alphas, cfg, seed), alphas)
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


# The registry's one-shot factories: (spec, space, cfg, grad_clip, seed) -> the NNI strategy, our head hook
# (the spec's policy) first in its hook list.

def random_one_shot(spec, space: SearchSpace, cfg: OneShotConfig, grad_clip: float, seed: int):
    """SPOS: NNI's RandomOneShot (it trains weights only; clipping is Lightning's, see ``_trainer``)."""
    from nni.nas import strategy
    return strategy.RandomOneShot(mutation_hooks=[head_hook(spec.policy, cfg, seed)])


def differentiable(spec, space: SearchSpace, cfg: OneShotConfig, grad_clip: float, seed: int):
    """DARTS, GumbelDARTS, Proxyless: NNI's class of that name, learning alpha at ``--arch-lr``."""
    from nni.nas import strategy
    return getattr(strategy, spec.nni_class)(mutation_hooks=[head_hook(spec.policy, cfg, seed)],
                                             arc_learning_rate=cfg.arch_lr, gradient_clip_val=grad_clip)


def reinforce_enas(spec, space: SearchSpace, cfg: OneShotConfig, grad_clip: float, seed: int):
    """ENAS's update rule on NNI's one-shot machinery (see the module docstring for why not NNI's ENAS)."""
    return _reinforce_enas_class()(space.labels(), cfg, grad_clip, mutation_hooks=[head_hook(spec.policy, cfg, seed)])
