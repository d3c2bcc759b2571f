"""Train the supernet once, then search it: ``python -m supernet.search --strategy evolution``.

Writes into the run directory: TensorBoard events, ``checkpoint.pt`` (resumable), the NNI
experiment, ``arch_top<k>.json`` (the architecture record), ``search_summary.json`` and
``trajectory.png`` (score per trial with best-so-far, against random subnets of the same supernet),
``pareto.json`` / ``pareto.png`` (the trials' front of dev metric vs parameters, and vs latency in
a backbone space).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .arch import Architecture, atomic_write_text
from .cli import add_data_arguments, add_fine_tune_arguments, claim_output_dir, data_config_from_args, run_cli
from .data import TRAIN, DataConfig, encode, load_splits
from .encoder import encoder_id, load_encoder, load_tokenizer
from .train import TrainConfig, train_supernet

from strategies import ONE_SHOT, STRATEGIES
from strategies.config import OneShotConfig

RUN_CONFIG = "run_config.json"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, saved as ``run_config.json`` so ``--resume`` repeats it exactly."""

    model: str | None = None
    num_hidden_layers: int | None = None
    space: str = "paper"
    calib_samples: int = 512
    random_baseline: int = 50

    def __post_init__(self):
        from .space import check_space_name
        check_space_name(self.space)  # a backbone space is bound to the encoder's depth once it is loaded
        if self.num_hidden_layers is not None and self.num_hidden_layers < 1:
            raise ValueError(f"--num-hidden-layers must be >= 1, got {self.num_hidden_layers}")
        if self.calib_samples < 2:
            raise ValueError(f"--calib-samples must be >= 2, got {self.calib_samples}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m supernet.search", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Fine-tune a weight-sharing supernet of classification heads on a BERT encoder once, "
                    "then search it (every candidate inherits the supernet's weights).")
    g = p.add_argument_group("search")
    g.add_argument("--strategy", choices=STRATEGIES, default="evolution",
                   help="evolution / random: our SPOS supernet training, then NNI regularized evolution / random "
                        "search over it (trials in the web UI); spos: NNI RandomOneShot training, then evolution; "
                        "darts, gumbel_darts, proxyless: NNI's differentiable one-shot strategies, exporting the "
                        "argmax architecture; enas: REINFORCE controller on NNI's one-shot engine (see README)")
    g.add_argument("--space", default="paper",
                   help="search space: a head preset (paper, small, tiny) or a backbone space adding per encoder "
                        "layer FFN keep/skip (+ffn) and attention vs conv3/7/15 (+conv), e.g. head+ffn, small+ffn+conv "
                        "(see python -m supernet.space)")
    g.add_argument("--trials", type=int, default=64, help="candidates to evaluate")
    g.add_argument("--population", type=int, default=16, help="evolution population size")
    g.add_argument("--sample-size", type=int, default=4, help="evolution tournament size")
    g.add_argument("--concurrency", type=int, default=1,
                   help="trials at once in the web UI (>1 is faster but hits NNI issue #5726)")
    g.add_argument("--top-k", type=int, default=3, help="architectures to export")
    g.add_argument("--penalty", choices=("none", "params", "latency"), default="none",
                   help="maximise the metric minus --penalty-weight x the candidate's parameters (or lookup-table "
                        "latency; backbone spaces) relative to the full encoder with a linear head")
    g.add_argument("--penalty-weight", type=float, default=0.0,
                   help="metric points traded for the reference model's whole cost (e.g. 0.05)")
    g.add_argument("--random-baseline", type=int, default=50,
                   help="random subnets scored from the same supernet, for comparison")
    g.add_argument("--port", type=int, default=8080, help="NNI web UI port")
    g.add_argument("--webui-linger", type=float, default=0.0, metavar="SECONDS",
                   help="keep the web UI up this long after the last trial")
    g.add_argument("--training-service-config", default=None, metavar="FILE",
                   help="run the trials on NNI's remote / Kubernetes / ... training service described in FILE "
                        "(YAML: trainingService + optional nniManagerIp, NNI's keys; see README 'Scaling out')")
    g.add_argument("--no-webui", dest="webui", action="store_false",
                   help="run the strategy in-process (no NNI manager, no web UI): for CI and headless use")
    a = p.add_argument_group("one-shot architecture learning (darts, gumbel_darts, proxyless, enas)")
    a.add_argument("--arch-lr", type=float, default=1e-2,
                   help="Adam learning rate of the architecture parameters (alpha / ENAS controller)")
    a.add_argument("--arch-fraction", type=float, default=0.2,
                   help="share of the training rows held out for architecture steps")
    add_data_arguments(p)
    m = p.add_argument_group("supernet training")
    add_fine_tune_arguments(m, "encoder: local dir or hub id (default: packaged all-MiniLM-L6-v2)", 1.0,
                            "steps between checkpoints")
    m.add_argument("--heads-per-step", type=int, default=4,
                   help="sampled heads trained per encoder forward (evolution and random)")
    m.add_argument("--full-backbone-every", type=int, default=2, metavar="N",
                   help="backbone spaces: every N-th step trains the sampled heads on the full pretrained encoder "
                        "(all attention, all FFNs), as the sandwich rule trains the largest subnet; 0: uniform only")
    m.add_argument("--eval-every", type=int, default=50, help="steps between probe-subnet dev scores")
    m.add_argument("--calib-samples", type=int, default=512, help="training rows for batch-norm recalibration")
    m.add_argument("--seed", type=int, default=0)
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", default=None, help="run directory (default: logs/<task>-<strategy>-<time>)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    o.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run in RUN_DIR with its saved settings")
    return p


def configs_from_args(args: argparse.Namespace):
    from strategies.evolution import SearchConfig
    data = data_config_from_args(args)
    train = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
                        lr_encoder=args.lr_encoder, lr_head=args.lr_head, heads_per_step=args.heads_per_step,
                        full_backbone_every=args.full_backbone_every,
                        seed=args.seed, checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
                        precision=args.precision, device=args.device)
    search = SearchConfig(strategy=args.strategy, trials=args.trials, population=args.population,
                          sample_size=args.sample_size, concurrency=args.concurrency, top_k=args.top_k,
                          seed=args.seed, port=args.port, webui=args.webui,
                          linger=args.webui_linger, training_service_config=args.training_service_config,
                          penalty=args.penalty, penalty_weight=args.penalty_weight)
    run = RunConfig(model=args.model, num_hidden_layers=args.num_hidden_layers, space=args.space,
                    calib_samples=args.calib_samples, random_baseline=args.random_baseline)
    oneshot = OneShotConfig(arch_lr=args.arch_lr, arch_fraction=args.arch_fraction)
    return run, data, train, search, oneshot


def _save_configs(run_dir: Path, run, data, train, search, oneshot) -> None:
    d = {"run": asdict(run), "data": asdict(data), "train": asdict(train), "search": asdict(search),
         "oneshot": asdict(oneshot)}
    d["data"].pop("cache_dir")
    atomic_write_text(run_dir / RUN_CONFIG, json.dumps(d, indent=2) + "\n")


def _load_configs(run_dir: Path, webui: bool, port: int, linger: float):
    from strategies.evolution import SearchConfig
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: no {RUN_CONFIG} there (not a run directory)")
    d = json.loads(path.read_text())
    tup = lambda x: tuple(x) if isinstance(x, list) else x
    search = {**d["search"], "webui": webui, "port": port, "linger": linger}  # display settings may change on resume
    return (RunConfig(**d["run"]), DataConfig(**{k: tup(v) for k, v in d["data"].items()}),
            TrainConfig(**d["train"]), SearchConfig(**search),
            OneShotConfig(**{k: tup(v) for k, v in d.get("oneshot", {}).items()}))


def prepare_run_dir(args, task: str, check_only: bool = False) -> Path:
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"--resume {run_dir}: no such run directory")
        return run_dir
    run_dir = Path(args.output_dir or f"logs/{task}-{args.strategy}-{time.strftime('%Y%m%d-%H%M%S')}")
    return claim_output_dir(run_dir, args.overwrite, "a run", f"--resume {run_dir} continues it",
                            check_only=check_only)


def export_top(trials: list[dict], scorer, k: int, meta: dict, run_dir: Path) -> list[Architecture]:
    """Top-k distinct architectures by score (the objective), re-scored for every metric and cost,
    written as arch_top<i>.json."""
    ranked, seen = [], set()
    for t in sorted(trials, key=lambda t: -t["score"]):
        # canonical: labels of layers deeper than `depth` take their first value, so the file shows the model
        arch = Architecture(scorer.space.name, scorer.space.canonical(t["choices"]), **meta)
        if arch.key() not in seen:
            seen.add(arch.key())
            ranked.append(arch.with_metrics(**scorer.score(arch.choices)))
        if len(ranked) == k:
            break
    ranked.sort(key=lambda a: -scorer.objective_value(a.metrics))  # by the re-score, whatever NNI credited
    for i, arch in enumerate(ranked, 1):
        arch.save(run_dir / f"arch_top{i}.json")
    return ranked


def plot_trajectory(trials: list[dict], random_scores: list[float], metric: str, path: Path,
                    xlabel: str = "trial") -> None:
    """Score per trial (or, for one-shot strategies, of the current export per training step)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scores = [t["score"] for t in trials]
    xs = [t.get("step", i) for i, t in enumerate(trials, 1)]
    best = [max(scores[:i + 1]) for i in range(len(scores))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(xs, scores, s=12, alpha=0.6, label="candidate" if xlabel == "trial" else "exported architecture")
    ax.plot(xs, best, color="C1", lw=2, label="best so far")
    if random_scores:
        ax.axhline(statistics.mean(random_scores), color="grey", ls="--", label="random subnet (mean)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"dev {metric} (inherited weights)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_pareto(trials: list[dict], scorer, reference: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """The trials' Pareto front (dev metric vs parameters) as pareto.json and, with latency, pareto.png."""
    from .cost import pareto_front, plot_pareto
    metric = scorer.main_metric
    points, seen = [], set()
    for t in trials:
        key = Architecture(scorer.space.name, scorer.space.canonical(t["choices"])).key()
        if "params" in t["metrics"] and key not in seen:
            seen.add(key)
            points.append({**t["metrics"], "choices": scorer.space.canonical(t["choices"])})
    if not points:
        return []
    fronts = {cost: pareto_front(points, cost, metric) for cost in ("params", "latency_ms") if cost in points[0]}
    atomic_write_text(run_dir / "pareto.json", json.dumps(
        {"metric": metric, "candidates": len(points), "reference": reference, "fronts": fronts}, indent=2) + "\n")
    plot_pareto(points, metric, run_dir / "pareto.png", reference)
    return fronts["params"]


def measured_costs(supernet, choices: dict, dev, pad_id: int, device: str) -> dict[str, float]:
    """Parameters and measured dev-set latency (ms / example) of the frozen model of ``choices``."""
    from .cost import model_costs
    return model_costs(supernet.freeze(choices).to(device), dev, pad_id, device)


def _train(search_cfg, supernet, spec, train, dev, pad_id, train_cfg, oneshot_cfg, run_dir, resume):
    if search_cfg.strategy in ONE_SHOT:
        from strategies.oneshot_train import train_oneshot
        return train_oneshot(search_cfg.strategy, supernet, spec, train, dev, pad_id, train_cfg, oneshot_cfg,
                             run_dir, resume)
    return train_supernet(supernet, spec, train, dev, pad_id, train_cfg, run_dir, resume=resume)


def _oneshot_trajectory(stats: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """The one-shot export at each probe step, as trials for the trajectory plot."""
    return [{"step": t["step"], "choices": t["choices"], "score": t["metrics"][metric]} for t in stats["trajectory"]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from strategies.scoring import CandidateScorer, write_search_state

    from .model import HeadSupernet
    from .space import bind_space

    if args.resume:
        run_dir = prepare_run_dir(args, "")
        run_cfg, data_cfg, train_cfg, search_cfg, oneshot_cfg = _load_configs(
            run_dir, args.webui, args.port, args.webui_linger)
    else:
        run_cfg, data_cfg, train_cfg, search_cfg, oneshot_cfg = configs_from_args(args)
        if args.output_dir:
            prepare_run_dir(args, data_cfg.task, check_only=True)
    t0 = time.time()
    # under torchrun: join the process group; rank 0 alone claims, searches and writes results
    train_cfg = replace(train_cfg, device=distributed.init_from_env(train_cfg.device))
    main = distributed.is_main()
    if distributed.world_size() > 1 and search_cfg.strategy in ONE_SHOT:
        raise ValueError(f"--strategy {search_cfg.strategy} trains through NNI's one-shot engine in one process; "
                         "under torchrun use --strategy evolution or random")
    if main and search_cfg.webui and search_cfg.multi_trial:
        from strategies.evolution import check_port_free, stop_stale_manager
        if args.resume:  # a killed run's NNI manager outlives it and holds the port
            stop_stale_manager(run_dir / "nni", search_cfg.port)
        check_port_free(search_cfg.port)  # now, not after an hour of supernet training
    # data and encoder are checked before the run directory is claimed: a typo leaves nothing behind
    spec, splits = load_splits(data_cfg)
    dev_split = spec.dev_splits[0] if data_cfg.train_file is None else "validation"
    tokenizer = load_tokenizer(run_cfg.model)
    encoder = load_encoder(run_cfg.model, run_cfg.num_hidden_layers)
    space = bind_space(run_cfg.space, encoder.config.num_hidden_layers)
    _check_strategy_space(search_cfg, space)
    torch.manual_seed(train_cfg.seed)  # the heads' (and conv blocks') initial weights
    supernet = HeadSupernet(encoder, space, spec.num_labels)  # a non-BERT layout fails here, before the claim
    if not args.resume:
        if main:
            run_dir = prepare_run_dir(args, data_cfg.task)
            _save_configs(run_dir, run_cfg, data_cfg, replace(train_cfg, device=args.device), search_cfg,
                          oneshot_cfg)
        run_dir = distributed.broadcast(run_dir if main else None)
    if main:
        print(f"run directory: {run_dir}" + (f" ({distributed.world_size()} processes)"
                                             if distributed.world_size() > 1 else ""), flush=True)
    train = encode(splits[TRAIN], tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    dev = encode(splits[dev_split], tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    pad_id = tokenizer.pad_token_id or 0

    t_train = time.time()
    stats = _train(search_cfg, supernet, spec, train, dev, pad_id, train_cfg, oneshot_cfg, run_dir, bool(args.resume))
    train_seconds = time.time() - t_train
    if not main:
        return stats

    t_feat = time.time()
    calib = encode(splits[TRAIN].head(run_cfg.calib_samples), tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    state_path = run_dir / "search_state.pt"
    write_search_state(state_path, supernet, spec.metrics, dev, calib, pad_id, train_cfg.device,
                       search_cfg.objective)
    feature_seconds = time.time() - t_feat

    t_search = time.time()
    if search_cfg.multi_trial:
        from strategies.evolution import run_experiment
        trials = run_experiment(space.name, state_path, search_cfg, run_dir / "nni")
        if not trials:
            raise RuntimeError(f"no trial reported a metric; see the trial logs under {run_dir / 'nni'}")
        candidates, top_k = trials, search_cfg.top_k
    else:  # DARTS-family / ENAS: the architecture was learned during training; export its argmax
        trials = _oneshot_trajectory(stats, spec.main_metric)
        candidates, top_k = [{"choices": stats["exported"], "score": 0.0}], 1
    search_seconds = time.time() - t_search

    scorer = CandidateScorer.from_file(state_path)
    # the reference: the full encoder with a linear head, scored with the supernet's weights
    linear = space.reference()
    reference = {**scorer.score(linear), "choices": linear}
    if search_cfg.multi_trial and (space.has_backbone or search_cfg.objective.active):
        # under a cost objective the full pretrained model is the incumbent to beat, and uniform
        # backbone sampling almost never proposes it (1 in 8^L): it competes for the export too
        candidates = [*candidates, {"choices": linear, "score": scorer.objective_value(reference)}]
    meta = {"encoder": encoder_id(run_cfg.model), "task": spec.name}
    top = export_top(candidates, scorer, top_k, meta, run_dir)
    rng = random.Random(search_cfg.seed + 1)
    random_scores = [scorer.score(space.sample(rng))[spec.main_metric] for _ in range(run_cfg.random_baseline)]
    plot_trajectory(trials, random_scores, spec.main_metric, run_dir / "trajectory.png",
                    "trial" if search_cfg.multi_trial else "training step (architecture exported at that step)")
    front = write_pareto(trials, scorer, reference, run_dir) if search_cfg.multi_trial else []
    costs = {"best": measured_costs(supernet, dict(top[0].choices), dev, pad_id, train_cfg.device),
             "reference": measured_costs(supernet, linear, dev, pad_id, train_cfg.device)}

    best = top[0].metrics[spec.main_metric]
    summary = {
        "strategy": search_cfg.strategy, "search": search_cfg.multi_trial or "one-shot export",
        "task": spec.name, "space": space.name, "space_size": space.size(),
        "encoder": meta["encoder"], "num_hidden_layers": run_cfg.num_hidden_layers,
        "metric": spec.main_metric, "trials": len(trials) if search_cfg.multi_trial else 0,
        "webui": search_cfg.webui and bool(search_cfg.multi_trial),
        "best": dict(top[0].metrics), "best_choices": dict(top[0].choices),
        "top_k": [dict(a.metrics) for a in top],
        "random_subnets": {"n": len(random_scores), "mean": statistics.mean(random_scores),
                           "std": statistics.pstdev(random_scores), "best": max(random_scores)},
        "best_minus_random_mean": best - statistics.mean(random_scores),
        "objective": asdict(search_cfg.objective),
        "reference_full_encoder_linear_head": {k: v for k, v in reference.items() if k != "choices"},
        "measured": costs, "pareto_front_size": len(front),
        "best_is_reference": Architecture(space.name, linear).key() == top[0].key(),
        "supernet_steps": stats["steps"], "resumed_from_step": stats["resumed_from"],
        "seconds": {"supernet_training": train_seconds, "features": feature_seconds, "search": search_seconds,
                    "total": time.time() - t0},
        "candidates_per_minute": 60 * len(trials) / max(search_seconds, 1e-9) if search_cfg.multi_trial else None,
        "parameters": {"supernet": sum(p.numel() for p in supernet.parameters()),
                       "supernet_head": supernet.head_parameters(),
                       "best_subnet": costs["best"]["params"]},
    }
    if not search_cfg.multi_trial:
        summary["architecture_probabilities"] = stats["probabilities"]
        summary["export_trajectory"] = [{"step": t["step"], "score": t["score"]} for t in trials]
    atomic_write_text(run_dir / "search_summary.json", json.dumps(summary, indent=2) + "\n")
    what = f"after {len(trials)} trials" if search_cfg.multi_trial else f"({search_cfg.strategy} export)"
    print(f"best {spec.main_metric} {best:.4f} (random subnets: mean {summary['random_subnets']['mean']:.4f}, "
          f"best {summary['random_subnets']['best']:.4f}) {what}; "
          f"exported {', '.join(f'arch_top{i}.json' for i in range(1, len(top) + 1))} to {run_dir}")
    return summary


def load_supernet(run_dir: str | Path):
    """The trained supernet of a search run (its ``checkpoint.pt``), on CPU, in eval mode."""
    from .model import HeadSupernet
    from .space import bind_space
    from .train import CHECKPOINT, load_checkpoint
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG).is_file() or not (run_dir / CHECKPOINT).is_file():
        raise ValueError(f"{run_dir} is not a search run with a trained supernet (no {RUN_CONFIG} / {CHECKPOINT})")
    cfg = json.loads((run_dir / RUN_CONFIG).read_text())["run"]
    encoder = load_encoder(cfg["model"], cfg["num_hidden_layers"])
    state = load_checkpoint(run_dir / CHECKPOINT)["model"]
    num_labels = state["head.classifier.linear.weight"].shape[0]
    supernet = HeadSupernet(encoder, bind_space(cfg["space"], encoder.config.num_hidden_layers), num_labels)
    supernet.load_state_dict(state)
    return supernet.eval()


def _check_strategy_space(search_cfg, space) -> None:
    if space.has_backbone and search_cfg.strategy in ONE_SHOT:
        raise ValueError(f"--strategy {search_cfg.strategy} learns head choices only; search backbone space "
                         f"{space.name!r} with --strategy evolution or random")
    if search_cfg.penalty == "latency" and not space.has_backbone:
        raise ValueError(f"--penalty latency needs a backbone space (in {space.name!r} every candidate runs the same "
                         "encoder); use --penalty params, or --space <head>+ffn / +conv")


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
