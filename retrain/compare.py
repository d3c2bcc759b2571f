"""``python -m retrain.compare``: linear head vs weight-sharing search vs BO-Hyperband, same task and seeds.

(a) the standard linear head; (b) our search (one supernet fine-tune + regularized evolution over
inherited weights) and a retrain of its best head; (c) the multi-trial BO-Hyperband baseline (every
trial a real fine-tune) and a retrain of its best head. Every head is retrained with the same loop,
budget and seeds. Writes ``compare.md`` / ``compare.json`` (dev metric mean ± std, search cost in
wall and CPU seconds, the cost ratio (b)/(c)) and ``compare.png``. Each stage is resumable.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from supernet.arch import Architecture, atomic_write_text
from supernet.cli import add_data_arguments, claim_output_dir, data_config_from_args, run_cli
from supernet.encoder import encoder_id, load_encoder
from supernet.space import get_space

from .cli import _seeds, add_retrain_arguments, fine_tune_config, prepare_data
from .run import linear_architecture, retrain_heads

HEADS = ("linear", "weight_sharing", "bo_hyperband")
_DATA_FLAGS = ("task", "glue_dir", "train_file", "dev_file", "text_columns", "label_column", "num_labels",
               "max_length", "max_train_samples", "max_eval_samples")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retrain.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_arguments(p)
    add_retrain_arguments(
        p.add_argument_group("encoder and fine-tuning (shared by every retrain and every BO-HB trial)"),
        "encoder (default: packaged all-MiniLM-L6-v2)")
    s = p.add_argument_group("searches")
    s.add_argument("--space", default="paper", help="search-space preset, for both searches")
    s.add_argument("--search-trials", type=int, default=48, help="evolution trials over the supernet")
    s.add_argument("--supernet-epochs", type=float, default=1.0, help="supernet fine-tuning epochs")
    s.add_argument("--supernet-max-steps", type=int, default=None, help="overrides --supernet-epochs")
    s.add_argument("--bohb-trials", type=int, default=16, help="BO-Hyperband trials (real fine-tunes)")
    s.add_argument("--rung-epochs", type=float, default=1.0, help="fine-tuning between Hyperband rungs")
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", default=None, help="default: logs/compare-<task>-<time>")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    o.add_argument("--resume", action="store_true", help="continue the stages of an interrupted comparison")
    return p


def _data_argv(args) -> list[str]:
    argv = []
    for name in _DATA_FLAGS:
        value = getattr(args, name)
        if value not in (None, ""):
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def weight_sharing_search(args, out: Path) -> tuple[Architecture, dict[str, float]]:
    """(b): ``python -m supernet.search --strategy evolution --no-webui`` in ``out``; resumable."""
    from supernet.search import main as search_main
    summary_path, cost_path = out / "search_summary.json", out.parent / "weight_sharing_cost.json"
    if not summary_path.is_file():
        argv = (["--resume", str(out), "--no-webui"] if (out / "run_config.json").is_file() else
                ["--strategy", "evolution", "--no-webui", "--space", args.space, "--trials", str(args.search_trials),
                 "--epochs", str(args.supernet_epochs), "--batch-size", str(args.batch_size),
                 "--lr-encoder", str(args.lr_encoder), "--lr-head", str(args.lr_head), "--device", args.device,
                 "--precision", args.precision, "--seed", str(_seeds(args.seeds)[0]), "--output-dir", str(out),
                 *_data_argv(args), *(["--model", args.model] if args.model else []),
                 *(["--num-hidden-layers", str(args.num_hidden_layers)] if args.num_hidden_layers else []),
                 *(["--max-steps", str(args.supernet_max_steps)] if args.supernet_max_steps else [])])
        cpu0 = time.process_time()
        if search_main(argv) != 0:
            raise RuntimeError(f"the weight-sharing search failed; see above, and {out}")
        atomic_write_text(cost_path, json.dumps({"cpu_seconds": time.process_time() - cpu0}) + "\n")
    summary = json.loads(summary_path.read_text())
    cpu = json.loads(cost_path.read_text())["cpu_seconds"] if cost_path.is_file() else float("nan")
    return Architecture.load(out / "arch_top1.json"), {"seconds": summary["seconds"]["total"], "cpu_seconds": cpu}


def bo_hyperband_search(args, spec, train, dev, pad_id, out: Path) -> tuple[Architecture, dict[str, float]]:
    """(c): Optuna TPE + Hyperband, every trial a real fine-tune of the full budget; resumable."""
    from strategies.bohb import BOHBConfig, run_bohb
    cfg = BOHBConfig(trials=args.bohb_trials, rung_epochs=args.rung_epochs, seed=_seeds(args.seeds)[0])
    meta = {"encoder": encoder_id(args.model), "task": spec.name}
    summary = run_bohb(get_space(args.space), spec, train, dev, pad_id, cfg, fine_tune_config(args),
                       lambda: load_encoder(args.model, args.num_hidden_layers), meta, out)
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
    bars = ax.bar(names, means, yerr=stds, capsize=6, color=["#999999", "C0", "C1"])
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


def run(args) -> dict[str, Any]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # each rank would run its own Optuna study and suggest other heads: DDP steps would not match
        raise ValueError("python -m retrain.compare runs in one process; under torchrun, run its stages "
                         "(python -m supernet.search, python -m retrain) instead")
    ft_cfg = fine_tune_config(args)
    get_space(args.space)
    spec, train, dev, pad_id = prepare_data(data_config_from_args(args), args.model)  # bad data: fail first
    out = claim_output_dir(Path(args.output_dir or f"logs/compare-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"),
                           args.overwrite, "a comparison", "--resume continues it", keep=args.resume)
    print(f"output directory: {out}", flush=True)
    ws_arch, ws_cost = weight_sharing_search(args, out / "weight_sharing")
    bo_arch, bo_cost = bo_hyperband_search(args, spec, train, dev, pad_id, out / "bo_hyperband")
    heads = [("linear", linear_architecture(spec.name, encoder_id(args.model))),
             ("weight_sharing", ws_arch), ("bo_hyperband", bo_arch)]
    results = retrain_heads(heads, spec, train, dev, pad_id, ft_cfg, out / "retrain", args.model,
                            args.num_hidden_layers)
    cmp = comparison(results, {"weight_sharing": ws_cost, "bo_hyperband": bo_cost}, spec.main_metric)
    atomic_write_text(out / "compare.json", json.dumps(cmp, indent=2) + "\n")
    text = markdown(cmp, spec.name, ft_cfg.seeds)
    atomic_write_text(out / "compare.md", text)
    plot(cmp, out / "compare.png")
    print(text)
    return cmp


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
