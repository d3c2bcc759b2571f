"""Typed configs of the search stage (light: no NNI or Lightning import). Each field is also its flag."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from supernet.core.config import Config, arg
from supernet.core.errors import InputError
from supernet.core.webui import LOOPBACK, check_host, check_port_range, host_arg, port_arg
from supernet.scoring.cost import PENALTIES, Objective

from .registry import NAMES, StrategySpec, get_strategy

# web-UI trials at once: each is a ~0.1 s process asking this one for its scores (strategies.trial_entry);
# 96 trials of the README's search took 100 s at 1, 28 s at 4, 17 s at 8, 13 s at 16 (2-core CPU)
DEFAULT_CONCURRENCY = 8
PICKS = ("safe", "best")  # --pick: see strategies.pick
RERANK_ON = ("auto", "supernet", "pretrained")  # --rerank-on: what the safe pick trains the heads on
# settings a resumed search may change: they decide how it is shown, not what it finds
DISPLAY_FIELDS = ("webui", "port", "host", "linger")


@dataclass(frozen=True)
class SearchConfig(Config):
    """Strategy, multi-trial budget, export and display (validated; messages name the CLI flag)."""

    strategy: str = arg("evolution", "evolution / random: our SPOS supernet training, then NNI regularized evolution "
                                     "/ random search over it (trials in the web UI); spos: NNI RandomOneShot "
                                     "training, then evolution; darts, gumbel_darts, proxyless: NNI's differentiable "
                                     "one-shot strategies, exporting the argmax architecture; enas: REINFORCE "
                                     "controller on NNI's one-shot engine (see README)", choices=NAMES)
    trials: int = arg(64, "candidates to evaluate")
    population: int = arg(16, "evolution population size")
    sample_size: int = arg(4, "evolution tournament size")
    concurrency: int | None = arg(None, "trials at once in the web UI (default: %d, and at most --population for "
                                        "evolution)" % DEFAULT_CONCURRENCY)
    top_k: int = arg(3, "architectures to export")
    penalty: str = arg("none", "maximise the metric minus --penalty-weight x the candidate's parameters (or "
                               "lookup-table latency; backbone spaces) relative to the full encoder with a linear "
                               "head", choices=PENALTIES)
    penalty_weight: float = arg(0.0, "metric points traded for the reference model's whole cost (e.g. 0.05)")
    calib_samples: int = arg(512, "training rows for batch-norm recalibration of each candidate")
    random_baseline: int | None = arg(None, "random subnets scored from the same supernet, for comparison "
                                            "(default: --trials, so best-of-random has the search's budget)")
    port: int = port_arg()
    host: str = host_arg()
    webui: bool = arg(True, "run the strategy in-process (no NNI manager, no web UI): for CI and headless use",
                      flag="--no-webui")
    linger: float = arg(0.0, "keep the web UI up this long after the last trial", flag="--webui-linger",
                        metavar="SECONDS")
    training_service_config: str | None = arg(None, "run the trials on NNI's remote / Kubernetes / ... training "
                                                    "service described in FILE (YAML: trainingService + optional "
                                                    "nniManagerIp, NNI's keys; see README 'Scaling out')",
                                              metavar="FILE")

    @property
    def spec(self) -> StrategySpec:
        return get_strategy(self.strategy)

    @property
    def objective(self) -> Objective:
        return Objective(self.penalty, self.penalty_weight)

    @property
    def multi_trial(self) -> str | None:
        """The multi-trial search run over the trained supernet (None: one-shot export)."""
        return self.spec.search_name

    def __post_init__(self):
        self.spec  # validates --strategy
        start = self.spec.search.random_start if self.spec.search else None
        if self.concurrency is None:  # frozen dataclass
            object.__setattr__(self, "concurrency", min(DEFAULT_CONCURRENCY, getattr(self, start) if start else
                                                        DEFAULT_CONCURRENCY))
        if self.trials < 1 or self.top_k < 1 or self.concurrency < 1:
            raise InputError("--trials, --top-k and --concurrency must be >= 1")
        if start and self.concurrency > getattr(self, start):
            # NNI's evolution draws a parent from the finished population: with every member still running
            # it has none and crashes (max() of an empty sequence, seen at --concurrency 32, --population 16)
            raise InputError(f"--concurrency {self.concurrency} > --{start} {getattr(self, start)}: evolution needs a "
                             f"finished member to mutate; use at most {getattr(self, start)}")
        if start and self.trials <= getattr(self, start):
            warnings.warn(f"--trials {self.trials} <= --{start} {getattr(self, start)}: {self.spec.search.name} draws "
                          f"its first {start} at random, so every trial is random; lower --{start} or raise --trials",
                          UserWarning, stacklevel=3)
        if not 1 <= self.sample_size <= self.population:
            raise InputError(f"--sample-size must be in [1, --population={self.population}], got {self.sample_size}")
        self.objective  # validates --penalty / --penalty-weight
        if self.calib_samples < 2:
            raise InputError(f"--calib-samples must be >= 2, got {self.calib_samples}")
        if self.random_baseline is None:
            object.__setattr__(self, "random_baseline", self.trials)  # frozen dataclass
        if self.random_baseline < 1:
            raise InputError(f"--random-baseline must be >= 1, got {self.random_baseline}")
        check_port_range(self.port)
        check_host(self.host)
        if self.training_service_config:
            if not self.webui:
                raise InputError("--training-service-config runs trials through NNI's manager; drop --no-webui")
            from .cluster import check_training_service
            check_training_service(self.training_service_config)  # before any training
            if self.host in LOOPBACK:
                raise InputError("--training-service-config runs trials on other machines, which must reach the "
                                 "NNI manager: give --host 0.0.0.0")


@dataclass(frozen=True)
class PickConfig(Config):
    """Which head a search returns (``strategies.pick``), for the search and for compare's searches."""

    pick: str = arg("safe", "which head the search returns: safe: its top --rerank-k heads and the linear heads "
                            "(incumbents) trained stand-alone on the selection rows, and a searched head only if it "
                            "beats the best incumbent by more than noise (paired bootstrap), else that incumbent; "
                            "best: the supernet's top-1 by inherited score", choices=PICKS)
    rerank_k: int = arg(8, "--pick safe: the supernet's top heads trained stand-alone (with successive halving)")
    folds: int = arg(5, "--pick safe on a selection split under 200 rows: K-fold cross-validation over the "
                        "training rows instead")
    rerank_on: str = arg("auto", "--pick safe under full fine-tuning: supernet: train the re-ranked heads and the "
                                 "incumbents on the supernet's fine-tuned encoder, frozen (its outputs cached once: "
                                 "seconds), scored on the selection split, which that encoder never trained on; "
                                 "pretrained: fine-tune each from the pretrained encoder (one fine-tune per head, "
                                 "per fold below 200 selection rows); auto: supernet in a head space, pretrained in "
                                 "a backbone space (each candidate has its own encoder there). A frozen encoder "
                                 "makes the two the same", choices=RERANK_ON)

    def __post_init__(self):
        if self.pick not in PICKS:
            raise InputError(f"--pick must be one of {list(PICKS)}, got {self.pick!r}")
        if self.rerank_on not in RERANK_ON:
            raise InputError(f"--rerank-on must be one of {list(RERANK_ON)}, got {self.rerank_on!r}")
        if self.rerank_k < 1 or self.folds < 2:
            raise InputError(f"--rerank-k must be >= 1 and --folds >= 2, got {self.rerank_k}, {self.folds}")


@dataclass(frozen=True)
class OneShotConfig(Config):
    """Knobs of the architecture side of one-shot search (validated; messages name the CLI flag)."""

    # Adam moves alpha by about arch_lr per step. DARTS' 3e-4 suits ~20k search steps on CIFAR; a
    # GLUE fine-tune is ~100-2000 steps, where 3e-4 left alpha within 0.01 of its init (measured
    # on MRPC: the export was a coin flip). 1e-2 lets the distribution decide within the budget.
    arch_lr: float = arg(1e-2, "Adam learning rate of the architecture parameters (alpha / ENAS controller)")
    arch_fraction: float = arg(0.2, "share of the training rows held out for architecture steps")
    gumbel_temperature: tuple[float, float] = arg((1.0, 0.33), "GumbelDARTS: temperature annealed linearly per "
                                                               "step from the first value to the second")
    enas_entropy: float = arg(1e-4, "ENAS entropy bonus weight", cli=False)
    enas_baseline_decay: float = arg(0.95, "ENAS moving-average baseline decay", cli=False)

    def __post_init__(self):
        if not self.arch_lr > 0:
            raise InputError(f"--arch-lr must be > 0, got {self.arch_lr}")
        if not 0.0 < self.arch_fraction < 1.0:
            raise InputError(f"--arch-fraction must be in (0, 1), got {self.arch_fraction}")
        if len(self.gumbel_temperature) != 2:
            raise InputError(f"--gumbel-temperature takes two values INIT,MIN, got {self.gumbel_temperature}")
        init, low = self.gumbel_temperature
        if not init >= low > 0:
            raise InputError(f"--gumbel-temperature must satisfy init >= min > 0, got {self.gumbel_temperature}")
        if not 0.0 <= self.enas_baseline_decay < 1.0:
            raise InputError(f"ENAS baseline decay must be in [0, 1), got {self.enas_baseline_decay}")
