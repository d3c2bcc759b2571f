"""Multi-trial search over the trained supernet through NNI: regularized evolution or random.

With the web UI, NNI's manager runs every candidate as a trial (visible with its parameters and
metric at http://127.0.0.1:<port>); without it (``--no-webui``), NNI's sequential engine runs the
same strategy in-process. Either way a trial scores a candidate on cached encoder outputs with
weights inherited from the supernet (``strategies.scoring``).
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nni
from torch import nn
from nni.nas.nn.pytorch import ModelSpace

from supernet.space import get_space

from . import MULTI_TRIAL, STRATEGIES
from .scoring import cached_scorer


class Candidate(nn.Module):
    """What a trial receives: the choices of one head (weights come from the search state)."""

    def __init__(self, choices: dict[str, Any]):
        super().__init__()
        self.choices = choices


class HeadChoices(ModelSpace):
    """The head labels of a space, for multi-trial strategies. Its frozen form is a ``Candidate``:
    trials do not rebuild the encoder, they score on its cached outputs."""

    def __init__(self, space: str):
        super().__init__()
        for label, values in get_space(space).labels().items():
            self.add_mutable(nni.choice(label, list(values)))
        self.space_name = space

    @classmethod
    def create_fixed_module(cls, sample: dict, space: str) -> Candidate:
        labels = get_space(space).labels()
        return Candidate(get_space(space).validate({k: sample[k] for k in labels}))

    def freeze(self, sample: dict) -> Candidate:
        return self.create_fixed_module(sample, self.space_name)


def evaluate_candidate(model: Candidate, state_path: str) -> None:
    """The trial: score and report (NNI's 'default' is the task's main metric)."""
    scorer = cached_scorer(state_path)
    scores = scorer.score(model.choices)
    nni.report_final_result({"default": scores[scorer.main_metric], **scores})


@dataclass(frozen=True)
class SearchConfig:
    """Strategy, multi-trial budget and display (validated; messages name the CLI flag)."""

    strategy: str = "evolution"
    trials: int = 64
    population: int = 16
    sample_size: int = 4
    concurrency: int = 1
    top_k: int = 3
    seed: int = 0
    port: int = 8080
    webui: bool = True
    linger: float = 0.0  # seconds the web UI stays up after the last trial

    @property
    def multi_trial(self) -> str | None:
        """The multi-trial search run over the trained supernet: SPOS searches it by evolution
        (Guo et al. 2020); DARTS-family and ENAS export what they learned instead (None)."""
        return "evolution" if self.strategy == "spos" else self.strategy if self.strategy in MULTI_TRIAL else None

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.trials < 1 or self.top_k < 1 or self.concurrency < 1:
            raise ValueError("--trials, --top-k and --concurrency must be >= 1")
        if not 1 <= self.sample_size <= self.population:
            raise ValueError(f"--sample-size must be in [1, --population={self.population}], got {self.sample_size}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"--port must be in [1, 65535], got {self.port}")


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise ValueError(f"port {port} is already in use (another NNI experiment or web server?); "
                             f"pick another with --port") from None


def make_strategy(cfg: SearchConfig):
    from nni.nas import strategy
    if cfg.multi_trial == "evolution":
        return strategy.RegularizedEvolution(population_size=cfg.population, sample_size=cfg.sample_size,
                                             mutation_prob=0.1, dedup=True, seed=cfg.seed)
    if cfg.multi_trial == "random":
        return strategy.Random(dedup=True, seed=cfg.seed)
    raise ValueError(f"--strategy {cfg.strategy} has no multi-trial search stage")


def run_experiment(space: str, state_path: Path, cfg: SearchConfig, work_dir: Path) -> list[dict[str, Any]]:
    """Run the search; return every trial as {'choices', 'metrics'} in submission order."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig

    if cfg.webui:
        check_port_free(cfg.port)
        if cfg.concurrency > 1:
            # Seen here and reported as NNI issue #5726 (open): with concurrent local trials, a trial can
            # receive another trial's parameters, and its metric is then credited to the wrong candidate.
            logging.getLogger(__name__).warning(
                "--concurrency %d: NNI 3.0 can swap parameters between concurrent trials (NNI issue #5726), "
                "so the strategy may learn from mismatched scores; exports are re-scored", cfg.concurrency)
    evaluator = FunctionalEvaluator(evaluate_candidate, state_path=str(state_path.resolve()))
    exp_config = NasExperimentConfig("ts" if cfg.webui else "sequential", "simplified", "local" if cfg.webui else None)
    exp_config.max_trial_number = cfg.trials
    exp_config.trial_concurrency = cfg.concurrency if cfg.webui else 1
    exp_config.experiment_working_directory = str(work_dir.resolve())
    exp_config.experiment_name = f"{space}-{cfg.strategy}"
    if not cfg.webui:
        exp_config.execution_engine.max_model_count = cfg.trials
    exp = NasExperiment(HeadChoices(space), evaluator, make_strategy(cfg), exp_config)
    logging.getLogger("nni").setLevel(logging.WARNING)
    if cfg.webui:
        print(f"NNI web UI: http://127.0.0.1:{cfg.port}  (experiment {exp.id}; reopen later with "
              f"`python -m supernet.view {work_dir.parent}`)", flush=True)
    try:
        exp.run(port=cfg.port)
        # list_models(sort=False) keeps submission order; NNI keeps only the 'default' metric
        trials = [{"choices": dict(m.sample), "score": float(m.metric)}
                  for m in exp.strategy.list_models(sort=False) if m.metric is not None]
        if cfg.webui and cfg.linger > 0:
            print(f"search done; the web UI stays up for {cfg.linger:g} s", flush=True)
            time.sleep(cfg.linger)
        return trials
    finally:
        exp.stop()
