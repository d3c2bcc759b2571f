"""What a finished search writes: the top-k architecture records, plots, the Pareto front, the summary."""
from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

from supernet.core.files import atomic_write_json
from supernet.nn.arch import Architecture
from supernet.scoring.candidates import CandidateScorer
from supernet.scoring.cost import model_costs, pareto_front, plot_pareto

SUMMARY = "search_summary.json"


def rank_top(trials: list[dict], scorer, k: int, meta: dict) -> list[Architecture]:
    """Top-k distinct architectures by score (the objective), re-scored for every metric and cost."""
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
    return ranked


def write_top(top: list[Architecture], run_dir: Path) -> None:
    """``arch_top<i>.json``, best first."""
    for i, arch in enumerate(top, 1):
        arch.save(run_dir / f"arch_top{i}.json")


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
    atomic_write_json(run_dir / "pareto.json",
                      {"metric": metric, "candidates": len(points), "reference": reference, "fronts": fronts})
    plot_pareto(points, metric, run_dir / "pareto.png", reference)
    return fronts["params"]


def random_subnets(scorer: CandidateScorer, n: int, seed: int) -> list[float]:
    """Main-metric scores of ``n`` uniformly drawn subnets of the same supernet (inherited weights)."""
    rng = random.Random(seed + 1)
    return [scorer.score(scorer.space.sample(rng))[scorer.main_metric] for _ in range(n)]


def random_summary(scores: list[float], best: float) -> dict[str, Any]:
    return {"n": len(scores), "mean": statistics.mean(scores), "std": statistics.pstdev(scores), "best": max(scores),
            "best_minus_mean": best - statistics.mean(scores), "best_minus_best": best - max(scores)}


def measured_costs(supernet, choices: dict, dev, pad_id: int, device: str) -> dict[str, float]:
    """Parameters and measured dev-set latency (ms / example) of the frozen model of ``choices``."""
    return model_costs(supernet.freeze(choices).to(device), dev, pad_id, device)
