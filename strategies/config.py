"""Typed configs of the strategies that the CLI builds (light: no NNI or Lightning import)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OneShotConfig:
    """Knobs of the architecture side of one-shot search (validated; messages name the CLI flag)."""

    # Adam moves alpha by about arch_lr per step. DARTS' 3e-4 suits ~20k search steps on CIFAR; a
    # GLUE fine-tune is ~100-2000 steps, where 3e-4 left alpha within 0.01 of its init (measured
    # on MRPC: the export was a coin flip). 1e-2 lets the distribution decide within the budget.
    arch_lr: float = 1e-2
    arch_fraction: float = 0.2       # training rows held out for architecture steps (DARTS uses 0.5)
    gumbel_temperature: tuple[float, float] = (1.0, 0.33)  # GumbelDARTS: linear anneal init -> min
    enas_entropy: float = 1e-4       # ENAS entropy bonus weight
    enas_baseline_decay: float = 0.95

    def __post_init__(self):
        if not self.arch_lr > 0:
            raise ValueError(f"--arch-lr must be > 0, got {self.arch_lr}")
        if not 0.0 < self.arch_fraction < 1.0:
            raise ValueError(f"--arch-fraction must be in (0, 1), got {self.arch_fraction}")
        init, low = self.gumbel_temperature
        if not init >= low > 0:
            raise ValueError(f"gumbel temperature must satisfy init >= min > 0, got {self.gumbel_temperature}")
        if not 0.0 <= self.enas_baseline_decay < 1.0:
            raise ValueError(f"ENAS baseline decay must be in [0, 1), got {self.enas_baseline_decay}")
