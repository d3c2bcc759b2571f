"""The one strategy registry: name -> kind, NNI class and head policy.

The command line's ``--strategy`` choices, the README's strategy table (a test keeps it in step)
and every refusal read this table. It stays import-light: NNI classes are named, not imported.
"""
from __future__ import annotations

from dataclasses import dataclass

from supernet.core.errors import InputError

MULTI_TRIAL, ONE_SHOT_KIND = "multi-trial", "one-shot"


@dataclass(frozen=True)
class StrategySpec:
    """One search strategy.

    ``kind``: multi-trial strategies propose candidates that are scored with inherited weights after
    our own supernet training; one-shot strategies train the supernet through NNI's one-shot engine
    with ``policy`` deciding what the head computes per step. ``then``: the multi-trial search run
    over the trained supernet afterwards (SPOS: evolution, as Guo et al. 2020), if any."""

    name: str
    kind: str
    nni_class: str
    policy: str | None
    then: str | None
    computes: str
    exports: str

    @property
    def multi_trial(self) -> str | None:
        """The multi-trial search that runs over the trained supernet (None: export what was learned)."""
        return self.then

    @property
    def searches_backbone(self) -> bool:
        """Whether the strategy can search encoder-layer choices (the one-shot policies mix head choices only)."""
        return self.kind == MULTI_TRIAL


STRATEGIES: dict[str, StrategySpec] = {s.name: s for s in (
    StrategySpec("evolution", MULTI_TRIAL, "RegularizedEvolution", None, "evolution",
                 "our supernet training: sampled heads per encoder forward",
                 "top-k of regularized evolution (trials in the web UI)"),
    StrategySpec("random", MULTI_TRIAL, "Random", None, "random",
                 "our supernet training: sampled heads per encoder forward", "top-k of random search"),
    StrategySpec("spos", ONE_SHOT_KIND, "RandomOneShot", "sample", "evolution",
                 "one uniformly sampled head", "then regularized evolution over the trained supernet"),
    StrategySpec("darts", ONE_SHOT_KIND, "DARTS", "softmax", None,
                 "all candidates of every label, mixed by softmax(alpha)", "argmax of alpha"),
    StrategySpec("gumbel_darts", ONE_SHOT_KIND, "GumbelDARTS", "gumbel", None,
                 "the same mixture with Gumbel-softmax weights, temperature annealed per step",
                 "argmax of alpha"),
    StrategySpec("proxyless", ONE_SHOT_KIND, "Proxyless", "binary_gate", None,
                 "one path sampled from softmax(alpha); alpha learns by ProxylessNAS's binary-gate gradient",
                 "argmax of alpha"),
    StrategySpec("enas", ONE_SHOT_KIND, "RandomOneShot (REINFORCE subclass)", "sample", None,
                 "one head sampled by a REINFORCE controller", "the controller's argmax"),
)}
NAMES = tuple(STRATEGIES)
ONE_SHOT = tuple(n for n, s in STRATEGIES.items() if s.kind == ONE_SHOT_KIND)


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise InputError(f"--strategy must be one of {list(STRATEGIES)}, got {name!r}")
    return STRATEGIES[name]


def markdown_table() -> str:
    """The README's strategy table."""
    rows = ["| `--strategy` | NNI strategy | what the head computes per step | what is exported |", "|---|---|---|---|"]
    rows += [f"| `{s.name}` | `{s.nni_class}` | {s.computes} | {s.exports} |" for s in STRATEGIES.values()]
    return "\n".join(rows)
