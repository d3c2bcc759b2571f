"""The search pipeline: train the supernet -> cache encoder outputs -> run the strategy -> export -> report.

``SearchJob`` is every setting of a search (stored as the run directory's ``run_config.json``);
``run_search(job, ...)`` runs it, or the rest of an interrupted one, and returns a ``SearchResult``.
``python -m supernet.search`` and ``retrain.compare`` both call it.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supernet.core import distributed
from supernet.core.errors import InputError, MissingInput
from supernet.core.files import atomic_write_json, claim_output_dir, read_json
from supernet.data.sources import DataConfig
from supernet.data.splits import TaskData, load_task
from supernet.nn.arch import Architecture
from supernet.nn.encoder import EncoderConfig, load_tokenizer
from supernet.nn.space import SearchSpace, bind_space, resolve_space
from supernet.nn.supernet import HeadSupernet
from supernet.scoring.candidates import SEARCH_STATE, CandidateScorer, write_search_state
from supernet.train.frozen import EncoderCache, apply_regime, supernet_cache
from supernet.train.supernet import RUN_CONFIG, TrainConfig, train_supernet

from . import report
from .config import DISPLAY_FIELDS, OneShotConfig, PickConfig, SearchConfig
from .pick import SUPERNET_ENCODER, PickPlan, safe_pick


@dataclass(frozen=True)
class SearchJob:
    """Every setting of a search, one typed config per part; ``run_config.json`` of its run directory."""

    encoder: EncoderConfig = EncoderConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    oneshot: OneShotConfig = OneShotConfig()
    pick: PickConfig = PickConfig()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_dict() for f in dataclasses.fields(self)}

    @classmethod
    def load(cls, run_dir: Path) -> "SearchJob":
        path = Path(run_dir) / RUN_CONFIG
        if not path.is_file():
            raise MissingInput(f"--resume {run_dir}: no {RUN_CONFIG} there (not a search run directory)")
        stored = read_json(path, "a search run's settings")
        parts = {}
        for f in dataclasses.fields(cls):
            if f.name not in stored:
                raise InputError(f"{path} has no {f.name!r} settings: it was written by another version of this "
                                 "library or by hand; start a new search instead of --resume")
            parts[f.name] = _config_class(f.name).from_dict(_legacy(f.name, stored), f"{path} {f.name!r}")
        return cls(**parts)

    def resumed_with(self, given: dict[str, Any]) -> "SearchJob":
        """This stored job, resumed by a command that gave the flags ``given`` (field -> value): a
        resumed search may change how it is shown (``DISPLAY_FIELDS``); any other setting that
        differs from the stored one is refused, naming each."""
        parts, diffs = {}, []
        for f in dataclasses.fields(self):
            stored = getattr(self, f.name)
            mine = {k: v for k, v in given.items() if k in {g.name for g in dataclasses.fields(stored)}}
            new = replace(stored, **mine)
            diffs += stored.differences(new, DISPLAY_FIELDS if f.name == "search" else ())
            parts[f.name] = new
        if diffs:
            raise InputError(f"--resume continues a run with its stored settings, and this command changes "
                             f"{'; '.join(dict.fromkeys(diffs))}; drop those flags, or start a new run")
        return SearchJob(**parts)


def _legacy(part: str, stored: dict[str, Any]) -> dict[str, Any]:
    """A stored part, with what searches from before a setting existed did in its place."""
    d = stored[part]
    if part == "pick" and "rerank_on" not in d and not stored.get("train", {}).get("freeze_encoder"):
        # before --rerank-on, the safe pick fine-tuned every head from the pretrained encoder
        return {**d, "rerank_on": "pretrained"}
    return d


def _config_class(part: str) -> type:
    return {"encoder": EncoderConfig, "data": DataConfig, "train": TrainConfig, "search": SearchConfig,
            "oneshot": OneShotConfig, "pick": PickConfig}[part]


@dataclass(frozen=True)
class SearchResult:
    """What a search produced: the run directory, its exported architectures (best first) and summary."""

    run_dir: Path
    top: tuple[Architecture, ...]
    summary: dict[str, Any]

    @property
    def best(self) -> Architecture:
        return self.top[0]

    def cost_to_head(self) -> dict[str, float]:
        """Wall and CPU seconds of the stages that chose the head (setup, supernet training, features,
        search), and apart (``report_*``) those of the report stage after it: scoring random subnets
        for the best-of-random baseline, measuring latency, plots (see ``_stage_costs``)."""
        out = {}
        for key in ("seconds", "cpu_seconds"):
            stages = self.summary[key]
            report = stages.get("report", 0.0)  # summaries written before the stages were split have none
            out[key], out[f"report_{key}"] = stages["total"] - report, report
        return out

    @classmethod
    def load(cls, run_dir: Path) -> "SearchResult":
        summary = read_json(Path(run_dir) / report.SUMMARY, "a finished search's summary")
        top = tuple(Architecture.load(Path(run_dir) / f"arch_top{i}.json") for i in range(1, len(summary["top_k"]) + 1))
        return cls(Path(run_dir), top, summary)


def default_run_dir(job: SearchJob) -> Path:
    return Path(f"logs/{job.data.task}-{job.search.strategy}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_strategy_space(search: SearchConfig, space: SearchSpace) -> None:
    """Refuse a strategy that cannot search this space, before anything runs."""
    if space.has_backbone and not search.spec.searches_backbone:
        raise InputError(f"--strategy {search.strategy} learns head choices only; search backbone space "
                         f"{space.name!r} with --strategy evolution or random")
    if search.penalty == "latency" and not space.has_backbone:
        raise InputError(f"--penalty latency needs a backbone space (in {space.name!r} every candidate runs the same "
                         "encoder); use --penalty params, or --space <head>+ffn / +conv")


@dataclass
class _Prepared:
    """What the search needs in memory: the tokenised task and the untrained supernet."""

    task: TaskData
    supernet: HeadSupernet
    fit_cache: EncoderCache | None = None  # with a frozen encoder: its outputs on the fit rows (supernet training's)
    val_cache: EncoderCache | None = None  # ... and on the selection rows (the search state's)


def _prepare(job: SearchJob, resume: bool) -> tuple[_Prepared, SearchJob]:
    """Data, tokenizer, encoder and supernet, checked before the run directory is claimed: a typo
    leaves nothing behind. The job comes back with its space resolved for the task (``--space auto``),
    as the run directory stores it."""
    search, train_cfg = job.search, job.train
    if distributed.world_size() > 1 and job.pick.pick == "safe":
        raise InputError("--pick safe re-ranks heads stand-alone in one process; under torchrun give --pick best "
                         "(then python -m retrain the heads to compare), or run the search in one process")
    if distributed.world_size() > 1 and not search.spec.searches_backbone:
        raise InputError(f"--strategy {search.strategy} trains through NNI's one-shot engine in one process; "
                         "under torchrun use --strategy evolution or random")
    if distributed.is_main() and search.webui and search.multi_trial:
        from supernet.core.webui import check_port_free
        check_port_free(search.port, search.host)  # now, not after an hour of supernet training
    job.encoder.check_inputs(job.data.max_length)
    task = load_task(job.data, load_tokenizer(job.encoder.model))
    encoder = job.encoder.load()
    job = replace(job, train=replace(train_cfg, space=resolve_space(train_cfg.space, len(task.spec.text_columns))))
    space = bind_space(job.train.space, encoder.config.num_hidden_layers)
    check_strategy_space(search, space)
    if job.pick.pick == "safe":
        _rerank_on_supernet(job, space)  # refused here, before the run directory is claimed and trained
    torch.manual_seed(train_cfg.seed)  # the heads' (and conv blocks') initial weights
    supernet = HeadSupernet(encoder, space, task.spec.num_labels)  # a non-BERT layout fails here, before the claim
    apply_regime(supernet.encoder, train_cfg.freeze_encoder)
    return _Prepared(task, supernet), job


def _train(job: SearchJob, p: _Prepared, run_dir: Path, resume: bool) -> dict[str, Any]:
    t = p.task
    if job.search.spec.oneshot is not None:  # NNI's one-shot engine trains it, under the strategy's policy
        from .oneshot_train import train_oneshot
        return train_oneshot(job.search.strategy, p.supernet, t.spec, t.fit, t.val, t.pad_id, job.train,
                             job.oneshot, run_dir, resume)
    # the search never reads the report split (dev): it trains on ``fit`` and selects on ``val``
    return train_supernet(p.supernet, t.spec, t.fit, t.val, t.pad_id, job.train, run_dir, resume=resume)


def run_search(job: SearchJob, run_dir: Path | None = None, resume: bool = False, overwrite: bool = False
               ) -> SearchResult | None:
    """Run ``job`` into ``run_dir`` (default: a new folder under logs/), or continue it with ``resume``.
    Under torchrun every rank trains; rank 0 alone searches and writes, and the others return None."""
    t0, cpu0 = time.time(), time.process_time()
    job = replace(job, train=replace(job.train, device=distributed.init_from_env(job.train.device)))
    main = distributed.is_main()
    if resume and main and job.search.webui and job.search.multi_trial:
        from .trials import stop_stale_manager
        stop_stale_manager(run_dir / "nni", job.search.port)  # a killed run's NNI manager outlives it
    run_dir = run_dir or default_run_dir(job)
    if not resume and main:
        claim_output_dir(run_dir, overwrite, "a run", f"--resume {run_dir} continues it", check_only=True)
    p, job = _prepare(job, resume)
    if not resume:
        if main:
            claim_output_dir(run_dir, overwrite, "a run", f"--resume {run_dir} continues it")
            atomic_write_json(run_dir / RUN_CONFIG, job.to_dict())
        run_dir = distributed.broadcast(run_dir)
    if main:
        print(f"run directory: {run_dir}" + (f" ({distributed.world_size()} processes)"
                                             if distributed.world_size() > 1 else ""), flush=True)
    prepared = (time.time(), time.process_time())
    stats = _train(job, p, run_dir, resume)
    p.fit_cache = stats.pop("cache", None)  # a frozen encoder's outputs on the fit rows, for the pick
    if not main:
        return None
    clock = {"start": (t0, cpu0), "prepared": prepared, "trained": (time.time(), time.process_time())}
    return _search_and_report(job, p, stats, run_dir, clock)


def _search_and_report(job: SearchJob, p: _Prepared, stats: dict, run_dir: Path, clock: dict) -> SearchResult:
    search, spec, space, t = job.search, p.task.spec, p.supernet.space, p.task
    state_path = run_dir / SEARCH_STATE
    calib = t.fit.head(search.calib_samples)
    if p.fit_cache is not None:  # a frozen encoder: the calibration rows are the fit cache's first rows
        p.val_cache = supernet_cache(p.supernet, t.val, t.pad_id, job.train.device)
        caches = (p.val_cache, p.fit_cache.subset(np.arange(len(calib))))
    else:
        caches = None
    write_search_state(state_path, p.supernet, spec.metrics, t.val, calib, t.pad_id, job.train.device,
                       search.objective, caches)
    clock["features"] = (time.time(), time.process_time())
    if search.multi_trial:
        from .evolution import run_experiment
        trials = run_experiment(space.name, state_path, search, run_dir / "nni", job.train.seed)
        if not trials:
            raise RuntimeError(f"no trial reported a metric; see the trial logs under {run_dir / 'nni'}")
        candidates, top_k = trials, search.top_k
    else:  # DARTS-family / ENAS: the architecture was learned during training; export its argmax
        trials = [{"step": t["step"], "choices": t["choices"], "score": t["metrics"][spec.main_metric]}
                  for t in stats["trajectory"]]
        candidates, top_k = [{"choices": stats["exported"], "score": 0.0}], 1
    clock["searched"] = (time.time(), time.process_time())
    scorer = CandidateScorer.from_file(state_path)
    linear = space.reference()  # the full encoder with a linear head, scored with the supernet's weights
    reference = {**scorer.score(linear), "choices": linear}
    if search.multi_trial and (space.has_backbone or search.objective.active):
        # under a cost objective the full pretrained model is the incumbent to beat, and uniform
        # backbone sampling almost never proposes it (1 in 8^L): it competes for the export too
        candidates = [*candidates, {"choices": linear, "score": scorer.objective_value(reference)}]
    meta = {"encoder": job.encoder.name, "task": spec.name, "labels": spec.label_names}
    ranked = report.rank_top(candidates, scorer, max(top_k, job.pick.rerank_k), meta)
    top, decision = _pick(job, p, ranked, scorer, meta, top_k)
    clock["picked"] = (time.time(), time.process_time())
    report.write_top(top, run_dir)
    summary = {**_summary(job, p, stats, trials, top, ranked[0], scorer, reference, run_dir, clock),
               "pick": decision, "search_best": dict(ranked[0].metrics), "search_best_choices": dict(ranked[0].choices)}
    atomic_write_json(run_dir / report.SUMMARY, summary)
    random, best = summary["random_subnets"], ranked[0].metrics[spec.main_metric]
    what = f"after {len(trials)} trials" if search.multi_trial else f"({search.strategy} export)"
    print(f"exported {', '.join(f'arch_top{i}.json' for i in range(1, len(top) + 1))} to {run_dir}\n"
          f"{job.pick.pick} pick: {decision['line']}\n"
          f"best {spec.main_metric} {best:.4f} {what}; random subnets "
          f"(n={random['n']}): best {random['best']:.4f}, mean {random['mean']:.4f}"
          + (f"; majority class {summary['majority_class'][spec.main_metric]:.4f}" if summary["majority_class"] else ""))
    return SearchResult(run_dir, tuple(top), summary)


def _pick(job: SearchJob, p: _Prepared, ranked: list[Architecture], scorer, meta: dict, top_k: int
          ) -> tuple[list[Architecture], dict[str, Any]]:
    """The exported heads, best first: ``--pick best`` keeps the inherited ranking; ``--pick safe`` puts
    first what ``strategies.pick`` returns (a re-ranked searched head, or an incumbent linear head)."""
    cfg = job.pick
    if cfg.pick == "best":
        line = f"the supernet's top-1 by inherited score ({ranked[0].metrics[p.task.spec.main_metric]:.4f})"
        return ranked[:top_k], {"rule": "best", "returned": "searched #1", "line": line}
    t0, cpu0 = time.time(), time.process_time()
    plan = (_supernet_plan(job, p) if _rerank_on_supernet(job, p.supernet.space) else
            PickPlan(p.task, job.train, job.encoder, job.train.seed, cfg.folds, fit_cache=p.fit_cache,
                     val_cache=p.val_cache))
    built = (time.time() - t0, time.process_time() - cpu0)  # the supernet encoder's pass over fit and selection rows
    decision, chosen = safe_pick(plan, p.supernet.space, ranked, cfg.rerank_k, meta)
    decision.update(seconds=decision["seconds"] + built[0], cpu_seconds=decision["cpu_seconds"] + built[1])
    chosen = chosen.with_metrics(**scorer.score(chosen.choices))  # its inherited scores, as the others'
    rest = [a for a in ranked if a.key() != chosen.key()]
    return [chosen, *rest][:top_k], decision


def _rerank_on_supernet(job: SearchJob, space) -> bool:
    """Whether the safe pick trains its heads on the supernet's fine-tuned encoder (``--rerank-on``).
    A frozen encoder is the pretrained one: the ordinary frozen path, caches already at hand."""
    on = job.pick.rerank_on
    if job.train.freeze_encoder or on == "pretrained":
        return False
    if space.has_backbone:
        if on == "supernet":
            raise InputError(f"--rerank-on supernet trains every head on one encoder, and in the backbone space "
                             f"{space.name!r} each candidate has its own; use --rerank-on pretrained (or auto)")
        return False
    return True


def _supernet_plan(job: SearchJob, p: _Prepared) -> PickPlan:
    """Re-ranking on the supernet's fine-tuned encoder, frozen: its outputs on the fit and selection rows
    are computed once, and every candidate head (incumbents fitted to convergence, searched heads for the
    budget) trains on them in seconds instead of one fine-tune each. The selection rows are the only ones
    that encoder never trained on, so they are the scored rows whatever their number (no k-fold)."""
    t, device = p.task, job.train.device
    fit, val = (supernet_cache(p.supernet, split, t.pad_id, device) for split in (t.fit, t.val))
    encoder = copy.deepcopy(p.supernet.encoder)  # the head-only training must not touch the supernet's
    cfg = replace(job.train, freeze_encoder=True, head_warmup_epochs=0.0)
    return PickPlan(t, cfg, job.encoder, job.train.seed, job.pick.folds, fit_cache=fit, val_cache=val,
                    _pretrained=encoder, on=SUPERNET_ENCODER)


def _summary(job, p, stats, trials, top, search_best, scorer, reference, run_dir, clock) -> dict[str, Any]:
    search, spec, space, supernet = job.search, p.task.spec, p.supernet.space, p.supernet
    dev, pad_id = p.task.val, p.task.pad_id  # latency measured on the selection split's rows
    random_scores = report.random_subnets(scorer, search.random_baseline, job.train.seed)
    report.plot_trajectory(trials, random_scores, spec.main_metric, run_dir / "trajectory.png",
                           "trial" if search.multi_trial else "training step (architecture exported at that step)")
    front = report.write_pareto(trials, scorer, reference, run_dir) if search.multi_trial else []
    costs = {"best": report.measured_costs(supernet, dict(top[0].choices), dev, pad_id, job.train.device),
             "reference": report.measured_costs(supernet, reference["choices"], dev, pad_id, job.train.device)}
    best = top[0].metrics[spec.main_metric]
    summary = {
        "strategy": search.strategy, "search": search.multi_trial or "one-shot export",
        "task": spec.name, "space": space.name, "space_size": space.size(),
        "encoder": job.encoder.name, "num_hidden_layers": job.encoder.num_hidden_layers,
        "metric": spec.main_metric, "trials": len(trials) if search.multi_trial else 0,
        "selection_split": _selection_split(job.data, p.task), "selection_seed": job.train.seed,
        "webui": search.webui and bool(search.multi_trial),
        "best": dict(top[0].metrics), "best_choices": dict(top[0].choices),
        "top_k": [dict(a.metrics) for a in top],
        # random sampling is the search's baseline, so it is set against the search's best by inherited
        # score, not against the pick (under --pick safe an incumbent, whose inherited score means little)
        "random_subnets": report.random_summary(random_scores, search_best.metrics[spec.main_metric]),
        # a search that learned nothing exports a constant predictor; these make that visible
        "majority_class": scorer.majority_scores(),
        "best_predicted_class_share": scorer.predicted_class_share(top[0].choices),
        "objective": dataclasses.asdict(search.objective),
        "reference_full_encoder_linear_head": {k: v for k, v in reference.items() if k != "choices"},
        "measured": costs, "pareto_front_size": len(front),
        "best_is_reference": Architecture(space.name, reference["choices"]).key() == top[0].key(),
        "supernet_steps": stats["steps"], "resumed_from_step": stats["resumed_from"],
        **_stage_costs(stats, clock),
        "candidates_per_minute": (60 * len(trials) / max(clock["searched"][0] - clock["features"][0], 1e-9)
                                  if search.multi_trial else None),
        "parameters": {"supernet": sum(p.numel() for p in supernet.parameters()),
                       "supernet_head": supernet.head_parameters(), "best_subnet": costs["best"]["params"]},
    }
    if not search.multi_trial:
        summary["architecture_probabilities"] = stats["probabilities"]
        summary["export_trajectory"] = [{"step": t["step"], "score": t["score"]} for t in trials]
    return summary


def _selection_split(data: DataConfig, task: TaskData) -> str:
    """Where the search's scores come from (never the report split)."""
    if data.val_file:
        return f"--val-file {data.val_file} ({len(task.val)} rows)"
    return (f"validation: {len(task.val)} of {len(task.train)} training rows ({data.val_fraction:g}, stratified, "
            f"fixed seed); supernet trained on the other {len(task.fit)}")


def _stage_costs(stats: dict, clock: dict) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds per stage. Supernet training counts every process of the run (its
    checkpoint keeps what earlier, killed processes spent); the other stages are this process's."""
    now = (time.time(), time.process_time())
    out = {}
    for i, key in enumerate(("seconds", "cpu_seconds")):
        stage = {"setup": clock["prepared"][i] - clock["start"][i],
                 "supernet_training": stats[key],
                 "features": clock["features"][i] - clock["trained"][i],
                 "search": clock["searched"][i] - clock["features"][i],
                 # re-ranking and the incumbent rule (--pick safe): part of choosing the head, so charged
                 "pick": clock["picked"][i] - clock["searched"][i],
                 "report": now[i] - clock["picked"][i]}
        stage["total"] = sum(stage.values())
        out[key] = stage
    return out
