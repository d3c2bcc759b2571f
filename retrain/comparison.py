"""Linear head vs weight-sharing search vs BO-Hyperband on the same task, budget and seeds.

(a) the standard linear head; (b) our search (one supernet fine-tune + regularized evolution over
inherited weights) and a retrain of its best head; (c) the multi-trial BO-Hyperband baseline (every
trial a real fine-tune) and a retrain of its best head. Every head is retrained with the same loop,
budget and seeds. Writes ``compare.md`` / ``compare.json`` (dev metric mean ± std, search cost in
wall and CPU seconds, the cost ratio (b)/(c)) and ``compare.png``. Each stage is resumable, and a
resume with other settings than the stored ones is refused.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supernet.arch import Architecture, linear_architecture
from supernet.config import Config, arg
from supernet.data import DataConfig, TaskData, load_task
from supernet.encoder import EncoderConfig, load_tokenizer
from supernet.errors import InputError
from supernet.files import atomic_write_json, atomic_write_text, claim_output_dir
from supernet.space import get_space, names_backbone_choices
from supernet.train import RUN_CONFIG, TrainConfig

from strategies.config import SearchConfig
from strategies.pipeline import SearchJob, SearchResult, run_search

from .bohb import BOHBConfig, run_bohb
from .run import RetrainConfig, RetrainPlan, retrain_heads

HEADS = ("linear", "weight_sharing", "bo_hyperband")


@dataclass(frozen=True)
class CompareConfig(Config):
    """The weight-sharing search's own budget (the BO-HB trials and every retrain share the fine-tuning flags)."""

    space: str = arg("paper", "search-space preset, for both searches")
    search_trials: int = arg(48, "evolution trials over the supernet")
    supernet_epochs: float = arg(1.0, "supernet fine-tuning epochs")
    supernet_max_steps: int | None = arg(None, "overrides --supernet-epochs")

    def __post_init__(self):
        if names_backbone_choices(self.space):
            raise InputError(f"--space {self.space}: the BO-Hyperband baseline searches head choices only; compare "
                             "on a head space (paper, small, tiny)")


def search_job(cmp: CompareConfig, data: DataConfig, encoder: EncoderConfig, ft: RetrainConfig) -> SearchJob:
    """(b)'s search: our supernet training with the shared fine-tuning flags, then evolution in-process."""
    train = TrainConfig(space=cmp.space, epochs=cmp.supernet_epochs, max_steps=cmp.supernet_max_steps,
                        batch_size=ft.batch_size, lr_encoder=ft.lr_encoder, lr_head=ft.lr_head, device=ft.device,
                        precision=ft.precision, seed=ft.seeds[0])
    search = SearchConfig(strategy="evolution", trials=cmp.search_trials, seed=ft.seeds[0], webui=False)
    return SearchJob(encoder=encoder, data=data, train=train, search=search)


def weight_sharing_search(job: SearchJob, out: Path) -> SearchResult:
    """(b): resumable; a stored search made with other settings is refused."""
    if not (out / RUN_CONFIG).is_file():
        return run_search(job, out)
    stored = SearchJob.load(out)
    diffs = [d for part in ("encoder", "data", "train", "search") for d in
             getattr(stored, part).differences(getattr(job, part), ("device",))]
    if diffs:
        raise InputError(f"{out} holds a search made with other settings ({'; '.join(diffs)}); "
                         "pick another --output-dir, or --overwrite it")
    if (out / "search_summary.json").is_file():
        return SearchResult.load(out)
    return run_search(stored, out, resume=True)


def bo_hyperband_search(cmp: CompareConfig, bohb: BOHBConfig, task: TaskData, data: DataConfig,
                        encoder: EncoderConfig, ft: RetrainConfig, out: Path) -> tuple[Architecture, dict[str, float]]:
    """(c): Optuna TPE + Hyperband, every trial a real fine-tune of the full budget; resumable."""
    meta = {"encoder": encoder.name, "task": task.spec.name, "labels": task.spec.label_names}
    summary = run_bohb(get_space(cmp.space), task.spec, task.train, task.dev, task.pad_id, bohb, ft, encoder.load,
                       meta, out, settings={"data": data.to_dict(), "encoder": encoder.to_dict()})
    return (Architecture.load(out / "best_arch.json"),
            {"seconds": summary["seconds"], "cpu_seconds": summary["cpu_seconds"],
             "trials": len(summary["trials"]), "pruned": summary["pruned"], "epochs": summary["epochs_spent"]})


def comparison(results: dict[str, Any], costs: dict[str, dict], metric: str) -> dict[str, Any]:
    rows = {}
    for name in HEADS:
        s = results["heads"][name]["summary"][metric]
        rows[name] = {"mean": s["mean"], "std": s["std"], "head_parameters": results["heads"][name]["head_parameters"],
                      "search": costs.get(name, {"seconds": 0.0, "cpu_seconds": 0.0})}
    ws, bo = costs["weight_sharing"]["seconds"], costs["bo_hyperband"]["seconds"]
    return {"metric": metric, "rows": rows, "cost_ratio_ws_over_bohb": ws / bo if bo > 0 else float("nan")}


def markdown(cmp: dict[str, Any], task: str, seeds) -> str:
    lines = [f"# {task}: dev {cmp['metric']} over seeds {list(seeds)}, after retraining each head", "",
             f"| head | dev {cmp['metric']} (mean ± std) | head params | search wall s | search CPU s |",
             "|---|---|---|---|---|"]
    for name, r in cmp["rows"].items():
        lines.append(f"| {name} | {r['mean']:.4f} ± {r['std']:.4f} | {r['head_parameters']:,} | "
                     f"{r['search']['seconds']:.0f} | {r['search']['cpu_seconds']:.0f} |")
    lines += ["", f"Search cost of weight sharing / BO-Hyperband (wall): {cmp['cost_ratio_ws_over_bohb']:.3f}", ""]
    return "\n".join(lines)


def plot(cmp: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(cmp["rows"])
    means = [cmp["rows"][n]["mean"] for n in names]
    stds = [cmp["rows"][n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bars = ax.bar(names, means, yerr=stds, capsize=6, color=["#999999", "C0", "C1", "C2"][:len(names)])
    low = max(0.0, min(m - s for m, s in zip(means, stds)) - 0.05)
    ax.set_ylim(low, max(m + s for m, s in zip(means, stds)) + 0.02)
    for bar, n in zip(bars, names):  # search cost written inside each bar, above the axis floor
        cost = cmp["rows"][n]["search"]["seconds"]
        ax.annotate(f"search {cost:.0f} s" if cost else "no search", (bar.get_x() + bar.get_width() / 2, low),
                    xytext=(0, 6), textcoords="offset points", ha="center", va="bottom", color="white", fontsize=9)
    ax.set_ylabel(f"dev {cmp['metric']} after retraining (mean ± std)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_compare(cmp: CompareConfig, bohb: BOHBConfig, data: DataConfig, encoder: EncoderConfig, ft: RetrainConfig,
                output_dir: str | None, overwrite: bool, resume: bool) -> dict[str, Any]:
    """``python -m retrain.compare``: the three arms, their retrains, and the report."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # each rank would run its own Optuna study and suggest other heads: DDP steps would not match
        raise InputError("python -m retrain.compare runs in one process; under torchrun, run its stages "
                         "(python -m supernet.search, python -m retrain) instead")
    task = load_task(data, load_tokenizer(encoder.model))  # bad data fails first
    out = claim_output_dir(Path(output_dir or f"logs/compare-{task.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"),
                           overwrite, "a comparison", "--resume continues it", keep=resume)
    print(f"output directory: {out}", flush=True)
    ws = weight_sharing_search(search_job(cmp, data, encoder, ft), out / "weight_sharing")
    bo_arch, bo_cost = bo_hyperband_search(cmp, replace(bohb, seed=ft.seeds[0]), task, data, encoder, ft,
                                           out / "bo_hyperband")
    heads = [("linear", linear_architecture(task.spec.name, encoder.name, task.spec.label_names)),
             ("weight_sharing", ws.best),
             ("bo_hyperband", bo_arch)]
    results = retrain_heads(heads, RetrainPlan(task, ft, encoder, data), out / "retrain")
    ws_cost = {"seconds": ws.seconds, "cpu_seconds": ws.cpu_seconds}
    result = comparison(results, {"weight_sharing": ws_cost, "bo_hyperband": bo_cost}, task.spec.main_metric)
    atomic_write_json(out / "compare.json", result)
    text = markdown(result, task.spec.name, ft.seeds)
    atomic_write_text(out / "compare.md", text)
    plot(result, out / "compare.png")
    print(text)
    return result
