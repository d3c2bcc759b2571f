"""Ranking quality: does the supernet rank heads the way stand-alone training ranks them?

For one task and regime (full fine-tuning, small data, frozen encoder):
1. ``--heads`` heads are drawn from the space, stratified over two labels, by default pooling x depth
   (every combination in turn, the other choices uniform; ``--strata``), plus the linear head on the pooler.
2. Stand-alone: each head is trained with the retrain loop and budget on the training rows minus the
   validation split, for every ``--seeds``, and scored on the validation split.
3. For each supernet variant (the remedies: sandwich rule, in-place distillation, fair sampling, a
   longer budget, another head learning rate, with and without batch-norm recalibration), one
   supernet is trained on the same rows and every head is scored with inherited weights on the same
   validation split, exactly as the search scores candidates.
4. Kendall's tau and Spearman's rho between inherited and stand-alone scores (95% bootstrap CIs over
   heads), top-5 overlap, the spread between heads (std of stand-alone means) and the seed noise (mean
   std across seeds): tau means something only where heads differ by more than seeds do.

Writes ``ranking.json`` (every score, every variant, the command) and one scatter PNG per variant.
Resumable: finished stand-alone seeds and finished supernets are kept.

    python bench/ranking.py --task mrpc --regime frozen --out bench/results/ranking-mrpc-frozen
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrain.run import RetrainConfig, RetrainPlan, retrain_heads  # noqa: E402
from strategies.config import PickConfig, SearchConfig  # noqa: E402
from strategies.pipeline import SearchJob, run_search  # noqa: E402
from supernet.core.files import atomic_write_json  # noqa: E402
from supernet.data.sources import DataConfig
from supernet.data.splits import TaskData, load_task  # noqa: E402
from supernet.nn.arch import Architecture  # noqa: E402
from supernet.nn.encoder import EncoderConfig, load_tokenizer  # noqa: E402
from supernet.nn.space import get_space  # noqa: E402
from supernet.scoring.candidates import SEARCH_STATE, CandidateScorer  # noqa: E402
from supernet.train.supernet import TrainConfig  # noqa: E402

# variant -> (supernet training overrides, batch-norm recalibration when scoring)
VARIANTS = {
    "base": ({}, True),
    "no_recalibration": ({}, False),
    "sandwich": ({"sampling": "sandwich"}, True),
    "sandwich_distill": ({"sampling": "sandwich", "distill": True}, True),
    "fair": ({"sampling": "fair", "heads_per_step": 7}, True),
    "long": ({"epochs_factor": 3.0}, True),
    "head_lr_3e-4": ({"lr_head": 3e-4}, True),
}
SUPERNET_OF = {"no_recalibration": "base"}  # variants scored on another variant's supernet


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mrpc")
    p.add_argument("--glue-dir", default=None, help="default: $GLUE_DIR")
    p.add_argument("--regime", choices=("full", "small", "frozen"), default="frozen")
    p.add_argument("--small-rows", type=int, default=500, help="training rows of the small-data regime")
    p.add_argument("--max-train-samples", type=int, default=None,
                   help="use only the first N training rows in the full or frozen regime (a large task on a CPU)")
    p.add_argument("--space", default="paper")
    p.add_argument("--model", default=None)
    p.add_argument("--num-hidden-layers", type=int, default=None)
    p.add_argument("--heads", type=int, default=24, help="heads drawn from the space (plus the linear head)")
    p.add_argument("--strata", default="pool,depth",
                   help="two labels whose every combination the drawn heads cycle over (e.g. pair,layers)")
    p.add_argument("--seeds", default="1,2", help="stand-alone training seeds")
    p.add_argument("--selection-seed", type=int, default=0, help="seed of the supernets")
    p.add_argument("--epochs", type=float, default=3.0, help="the training budget, stand-alone and supernet")
    p.add_argument("--lr-encoder", type=float, default=5e-5)
    p.add_argument("--lr-head", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {list(VARIANTS)}")
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def stratified_heads(space_name: str, n: int, seed: int = 12345, strata: tuple[str, str] = ("pool", "depth")
                     ) -> list[dict]:
    """``n`` distinct canonical heads cycling over the cells of two labels (default pooling x depth);
    other choices uniform."""
    space, rng = get_space(space_name), random.Random(seed)
    first, second = strata
    labels = space.labels()
    unknown = [s for s in strata if s not in labels]
    if unknown:
        raise SystemExit(f"--strata: space {space_name!r} has no label {unknown[0]!r}; it has {sorted(labels)}")
    cells = [(a, b) for b in labels[second] for a in labels[first]]
    # the linear head is added apart; a cell can run out of distinct heads (pooler at depth 0 holds
    # only the linear head: the pooler reads no token block), so a cell gets a few tries, then the next
    out, keys, i = [], {tuple(sorted(space.canonical(space.reference()).items()))}, 0
    while len(out) < n:
        a, b = cells[i % len(cells)]
        i += 1
        for _ in range(50):
            arch = space.canonical({**space.sample(rng), first: a, second: b})
            key = tuple(sorted(arch.items()))
            # a draw whose canonical form leaves the cell (the pooler reads the last layer only) is redrawn
            if key not in keys and (arch[first], arch[second]) == (a, b):
                keys.add(key)
                out.append(arch)
                break
    return out


def standalone(args, task: TaskData, data: DataConfig, encoder: EncoderConfig, cfg: RetrainConfig,
               heads: list[tuple[str, Architecture]], out: Path) -> dict[str, dict[str, float]]:
    """Per head, per seed: the main metric on the validation split after training on the rest."""
    selection = TaskData(task.spec, task.fit, task.fit, task.val, task.val, task.pad_id)  # report = val here
    results = retrain_heads(heads, RetrainPlan(selection, cfg, encoder, data), out / "standalone")
    m = task.spec.main_metric
    return {name: {s: r["metrics"][m] for s, r in h["seeds"].items()} for name, h in results["heads"].items()}


def supernet_dir(out: Path, variant: str) -> Path:
    """The run folder of the supernet a variant is scored on (some variants share another's)."""
    return out / f"supernet-{SUPERNET_OF.get(variant, variant)}"


def supernet_config(space: str, cfg: RetrainConfig, variant: str, seed: int) -> TrainConfig:
    """The stand-alone budget, with the variant's overrides on top (a variant may change lr_head)."""
    overrides = dict(VARIANTS[variant][0])
    epochs = cfg.epochs * overrides.pop("epochs_factor", 1.0)
    return TrainConfig.from_fine_tune(cfg, **{"space": space, "epochs": epochs, "seed": seed, **overrides})


def inherited(args, data, encoder, cfg: RetrainConfig, variant: str, heads, out: Path
              ) -> tuple[dict[str, float], dict[str, float | None]]:
    """Per head: its inherited score on the validation split, and the share of that split given its most
    frequent predicted class (1.0: the supernet left it a constant predictor; None for regression)."""
    recalibrate = VARIANTS[variant][1]
    job = SearchJob(encoder=encoder, data=data, train=supernet_config(args.space, cfg, variant, args.selection_seed),
                    search=SearchConfig(trials=2, population=2, sample_size=1, random_baseline=1, webui=False),
                    pick=PickConfig(pick="best"))  # the study scores its own heads: the safe pick's re-ranking is unused
    run = supernet_dir(out, variant)
    if not (run / "search_summary.json").is_file():
        run_search(job, run, resume=(run / "run_config.json").is_file())
    scorer = CandidateScorer.from_file(run / SEARCH_STATE)
    scorer.recalibrate = recalibrate
    return ({name: scorer.score(a.choices)[scorer.main_metric] for name, a in heads},
            {name: scorer.predicted_class_share(a.choices) for name, a in heads})


def supernet_cost(out: Path, variant: str) -> dict[str, float]:
    """Wall and CPU seconds the variant's supernet training took (resumes included): a remedy's price."""
    from supernet.train.loop import load_checkpoint
    progress = load_checkpoint(supernet_dir(out, variant) / "checkpoint.pt")["progress"]
    return {"supernet_seconds": progress["seconds"], "supernet_cpu_seconds": progress["cpu_seconds"]}


def _bootstrap(x: np.ndarray, y: np.ndarray, fn, n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    stats_ = []
    for _ in range(n):
        idx = rng.integers(0, len(x), len(x))
        value = fn(x[idx], y[idx])
        if np.isfinite(value):
            stats_.append(value)
    if not stats_:  # every resample tied: no rank correlation is defined
        return [float("nan"), float("nan")]
    return [float(np.percentile(stats_, 2.5)), float(np.percentile(stats_, 97.5))]


def ranking_stats(inh: dict[str, float], alone: dict[str, dict[str, float]], n_boot: int) -> dict:
    from scipy import stats
    names = sorted(alone)
    x = np.array([inh[n] for n in names])
    means = np.array([statistics.mean(alone[n].values()) for n in names])
    tau = lambda a, b: stats.kendalltau(a, b).statistic
    rho = lambda a, b: stats.spearmanr(a, b).statistic
    top = lambda v: set(np.argsort(-v, kind="stable")[:5])
    return {"kendall_tau": float(tau(x, means)), "kendall_tau_ci95": _bootstrap(x, means, tau, n_boot),
            "spearman": float(rho(x, means)), "spearman_ci95": _bootstrap(x, means, rho, n_boot),
            "top5_overlap": len(top(x) & top(means)) / 5,
            "head_spread": float(np.std(means, ddof=1)),
            "seed_noise": float(statistics.mean(statistics.stdev(alone[n].values()) for n in names))
            if all(len(alone[n]) > 1 for n in names) else None}


def scatter(inh: dict[str, float], alone: dict[str, dict[str, float]], metric: str, title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted(alone)
    means = [statistics.mean(alone[n].values()) for n in names]
    errs = [statistics.stdev(alone[n].values()) if len(alone[n]) > 1 else 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.errorbar([inh[n] for n in names], means, yerr=errs, fmt="o", ms=4, alpha=0.7, capsize=2)
    for n, xv, yv in zip(names, [inh[n] for n in names], means):
        if n == "linear":
            ax.annotate("linear", (xv, yv), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xlabel(f"inherited {metric} (supernet weights, validation split)")
    ax.set_ylabel(f"stand-alone {metric} (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report: dict) -> str:
    """The remedies' ablation as a table: one row per supernet variant."""
    first = next(iter(report["variants"].values()), {})
    noise = f"{first['seed_noise']:.4f}" if first.get("seed_noise") is not None else "n/a"
    lines = [f"{report['task']}, {report['regime']} regime, {report['n_heads']} heads, metric {report['metric']}: "
             f"head spread {first.get('head_spread', float('nan')):.4f}, seed noise {noise}", "",
             "| variant | Kendall τ [95 % CI] | Spearman ρ | top-5 overlap | constant heads | supernet CPU s |",
             "|---|---|---|---|---|---|"]
    for name, v in report["variants"].items():
        lo, hi = v["kendall_tau_ci95"]
        lines.append(f"| {name} | {v['kendall_tau']:.2f} [{lo:.2f}, {hi:.2f}] | {v['spearman']:.2f} | "
                     f"{v['top5_overlap']:.1f} | {v.get('constant_heads', 'n/a')} | {v['supernet_cpu_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = EncoderConfig(args.model, args.num_hidden_layers)
    data = DataConfig(task=args.task, glue_dir=args.glue_dir, max_length=args.max_length,
                      max_train_samples=args.small_rows if args.regime == "small" else args.max_train_samples)
    cfg = RetrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr_encoder=args.lr_encoder,
                        lr_head=args.lr_head, seeds=tuple(int(s) for s in args.seeds.split(",")),
                        freeze_encoder=args.regime == "frozen", linear_fit="budget")  # every head alike
    task = load_task(data, load_tokenizer(encoder.model))
    heads = [(f"h{i:02d}", Architecture(args.space, a, encoder=encoder.name, task=task.spec.name,
                                        labels=task.spec.label_names))
             for i, a in enumerate(stratified_heads(args.space, args.heads, strata=tuple(args.strata.split(","))))]
    # the linear head as a record of the searched space (on the pooler where the space has it)
    heads.append(("linear", Architecture(args.space, get_space(args.space).reference(), encoder=encoder.name,
                                         task=task.spec.name, labels=task.spec.label_names)))
    t0, cpu0 = time.time(), time.process_time()
    alone = standalone(args, task, data, encoder, cfg, heads, out)
    report = {"task": task.spec.name, "regime": args.regime, "metric": task.spec.main_metric, "n_heads": len(heads),
              "command": "python bench/ranking.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "budget": cfg.to_dict(), "data": data.to_dict(), "encoder": encoder.to_dict(),
              "selection_split": f"validation: {len(task.val)} of {len(task.train)} training rows",
              "heads": {n: {"choices": dict(a.choices), "standalone": alone[n]} for n, a in heads}, "variants": {}}
    for variant in args.variants.split(","):
        inh, share = inherited(args, data, encoder, cfg, variant, heads, out)
        for n in inh:
            report["heads"][n].setdefault("inherited", {})[variant] = inh[n]
            report["heads"][n].setdefault("inherited_class_share", {})[variant] = share[n]
        # heads the supernet left (near-)constant: they tie at the majority score and carry no ranking signal
        constant = sum(1 for v in share.values() if v is not None and v >= 0.99)
        report["variants"][variant] = {"variant": variant, **ranking_stats(inh, alone, args.bootstrap),
                                       "constant_heads": constant if any(v is not None for v in share.values()) else None,
                                       **supernet_cost(out, variant)}
        scatter(inh, alone, task.spec.main_metric, f"{task.spec.name}, {args.regime}, {variant}: tau "
                f"{report['variants'][variant]['kendall_tau']:.2f}", out / f"scatter-{variant}.png")
        print(f"{variant}: " + ", ".join(f"{k} {v:.3f}" for k, v in report["variants"][variant].items()
                                          if isinstance(v, (int, float)) and not isinstance(v, bool)), flush=True)
        atomic_write_json(out / "ranking.json", {**report, "seconds": time.time() - t0,
                                                 "cpu_seconds": time.process_time() - cpu0})
        (out / "ranking.md").write_text(markdown(report))
    return report


if __name__ == "__main__":
    main()
