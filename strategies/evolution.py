"""Multi-trial search over the trained supernet through NNI: regularized evolution or random.

With the web UI, NNI's manager runs every candidate as a trial (visible with its parameters and
metric at http://127.0.0.1:<port>); without it (``--no-webui``), NNI's sequential engine runs the
same strategy in-process. Either way a trial scores a candidate on cached encoder outputs with
weights inherited from the supernet (``supernet.scoring.candidates``); the trial plumbing is ``strategies.trials``.

Resumable after a kill: after every finished trial the strategy's state (population, random state,
dedup set) is saved beside the trials ledger. A resumed search loads that state, answers candidates
already in the ledger from it, and runs only the remaining budget.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from nni.nas.strategy.utils import DeduplicationHelper

from supernet.core.errors import InputError
from supernet.core.files import atomic_torch_save
from supernet.nn.space import get_space
from supernet.scoring.candidates import cached_scorer

from .config import SearchConfig
from .trials import LEDGER, STRATEGY_STATE, read_ledger, run_nni


class _NetworkDedup(DeduplicationHelper):
    """Deduplicates on the network a sample builds, not on its label dict. Most labels of a deep
    space are unread by a given head (layers deeper than its depth, token labels its block kind
    ignores), so NNI's dedup on the dict lets evolution spend most mutations on a changed unread
    label: the same network scored again. Here such a mutant is a duplicate, and NNI retries."""

    def __init__(self, canonical: Callable[[Mapping[str, Any]], dict]):
        super().__init__(raise_on_dup=True)
        self._canonical = canonical

    def dedup(self, sample: Any) -> bool:
        return super().dedup(self._canonical(sample))

    def remove(self, sample: Any) -> None:
        super().remove(self._canonical(sample))


class _Resumable:
    """Saves the strategy's state after every finished trial, and starts from a saved one.

    The callback is registered after the strategy's own, so the saved population already holds the
    trial that just ended; in the sequential engine the random state is then exactly the one the
    next candidate is drawn from, so a resumed in-process search proposes what the killed one would have.
    """

    def __init__(self, *args, state_file: Path, resume_from: dict | None = None,
                 canonical: Callable[[Mapping[str, Any]], dict] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if canonical is not None and self._dedup_helper is not None:
            self._dedup_helper = _NetworkDedup(canonical)
        self._state_file = state_file
        self._resume_from = resume_from
        self.trials_done = resume_from["trials_done"] if resume_from else 0

    def _initialize(self, model_space, engine):
        from nni.nas.execution import ModelEventType
        model_space = super()._initialize(model_space, engine)
        if self._resume_from:
            self.load_state_dict(self._resume_from["strategy"])
        engine.register_model_event_callback(ModelEventType.TrainingEnd, self._save_state)
        return model_space

    def wait_for_resource(self) -> bool:
        """NNI's own polls for a free worker every 1 s: with one trial at a time that left up to a
        second idle between web-UI trials whose scoring takes milliseconds. Same logic, 50 ms poll."""
        while not self.engine.idle_worker_available():
            if not self.engine.budget_available():
                return False
            time.sleep(0.05)
        return self.engine.budget_available()

    def _save_state(self, event) -> None:
        self.trials_done += 1
        atomic_torch_save({"strategy": self.state_dict(), "trials_done": self.trials_done}, self._state_file)

    def _cleanup(self) -> None:
        from nni.nas.execution import ModelEventType
        self.engine.unregister_model_event_callback(ModelEventType.TrainingEnd, self._save_state)
        super()._cleanup()


# The registry's multi-trial factories: (cfg, seed, state_file, resume_from, space) -> the NNI strategy,
# resumable, deduplicating on the networks of ``space`` when given.

def regularized_evolution(cfg: SearchConfig, seed: int, state_file: Path, resume_from: dict | None = None,
                          space: str | None = None):
    from nni.nas import strategy
    cls = type("ResumableEvolution", (_Resumable, strategy.RegularizedEvolution), {})
    return cls(population_size=cfg.population, sample_size=cfg.sample_size, mutation_prob=0.1, dedup=True,
               seed=seed, state_file=state_file, resume_from=resume_from, canonical=_canonical(space))


def random_search(cfg: SearchConfig, seed: int, state_file: Path, resume_from: dict | None = None,
                  space: str | None = None):
    from nni.nas import strategy
    cls = type("ResumableRandom", (_Resumable, strategy.Random), {})
    return cls(dedup=True, seed=seed, state_file=state_file, resume_from=resume_from, canonical=_canonical(space))


def _canonical(space: str | None):
    return get_space(space).canonical if space else None


def load_strategy_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise InputError(f"search state {path} is corrupt ({type(e).__name__}); delete it to restart "
                         "the search from the trials ledger") from None


def run_experiment(space: str, state_path: Path, cfg: SearchConfig, work_dir: Path, seed: int) -> list[dict[str, Any]]:
    """Run the search (or the rest of it) at ``seed``; return every trial as {'choices', 'score', 'metrics'} in
    finish order."""
    work_dir.mkdir(parents=True, exist_ok=True)
    ledger = work_dir.parent / LEDGER
    state_file = work_dir.parent / STRATEGY_STATE
    resume_from = load_strategy_state(state_file)
    remaining = cfg.trials - (resume_from["trials_done"] if resume_from else 0)
    if remaining > 0:
        strategy = cfg.spec.build_search(cfg, seed, state_file, resume_from, space)
        run_nni(space, state_path, cfg, work_dir, ledger, strategy, remaining)
    scorer = cached_scorer(str(state_path.resolve()))
    return [{"choices": r["choices"], "score": scorer.objective_value(r["metrics"]), "metrics": r["metrics"]}
            for r in read_ledger(ledger)][:cfg.trials]


