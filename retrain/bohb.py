"""The multi-trial baseline: Bayesian optimisation + Hyperband over the same head space, where every
trial is a real fine-tune (no weight sharing), as in Kenneweg, Schröder & Hammer (2024).

NNI 3.0's BOHB advisor is not used: its tuner process crashes and ``run()`` then hangs (NNI issue
#5263, seen here). Optuna's TPE sampler (the model-based half of BOHB) with its
``HyperbandPruner`` is the well-kept equivalent and runs in-process. Rungs are dev evaluations
every ``rung_epochs`` of fine-tuning. The study lives in ``study.db`` (SQLite), so an interrupted
search continues where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from supernet.arch import Architecture
from supernet.config import Config, arg
from supernet.data import Encoded
from supernet.errors import InputError
from supernet.files import atomic_write_json
from supernet.loop import steps_per_epoch
from supernet.space import LAYER_KINDS, SearchSpace, layer_label
from supernet.tasks import TaskSpec
from supernet.tokens import TOKEN_KINDS

from .run import fine_tune

STUDY = "study.db"


@dataclass(frozen=True)
class BOHBConfig(Config):
    """Budget of the BO-Hyperband baseline (validated; messages name the CLI flag)."""

    trials: int = arg(16, "BO-Hyperband trials (real fine-tunes)", flag="--bohb-trials")
    rung_epochs: float = arg(1.0, "fine-tuning between two Hyperband rungs")
    reduction_factor: int = arg(3, "Hyperband's reduction factor")
    seed: int = arg(0, "seed of the BO-HB sampler and of its trials' fine-tunes", cli=False)

    def __post_init__(self):
        if self.trials < 1:
            raise InputError(f"--bohb-trials must be >= 1, got {self.trials}")
        if not self.rung_epochs > 0:
            raise InputError(f"--rung-epochs must be > 0, got {self.rung_epochs}")
        if self.reduction_factor < 2:
            raise InputError(f"--reduction-factor must be >= 2, got {self.reduction_factor}")


def suggest_choices(trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's head: labels of layers deeper than the sampled depth are not asked (conditional
    space, as TPE models it) and take the canonical value."""
    choices = {"pool": trial.suggest_categorical("pool", list(space.pool)),
               "depth": trial.suggest_categorical("depth", list(space.depth))}
    if space.has_tokens and choices["pool"] != "pooler":  # the pooler reads the encoder's [CLS]: no block
        choices["tok_kind"] = trial.suggest_categorical("tok_kind", list(space.tok_kind))
        for label in TOKEN_KINDS[choices["tok_kind"]]:
            choices[label] = trial.suggest_categorical(label, list(getattr(space, label)))
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


def run_bohb(space: SearchSpace, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int, cfg: BOHBConfig,
             fine_tune_cfg, make_encoder: Callable[[], torch.nn.Module], meta: dict[str, str],
             out_dir: Path, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or continue) the study; write ``trials.json`` and ``best_arch.json``; return the summary.
    ``settings``: what else the trials depend on (data, encoder), kept in the study so that a resume
    with other settings is refused."""
    import optuna

    from supernet.model import build_model

    out_dir.mkdir(parents=True, exist_ok=True)
    per_epoch = steps_per_epoch(len(train), fine_tune_cfg.batch_size)
    total = fine_tune_cfg.max_steps or math.ceil(fine_tune_cfg.epochs * per_epoch)
    rung_steps = max(1, min(total, round(cfg.rung_epochs * per_epoch)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="bohb", storage=f"sqlite:///{(out_dir / STUDY).resolve()}", load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=math.ceil(total / rung_steps),
                                              reduction_factor=cfg.reduction_factor))
    fine_tune_settings = {k: v for k, v in fine_tune_cfg.to_dict().items() if k not in ("seeds", "device",
                                                                                        "checkpoint_every")}
    check_study_settings(study, {"space": space.name, **{f"bohb.{k}": v for k, v in cfg.to_dict().items()
                                                          if k != "trials"},
                                 **{f"fine_tune.{k}": v for k, v in fine_tune_settings.items()},
                                 **{f"{k}": v for k, v in (settings or {}).items()}}, out_dir)

    def objective(trial) -> float:
        arch = Architecture(space.name, suggest_choices(trial, space), **meta)
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

        result = fine_tune(model, spec, train, dev, pad_id, fine_tune_cfg, cfg.seed, None,
                           f"BO-HB trial {trial.number}", eval_every=rung_steps, on_eval=on_eval)
        return result["metrics"][spec.main_metric]

    finished = [t for t in study.trials if t.state.is_finished()]
    remaining = cfg.trials - len(finished)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    return _summarize(study, space, spec, meta, cfg, total, per_epoch, out_dir)


def _summarize(study, space, spec, meta, cfg, total, per_epoch, out_dir: Path) -> dict[str, Any]:
    trials = []
    for t in study.trials:
        if "steps" not in t.user_attrs:
            continue
        # a trial a kill interrupted stays RUNNING in the study: what it spent still counts as cost
        trials.append({"number": t.number, "state": t.state.name.lower(),
                       "choices": complete_choices(space, dict(t.params)), "metrics": t.user_attrs["scores"],
                       "epochs": t.user_attrs["steps"] / per_epoch, "seconds": t.user_attrs["seconds"],
                       "cpu_seconds": t.user_attrs["cpu_seconds"]})
    complete = [t for t in trials if t["state"] == "complete"]
    interrupted = [t for t in trials if t["state"] == "running"]
    if not complete:
        raise RuntimeError(f"no BO-HB trial finished its budget; see {out_dir}")
    best = max(complete, key=lambda t: t["metrics"][spec.main_metric])
    arch = Architecture(space.name, best["choices"], metrics=best["metrics"], **meta)
    arch.save(out_dir / "best_arch.json")
    summary = {"config": cfg.to_dict(), "trials": trials, "full_budget_epochs": total / per_epoch,
               "completed": len(complete), "pruned": sum(t["state"] == "pruned" for t in trials),
               "interrupted": len(interrupted),
               "epochs_spent": sum(t["epochs"] for t in trials),
               "seconds": sum(t["seconds"] for t in trials), "cpu_seconds": sum(t["cpu_seconds"] for t in trials),
               "best": {"choices": dict(arch.choices), "metrics": dict(arch.metrics)}}
    atomic_write_json(out_dir / "trials.json", summary)
    return summary

