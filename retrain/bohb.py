"""The multi-trial baseline: Bayesian optimisation + Hyperband over the same head space, where every
trial is a real fine-tune (no weight sharing), as in Kenneweg, Schröder & Hammer (2024).

The paper ran AutoGluon's ``HyperbandScheduler(searcher='bayesopt', brackets=1, grace_period=1,
reduction_factor=3)``: model-based BO proposing every trial after one random one, and a single
Hyperband bracket, i.e. successive halving from 1 epoch up to the full budget. Here:

- **BO**: Optuna's TPE, multivariate and grouped (so it models the conditional space: token-block
  labels only where a block is used, layer labels only up to the depth), with ``--bohb-startup``
  random trials first (default 5; Optuna's own default is 10, which at our budgets left most trials
  random). Every trial records ``proposed_by``: ``random`` (start-up) or ``model``.
- **Hyperband**: one bracket of successive halving (Optuna's ``SuccessiveHalvingPruner``): rungs at
  1, 3, 9, ... units of ``--rung-epochs``, keeping the best 1/3 at each. Not Optuna's
  ``HyperbandPruner``: with several brackets it makes TPE see only the trials of its own bracket, so
  each bracket spent its own start-up and, replayed here, 0 of 6 and 2 of 12 trials of earlier runs
  were proposed by the model. One bracket is also what the paper ran.
- **No head is trained twice.** TPE does not filter repeated proposals (Syne Tune's searchers do, by
  default), and in the conditional space repeats are common: a depth-0 head asks no layer label, so
  TPE proposing "pooler + linear" again is the same head at the same seed. A repeat is answered from
  the earlier trial at no cost (Optuna's FAQ recipe, extended to pruned trials), is recorded with
  ``duplicate_of``, and does not count toward ``--bohb-trials``: that many *distinct* heads are
  trained, unless the space runs out first (at most ``MAX_PROPOSALS`` proposals per trial asked).
- Trials fine-tune on the training rows minus the validation split and are selected on the
  validation split; the official dev set is never read. The study lives in ``study.db`` (SQLite), so
  an interrupted search continues where it stopped.

NNI 3.0's BOHB advisor is not used: its tuner process crashes and ``run()`` then hangs (NNI issue
#5263, seen here). Syne Tune's MOBSTER (GP-based BO + asynchronous Hyperband, by AutoGluon's team)
is the closest living relative of the paper's searcher, but adds a dependency for the same algorithm
family that Optuna, installed already, provides.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from supernet.core.config import Config, arg
from supernet.core.errors import InputError
from supernet.core.files import atomic_write_json
from supernet.data.splits import TaskData
from supernet.nn.arch import Architecture
from supernet.nn.space import LAYER_KINDS, SearchSpace, layer_label
from supernet.nn.tokens import TOKEN_KINDS
from supernet.train.finetune import fine_tune
from supernet.train.frozen import frozen_caches
from supernet.train.loop import steps_per_epoch

from .run import RetrainConfig

STUDY = "study.db"
LR_RANGE = (1e-5, 1e-4)  # the paper's learning-rate range (log-uniform), with --bohb-search-lr
MAX_PROPOSALS = 10  # proposals per distinct head asked for, before a search gives up on an exhausted space


@dataclass(frozen=True)
class BOHBConfig(Config):
    """Budget of the BO-Hyperband baseline (validated; messages name the CLI flag)."""

    trials: int = arg(50, "BO-Hyperband trials (real fine-tunes; the paper ran 50)", flag="--bohb-trials")
    startup: int = arg(5, "random trials before the model proposes (TPE's start-up)", flag="--bohb-startup")
    rung_epochs: float = arg(1.0, "fine-tuning per Hyperband resource unit (the first rung)")
    reduction_factor: int = arg(3, "Hyperband's reduction factor")
    search_lr: bool = arg(False, "also run the BO-HB variant that searches the encoder's learning rate too, "
                                 "log-uniform 1e-5..1e-4 as the paper did (an extra arm; the weight-sharing arm keeps "
                                 "the fixed budget)", flag="--bohb-search-lr")
    seed: int = arg(0, "seed of the BO-HB sampler and of its trials' fine-tunes", cli=False)

    def __post_init__(self):
        if self.trials < 1:
            raise InputError(f"--bohb-trials must be >= 1, got {self.trials}")
        if self.startup < 1:
            raise InputError(f"--bohb-startup must be >= 1, got {self.startup}")
        if not self.rung_epochs > 0:
            raise InputError(f"--rung-epochs must be > 0, got {self.rung_epochs}")
        if self.reduction_factor < 2:
            raise InputError(f"--reduction-factor must be >= 2, got {self.reduction_factor}")


def suggest_choices(trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's head: labels of layers deeper than the sampled depth are not asked (conditional
    space, as TPE models it) and take the canonical value."""
    choices = {"pool": trial.suggest_categorical("pool", list(space.pool)),
               "depth": trial.suggest_categorical("depth", list(space.depth))}
    if space.has_pairs:
        choices["pair"] = trial.suggest_categorical("pair", list(space.pair))
    if space.has_layers and choices["pool"] != "pooler":  # the pooler has no per-layer form (space.reads)
        choices["layers"] = trial.suggest_categorical("layers", list(space.layers))
    reads = space.reads({**choices, "tok_kind": "conv"})  # would a block be read, if one were asked?
    if space.has_tokens and reads["tokens"]:
        choices["tok_kind"] = trial.suggest_categorical("tok_kind", list(space.tok_kind))
        for label in TOKEN_KINDS[choices["tok_kind"]]:
            choices[label] = trial.suggest_categorical(label, list(getattr(space, label)))
    if not reads["mlp"]:  # a cosine head: no MLP labels to ask
        return complete_choices(space, choices)
    for i in range(choices["depth"]):
        for kind in LAYER_KINDS:
            label = layer_label(kind, i)
            choices[label] = trial.suggest_categorical(label, list(getattr(space, kind)))
    return complete_choices(space, choices)


def complete_choices(space: SearchSpace, asked: dict[str, Any]) -> dict[str, Any]:
    """The architecture of a trial's parameters: labels it was not asked take their canonical value."""
    return space.canonical({**{k: v[0] for k, v in space.labels().items()}, **asked})


def check_study_settings(study, settings: dict[str, Any], out_dir: Path) -> None:
    """A study is continued only with the settings it was started with (more trials may be asked for)."""
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        return
    new = json.loads(json.dumps(settings))  # as stored: tuples are lists
    diffs = [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(stored) | set(new))
             if stored.get(k) != new.get(k)]
    if diffs:
        raise InputError(f"{out_dir / STUDY} holds a BO-HB study run with other settings ({'; '.join(diffs)}); "
                         "pick another --output-dir, or --overwrite it")


def make_study(cfg: BOHBConfig, out_dir: Path):
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # TPE's ``group`` option is marked experimental (since Optuna 2.8): what it does is documented and used here
    warnings.filterwarnings("ignore", message=".*``group`` is an experimental feature.*")
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.startup, multivariate=True, group=True)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=cfg.reduction_factor)
    return optuna.create_study(study_name="bohb", storage=f"sqlite:///{(out_dir / STUDY).resolve()}",
                               load_if_exists=True, direction="maximize", sampler=sampler, pruner=pruner)


def _finished_trials(study) -> list:
    from optuna.trial import TrialState
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _finished(study) -> int:
    return len(_finished_trials(study))


def _distinct(study) -> int:
    """Finished trials that trained their head (repeats of an earlier head excluded)."""
    return sum("duplicate_of" not in t.user_attrs for t in _finished_trials(study))


def trial_choices(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """The head a trial's parameters describe (its searched learning rate, if any, left out)."""
    return complete_choices(space, {k: v for k, v in params.items() if k != "lr_encoder"})


def head_key(space: SearchSpace, params: dict[str, Any]) -> str:
    """What a trial trains, from its parameters: the completed head (and the learning rate, if searched).
    Two trials with the same key train the same model from the same seed."""
    return json.dumps({"choices": trial_choices(space, params), "lr_encoder": params.get("lr_encoder")},
                      sort_keys=True)


def _earlier_trial(study, space: SearchSpace, trial):
    """The finished trial that already trained this trial's head, if any."""
    key = head_key(space, trial.params)
    for t in _finished_trials(study):
        if "duplicate_of" not in t.user_attrs and "steps" in t.user_attrs and head_key(space, t.params) == key:
            return t
    return None


def _repeat(trial, earlier) -> float:
    """Answer a repeated head with the earlier trial's outcome. Its learning curve is copied for TPE
    (which ranks pruned trials by it), but the pruner is not asked: a repeat is no new evidence for
    successive halving's rungs."""
    import optuna
    from optuna.trial import TrialState
    for step, value in sorted(earlier.intermediate_values.items()):
        trial.report(value, step)
    for key in ("steps", "scores"):
        trial.set_user_attr(key, earlier.user_attrs[key])
    trial.set_user_attr("seconds", 0.0)
    trial.set_user_attr("cpu_seconds", 0.0)
    trial.set_user_attr("duplicate_of", earlier.number)
    if earlier.state == TrialState.PRUNED:
        raise optuna.TrialPruned()
    return earlier.value


def _objective(study, space, task: TaskData, cfg: BOHBConfig, ft: RetrainConfig, make_encoder, meta, rung_steps,
               caches):
    import optuna

    from supernet.nn.model import build_model
    spec = task.spec

    def objective(trial) -> float:
        # TPE models the study once ``startup`` trials have finished (complete or pruned)
        trial.set_user_attr("proposed_by", "random" if _finished(study) < cfg.startup else "model")
        arch = Architecture(space.name, suggest_choices(trial, space), **meta)
        trial_ft = replace(ft, lr_encoder=trial.suggest_float("lr_encoder", *LR_RANGE, log=True)) if cfg.search_lr \
            else ft
        earlier = _earlier_trial(study, space, trial)
        if earlier is not None:
            return _repeat(trial, earlier)
        torch.manual_seed(cfg.seed)
        model = build_model(arch, make_encoder(), spec.num_labels)
        t0, cpu0 = time.time(), time.process_time()

        def on_eval(step: int, scores: dict[str, float]) -> None:
            trial.set_user_attr("steps", step)
            trial.set_user_attr("scores", scores)
            trial.set_user_attr("seconds", time.time() - t0)
            trial.set_user_attr("cpu_seconds", time.process_time() - cpu0)
            trial.report(scores[spec.main_metric], math.ceil(step / rung_steps))
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = fine_tune(model, spec, task.fit, task.val, task.pad_id, trial_ft, cfg.seed, None,
                           f"BO-HB trial {trial.number}", eval_every=rung_steps, on_eval=on_eval, caches=caches)
        return result["metrics"][spec.main_metric]
    return objective


def run_bohb(space: SearchSpace, task: TaskData, cfg: BOHBConfig, ft: RetrainConfig,
             make_encoder: Callable[[], torch.nn.Module], meta: dict[str, Any], out_dir: Path,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or continue) the study; write ``trials.json`` and ``best_arch.json``; return the summary.
    ``settings``: what else the trials depend on (data, encoder), kept in the study so that a resume
    with other settings is refused."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_epoch = steps_per_epoch(len(task.fit), ft.batch_size)
    total = ft.total_steps(len(task.fit))
    rung_steps = max(1, min(total, round(cfg.rung_epochs * per_epoch)))
    study = make_study(cfg, out_dir)
    ft_settings = {k: v for k, v in ft.to_dict().items() if k not in ("seeds", "device", "checkpoint_every")}
    check_study_settings(study, {"space": space.name, **{f"bohb.{k}": v for k, v in cfg.to_dict().items()
                                                          if k != "trials"},
                                 **{f"fine_tune.{k}": v for k, v in ft_settings.items()}, **(settings or {})}, out_dir)
    remaining = cfg.trials - _distinct(study)
    if remaining > 0:
        # frozen encoder: its outputs on the trials' rows once, for every trial
        t0, cpu0 = time.time(), time.process_time()
        caches = frozen_caches(make_encoder(), (task.fit, task.val), task.pad_id, space.needs(), ft.device) \
            if ft.freeze_encoder else None
        # the cache is part of the search's cost, as the weight-sharing search counts its own
        for key, spent in (("cache_seconds", time.time() - t0), ("cache_cpu_seconds", time.process_time() - cpu0)):
            study.set_user_attr(key, study.user_attrs.get(key, 0.0) + spent)
        objective = _objective(study, space, task, cfg, ft, make_encoder, meta, rung_steps, caches)
        # repeats do not count: ask again until ``trials`` distinct heads are trained or the space runs out
        while remaining > 0 and len(study.trials) < MAX_PROPOSALS * cfg.trials:
            study.optimize(objective, n_trials=min(remaining, MAX_PROPOSALS * cfg.trials - len(study.trials)))
            remaining = cfg.trials - _distinct(study)
        if remaining > 0:
            print(f"BO-HB: {cfg.trials - remaining} distinct heads of the {cfg.trials} asked (--bohb-trials) after "
                  f"{len(study.trials)} proposals; the rest repeated heads already trained (a small space?)",
                  file=sys.stderr)
    return _summarize(study, space, task.spec, meta, cfg, total, per_epoch, out_dir)


def _summarize(study, space, spec, meta, cfg, total, per_epoch, out_dir: Path) -> dict[str, Any]:
    trials = []
    for t in study.trials:
        if "steps" not in t.user_attrs:
            continue
        # a trial a kill interrupted stays RUNNING in the study: what it spent still counts as cost
        repeat = t.user_attrs.get("duplicate_of")
        trials.append({"number": t.number, "state": t.state.name.lower(), "proposed_by": t.user_attrs["proposed_by"],
                       "choices": trial_choices(space, t.params),
                       "lr_encoder": t.params.get("lr_encoder"), "metrics": t.user_attrs["scores"],
                       "duplicate_of": repeat, "epochs": 0.0 if repeat is not None else t.user_attrs["steps"] / per_epoch,
                       "seconds": t.user_attrs["seconds"], "cpu_seconds": t.user_attrs["cpu_seconds"]})
    distinct = [t for t in trials if t["duplicate_of"] is None]  # the heads it trained: what the counts count
    complete = [t for t in distinct if t["state"] == "complete"]
    if not complete:
        raise RuntimeError(f"no BO-HB trial finished its budget; see {out_dir}")
    best = max(complete, key=lambda t: t["metrics"][spec.main_metric])
    arch = Architecture(space.name, best["choices"], metrics=best["metrics"], **meta)
    arch.save(out_dir / "best_arch.json")
    upto = trials[:trials.index(best) + 1]  # what the search had spent when it found its best
    cache = (study.user_attrs.get("cache_seconds", 0.0), study.user_attrs.get("cache_cpu_seconds", 0.0))
    summary = {"config": cfg.to_dict(), "trials": trials, "full_budget_epochs": total / per_epoch,
               "distinct_heads": len(distinct), "repeats": len(trials) - len(distinct),
               "completed": len(complete), "pruned": sum(t["state"] == "pruned" for t in distinct),
               "interrupted": sum(t["state"] == "running" for t in distinct),
               "proposed_by_model": sum(t["proposed_by"] == "model" for t in distinct),
               "epochs_spent": sum(t["epochs"] for t in trials),
               "seconds": cache[0] + sum(t["seconds"] for t in trials),
               "cpu_seconds": cache[1] + sum(t["cpu_seconds"] for t in trials),
               "seconds_to_best": cache[0] + sum(t["seconds"] for t in upto),
               "cpu_seconds_to_best": cache[1] + sum(t["cpu_seconds"] for t in upto),
               "best": {"choices": dict(arch.choices), "metrics": dict(arch.metrics), "lr_encoder": best["lr_encoder"],
                        "trial": best["number"]}}
    atomic_write_json(out_dir / "trials.json", summary)
    return summary
