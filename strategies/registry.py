"""The one strategy registry: name -> how its supernet trains, what it learns, and the factories that build it.

The command line's ``--strategy`` choices, the README's strategy table (a test keeps it in step), every
refusal and every builder read this table; no strategy name is compared anywhere else (a test greps).
It stays import-light: factories are named as ``"module:function"`` and imported when built, so that
``--help`` and the trial processes never import NNI's one-shot engine or Lightning.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from supernet.core.errors import InputError

WEIGHTS, ARCHITECTURE = "weights", "architecture"


@dataclass(frozen=True)
class Factory:
    """A builder named, not imported: ``target`` is ``"module:function"``, imported when called."""

    name: str
    target: str
    random_start: str | None = None  # the setting that many first trials are drawn at random (evolution's population)

    def __call__(self, *args: Any) -> Any:
        module, _, function = self.target.partition(":")
        build: Callable[..., Any] = getattr(importlib.import_module(module), function)
        return build(*args)


EVOLUTION = Factory("evolution", "strategies.evolution:regularized_evolution", random_start="population")
RANDOM = Factory("random", "strategies.evolution:random_search")
DIFFERENTIABLE = Factory("differentiable", "strategies.oneshot:differentiable")


@dataclass(frozen=True)
class StrategySpec:
    """One search strategy.

    ``oneshot``: the factory of the NNI one-shot strategy that trains the supernet, with ``policy``
    deciding what the head computes per step (None: our own supernet training, several sampled heads
    per encoder forward). ``search``: the factory of the multi-trial search run over the trained
    supernet (None: the strategy learned the architecture itself and exports it)."""

    name: str
    nni_class: str
    oneshot: Factory | None
    policy: str | None
    search: Factory | None
    computes: str
    exports: str

    @property
    def learns(self) -> str:
        """What training learns: the weights only (a multi-trial search then picks heads on them), or
        the architecture too (exported as it stands at the end)."""
        return WEIGHTS if self.search else ARCHITECTURE

    @property
    def search_name(self) -> str | None:
        """The multi-trial search's name as records show it ('evolution', 'random'); None: an export."""
        return self.search.name if self.search else None

    @property
    def searches_backbone(self) -> bool:
        """Whether the strategy can search encoder-layer choices (the one-shot policies mix head choices only)."""
        return self.oneshot is None

    def build_oneshot(self, space, cfg, grad_clip: float, seed: int):
        """The NNI one-shot strategy training this supernet, our head hook first in its hook list."""
        assert self.oneshot is not None, f"{self.name} trains without NNI's one-shot engine"
        return self.oneshot(self, space, cfg, grad_clip, seed)

    def build_search(self, cfg, seed: int, state_file, resume_from: dict | None = None, space: str | None = None):
        """The multi-trial NNI strategy searching the trained supernet (resumable, deduplicating)."""
        assert self.search is not None, f"{self.name} exports what it learned; it has no search stage"
        return self.search(cfg, seed, state_file, resume_from, space)


_OURS = ("our supernet training: 4 sampled heads per encoder forward (sharing one token block and, fine-tuned, "
         "one view of a pair: joint or apart)")
STRATEGIES: dict[str, StrategySpec] = {s.name: s for s in (
    StrategySpec("evolution", "RegularizedEvolution", None, None, EVOLUTION, _OURS,
                 "top-k of regularized evolution (trials in the web UI)"),
    StrategySpec("random", "Random", None, None, RANDOM, _OURS, "top-k of random search"),
    StrategySpec("spos", "RandomOneShot", Factory("spos", "strategies.oneshot:random_one_shot"), "sample", EVOLUTION,
                 "one uniformly sampled head", "then regularized evolution over the trained supernet"),
    StrategySpec("darts", "DARTS", DIFFERENTIABLE, "softmax", None,
                 "all candidates of every label, mixed by softmax(alpha)", "argmax of alpha"),
    StrategySpec("gumbel_darts", "GumbelDARTS", DIFFERENTIABLE, "gumbel", None,
                 "the same mixture with Gumbel-softmax weights, temperature annealed per step",
                 "argmax of alpha"),
    StrategySpec("proxyless", "Proxyless", DIFFERENTIABLE, "binary_gate", None,
                 "one path sampled from softmax(alpha); alpha learns by ProxylessNAS's binary-gate gradient",
                 "argmax of alpha"),
    StrategySpec("enas", "RandomOneShot (REINFORCE subclass)", Factory("enas", "strategies.oneshot:reinforce_enas"),
                 "sample", None,
                 "one head sampled by a REINFORCE controller", "the controller's argmax"),
)}
NAMES = tuple(STRATEGIES)
ONE_SHOT = tuple(n for n, s in STRATEGIES.items() if s.oneshot is not None)


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise InputError(f"--strategy must be one of {list(STRATEGIES)}, got {name!r}")
    return STRATEGIES[name]


def markdown_table() -> str:
    """The README's strategy table."""
    rows = ["| `--strategy` | NNI strategy | what the head computes per step | what is exported |", "|---|---|---|---|"]
    rows += [f"| `{s.name}` | `{s.nni_class}` | {s.computes} | {s.exports} |" for s in STRATEGIES.values()]
    return "\n".join(rows)
