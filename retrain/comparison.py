"""The comparison: linear heads vs weight-sharing search vs BO-Hyperband vs a random head, one protocol.

- **Three roles for the data.** Both searches select on the validation split carved from train
  (``--val-fraction``, stratified, fixed seed) or ``--val-file``; every arm's head is then retrained
  on the whole training split and reported on the official dev set (or ``--test-file``), which no
  search reads.
- **Seeds.** The searches run at ``--selection-seed``; the report retrains at ``--seeds``, which must
  not contain it.
- **Arms**, all retrained with the same loop, budget and report seeds: the linear head on the
  pooler's [CLS] (BertForSequenceClassification) and on the mean pooling (the sentence-transformers
  convention); the weight-sharing search's top-1; BO-HB's best (and, with ``--bohb-search-lr``, the
  variant that also searches the learning rate); a head drawn uniformly from the space.
- **Report**: mean ± std over the report seeds, and each arm's paired difference to the stronger
  linear head with a 95% t-interval over seeds; search costs in CPU seconds of this process (and
  BO-HB's to its best trial), with the machine's load average beside them. Weight sharing is
  charged up to its chosen head; its report stage (best-of-random baseline, latency) is listed apart.

Writes ``compare.json`` (every number and the protocol), ``compare.md`` and ``compare.png``. Each
stage resumes, and a resume with other settings than the stored ones is refused.
"""
from __future__ import annotations

import functools
import operator
import os
import random
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strategies.config import PickConfig, SearchConfig
from strategies.pick import SUPERNET_ENCODER, PickPlan, incumbents, safe_pick
from strategies.pipeline import SearchJob, SearchResult, run_search
from supernet.core.config import Config, arg
from supernet.core.errors import InputError
from supernet.core.files import atomic_write_json, atomic_write_text, claim_output_dir, read_json
from supernet.data.sources import DataConfig
from supernet.data.splits import TaskData, load_task
from supernet.nn.arch import Architecture, linear_architecture
from supernet.nn.encoder import EncoderConfig, load_tokenizer
from supernet.nn.reading import Needs
from supernet.nn.space import check_space_name, get_space, names_backbone_choices, resolve_space, space_arg
from supernet.train.frozen import EncoderCache, frozen_caches
from supernet.train.supernet import RUN_CONFIG, TrainConfig

from . import baselines
from .bohb import BOHBConfig, run_bohb
from .run import RetrainConfig, RetrainPlan, retrain_heads, summarize

LINEAR_HEADS = {"linear": "pooler", "linear_mean": "mean"}  # arm -> pooling of a single linear layer
INCUMBENT_ARMS = {"linear (pooler [CLS])": "linear", "linear (mean pool)": "linear_mean"}  # strategies.pick's names


@dataclass(frozen=True)
class CompareConfig(Config):
    """The searches' budgets and the selection seed (retrains and BO-HB trials share the fine-tuning flags)."""

    space: str = space_arg()  # both searches' and the random head's (a head space: BO-HB searches heads only)
    search_trials: int = arg(50, "evolution trials over the supernet (and random subnets it is compared with)")
    supernet_epochs: float | None = arg(None, "supernet fine-tuning epochs (default: --epochs, the same budget "
                                              "as one retrain)")
    supernet_max_steps: int | None = arg(None, "overrides --supernet-epochs")
    selection_seed: int = arg(0, "seed of both searches and of the random head; the report seeds must differ")

    def __post_init__(self):
        if names_backbone_choices(self.space):
            raise InputError(f"--space {self.space}: the BO-Hyperband baseline searches head choices only; compare "
                             "on a head space (paper, mlp, small, tiny)")
        check_space_name(self.space)
        if self.search_trials < 1:
            raise InputError(f"--search-trials must be >= 1, got {self.search_trials}")
        if self.supernet_epochs is not None and not self.supernet_epochs > 0:
            raise InputError(f"--supernet-epochs must be > 0, got {self.supernet_epochs}")
        if self.supernet_max_steps is not None and self.supernet_max_steps < 1:
            raise InputError(f"--supernet-max-steps must be >= 1, got {self.supernet_max_steps}")
        if self.selection_seed < 0:
            raise InputError(f"--selection-seed must be >= 0, got {self.selection_seed}")


def search_job(cmp: CompareConfig, data: DataConfig, encoder: EncoderConfig, ft: RetrainConfig,
               pick: PickConfig = PickConfig()) -> SearchJob:
    """The weight-sharing search: our supernet training with the shared fine-tuning budget, then
    evolution in-process, both at the selection seed."""
    budget = {}  # default: one retrain's budget (--epochs / --max-steps), as every shared setting is
    if cmp.supernet_epochs is not None or cmp.supernet_max_steps is not None:
        budget = {"epochs": cmp.supernet_epochs or ft.epochs, "max_steps": cmp.supernet_max_steps}
    train = TrainConfig.from_fine_tune(ft, space=cmp.space, seed=cmp.selection_seed, **budget)
    search = SearchConfig(strategy="evolution", trials=cmp.search_trials, webui=False,
                          random_baseline=cmp.search_trials)
    return SearchJob(encoder=encoder, data=data, train=train, search=search, pick=pick)


def weight_sharing_search(job: SearchJob, out: Path) -> SearchResult:
    """Resumable; a stored search made with other settings is refused."""
    if not (out / RUN_CONFIG).is_file():
        return run_search(job, out)
    stored = SearchJob.load(out)
    diffs = [d for part in ("encoder", "data", "train", "search", "pick") for d in
             getattr(stored, part).differences(getattr(job, part), ("device",))]
    if diffs:
        raise InputError(f"{out} holds a search made with other settings ({'; '.join(diffs)}); give its values "
                         "back (the first of each pair), pick another --output-dir, or --overwrite it")
    if (out / "search_summary.json").is_file():
        return SearchResult.load(out)
    return run_search(stored, out, resume=True)


def bo_hyperband_search(space: str, bohb: BOHBConfig, task: TaskData, data: DataConfig, encoder: EncoderConfig,
                        ft: RetrainConfig, out: Path) -> tuple[Architecture, RetrainConfig, dict[str, Any]]:
    """BO-HB's best head, the fine-tuning config to retrain it with (its learning rate, if searched), its costs."""
    meta = {"encoder": encoder.name, "task": task.spec.name, "labels": task.spec.label_names}
    s = run_bohb(get_space(space), task, bohb, ft, encoder.load, meta, out,
                 settings={"data": data.to_dict(), "encoder": encoder.to_dict()})
    best_ft = replace(ft, lr_encoder=s["best"]["lr_encoder"]) if bohb.search_lr else ft
    cost = {k: s[k] for k in ("seconds", "cpu_seconds", "seconds_to_best", "cpu_seconds_to_best", "epochs_spent",
                              "completed", "pruned", "proposed_by_model", "repeats")}
    return Architecture.load(out / "best_arch.json"), best_ft, {**cost, "trials": s["distinct_heads"]}


def random_head(space: str, seed: int, task: TaskData, encoder: EncoderConfig) -> Architecture:
    """A head drawn uniformly from the space: did searching matter at all?"""
    s = get_space(space)
    return Architecture(space, s.canonical(s.sample(random.Random(seed))), encoder=encoder.name,
                        task=task.spec.name, labels=task.spec.label_names)


def paired(arm: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    """Mean per-seed difference arm - base with a 95% t-interval (seeds paired: same seed, same data order)."""
    from scipy import stats
    diffs = [arm[s] - base[s] for s in sorted(base)]
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "ci95": [float("nan"), float("nan")], "n": len(diffs)}
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(diffs)}


def comparison(results: dict[str, Any], costs: dict[str, dict], metric: str,
               selection: dict[str, float] | None = None) -> dict[str, Any]:
    """Rows per arm: mean ± std over report seeds, per-seed scores, costs, paired difference to the
    stronger linear head (stronger on the selection split, ``selection``: arm -> score, where the
    linear heads were scored there; else on dev, and said so) and to each linear head."""
    per_seed = {name: {s: r["metrics"][metric] for s, r in h["seeds"].items()} for name, h in results["heads"].items()}
    summary = {name: h["summary"][metric] for name, h in results["heads"].items()}
    linear = [n for n in (*LINEAR_HEADS, "linear_probe") if n in summary]  # the converged probe, where fitted
    scored = [n for n in linear if n in (selection or {})]
    base = max(scored, key=selection.__getitem__) if scored else max(linear, key=lambda n: summary[n]["mean"])
    rows = {name: {"mean": summary[name]["mean"], "std": summary[name]["std"], "per_seed": per_seed[name],
                   "head_parameters": results["heads"][name]["head_parameters"],
                   "same_as": results["heads"][name].get("same_as"),  # one retrain shared by two arms
                   "architecture": results["heads"][name]["architecture"]["choices"],
                   "search": costs.get(name, {"seconds": 0.0, "cpu_seconds": 0.0}),
                   "vs_linear": paired(per_seed[name], per_seed[base]) if name != base else None,
                   # against each linear head too: which one is "the best" is read off the report split
                   "vs_each_linear": {n: paired(per_seed[name], per_seed[n]) for n in linear if n != name}}
            for name in results["heads"]}
    ws, bo = costs["weight_sharing"]["cpu_seconds"], costs["bo_hyperband"]["cpu_seconds"]
    return {"metric": metric, "baseline": base, "baseline_chosen_on": "selection split" if scored else "dev",
            "rows": rows,
            "cpu_cost_ratio_ws_over_bohb": ws / bo if bo > 0 else float("nan")}


def markdown(cmp: dict[str, Any], task: str) -> str:
    p = cmp["protocol"]
    lines = [f"# {task} ({p['regime']}): dev {cmp['metric']} after retraining each head, seeds {p['report_seeds']}",
             "", f"Selection: {p['selection_split']}, seed {p['selection_seed']}. Report: {p['report_split']}.", "",
             f"| arm | dev {cmp['metric']} (mean ± std) | paired Δ vs {cmp['baseline']} (the strongest linear head on "
             f"the {cmp.get('baseline_chosen_on', 'dev')}) [95% CI] | head params | "
             "search CPU s |", "|---|---|---|---|---|"]
    for name, r in cmp["rows"].items():
        d = r["vs_linear"]
        delta = "—" if d is None else f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"
        same = f" (= {r['same_as']}: the same head, one retrain)" if r.get("same_as") else ""
        lines.append(f"| {name}{same} | {r['mean']:.4f} ± {r['std']:.4f} | {delta} | {r['head_parameters']:,} | "
                     f"{r['search']['cpu_seconds']:.0f} |")
    lines += ["", f"Search CPU cost, weight sharing / BO-Hyperband: {cmp['cpu_cost_ratio_ws_over_bohb']:.3f}"]
    report = cmp["rows"]["weight_sharing"]["search"].get("report_cpu_seconds")
    if report is not None:
        lines.append(f"(weight sharing's report stage, not charged: {report:.0f} CPU s: best-of-random baseline, "
                     "latency measurements, plots)")
    lines.append("")
    return "\n".join(lines)


def plot(cmp: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(cmp["rows"])
    means = [cmp["rows"][n]["mean"] for n in names]
    stds = [cmp["rows"][n]["std"] for n in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 4))
    bars = ax.bar(names, means, yerr=stds, capsize=6, color=[f"C{i}" for i in range(len(names))])
    low = max(0.0, min(m - s for m, s in zip(means, stds)) - 0.05)
    ax.set_ylim(low, max(m + s for m, s in zip(means, stds)) + 0.02)
    for bar, n in zip(bars, names):  # search cost written inside each bar, above the axis floor
        cost = cmp["rows"][n]["search"]["cpu_seconds"]
        ax.annotate(f"{cost:.0f} CPU s" if cost else "no search", (bar.get_x() + bar.get_width() / 2, low),
                    xytext=(0, 6), textcoords="offset points", ha="center", va="bottom", color="white", fontsize=8)
    ax.set_ylabel(f"dev {cmp['metric']} after retraining (mean ± std)")
    ax.tick_params(axis="x", labelrotation=20)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _protocol(cmp: CompareConfig, data: DataConfig, task: TaskData, ft: RetrainConfig, ws: SearchResult) -> dict:
    regime = "frozen encoder" if ft.freeze_encoder else (
        f"small data ({data.max_train_samples} training rows)" if data.max_train_samples else "full fine-tuning")
    return {"regime": regime, "selection_split": ws.summary["selection_split"], "selection_seed": cmp.selection_seed,
            "report_split": data.test_file or f"official dev set ({len(task.dev)} rows)",
            "report_seeds": list(ft.seeds), "budget": ft.to_dict(), "search_trials": cmp.search_trials,
            "load_average": list(os.getloadavg())}


@dataclass
class Arms:
    """What the searches produced: the heads to retrain, per-arm fine-tuning where not the shared
    one (BO-HB with a searched learning rate), the search costs, and the weight-sharing run."""

    heads: list[tuple[str, Architecture]]
    configs: dict[str, RetrainConfig]
    costs: dict[str, dict]
    ws: SearchResult
    bohb_pick: dict | None = None  # BO-HB-safe's decision, where that arm ran


def search_arms(cmp, bohb, task, data, encoder, ft, out, pick: PickConfig = PickConfig()) -> Arms:
    ws = weight_sharing_search(search_job(cmp, data, encoder, ft, pick), out / "weight_sharing")
    heads = linear_arms(cmp.space, task, encoder)
    heads.append(("weight_sharing", ws.best))
    top1 = Architecture(ws.best.space, ws.summary["search_best_choices"], encoder=encoder.name, task=task.spec.name,
                        labels=task.spec.label_names)
    if top1.key() != ws.best.key():  # the safe pick returned another head: show the supernet's own top-1 too
        heads.append(("weight_sharing_top1", top1))
    # charged up to its chosen head, as BO-HB is for its trials; its report stage (13-40 % of the total in
    # our runs) is work BO-HB does not do: recorded apart, not charged
    arms = Arms(heads, {}, {"weight_sharing": ws.cost_to_head()}, ws)
    for name, variant in (("bo_hyperband", replace(bohb, search_lr=False)), ("bo_hyperband_lr", bohb)):
        if name == "bo_hyperband_lr" and not bohb.search_lr:
            continue
        arch, cfg, arms.costs[name] = bo_hyperband_search(cmp.space, replace(variant, seed=cmp.selection_seed),
                                                          task, data, encoder, ft, out / name)
        arms.heads.append((name, arch))
        if cfg != ft:
            arms.configs[name] = cfg
    # BO-HB's best through the same rule, against the same incumbents: a fair arm. It has no supernet, so
    # under full fine-tuning its re-ranking fine-tunes each head (weight sharing's: on its supernet's encoder)
    if pick.pick == "safe":
        arch, decision = bo_hyperband_safe(arms.heads[-1][1], task, encoder, ft, pick, cmp.selection_seed,
                                           out / "bo_hyperband_safe")
        arms.heads.append(("bo_hyperband_safe", arch))
        arms.bohb_pick = decision
        arms.costs["bo_hyperband_safe"] = {k: arms.costs["bo_hyperband"][k] + decision[k]
                                           for k in ("seconds", "cpu_seconds")}
    arms.heads.append(("random_head", random_head(cmp.space, cmp.selection_seed, task, encoder)))
    return arms


def linear_arms(space: str, task: TaskData, encoder: EncoderConfig) -> list[tuple[str, Architecture]]:
    """The single linear layers, as the compared space's own incumbent records where it holds them: a
    search that keeps one returns that very record, and its retrain is reused (``retrain_heads``)."""
    held = {INCUMBENT_ARMS[n]: c for n, c in incumbents(get_space(space)).items() if n in INCUMBENT_ARMS}
    meta = {"encoder": encoder.name, "task": task.spec.name, "labels": task.spec.label_names}
    return [(name, Architecture(space, held[name], **meta) if name in held else
             linear_architecture(task.spec.name, encoder.name, task.spec.label_names, pool))
            for name, pool in LINEAR_HEADS.items()]


def bo_hyperband_safe(best: Architecture, task: TaskData, encoder: EncoderConfig, ft: RetrainConfig,
                      pick: PickConfig, seed: int, out: Path) -> tuple[Architecture, dict[str, Any]]:
    """BO-HB's best head, kept only if it beats the incumbents by the safe rule (resumable: pick.json)."""
    path = out / "pick.json"
    if path.is_file():
        stored = read_json(path, "a finished pick")
        return Architecture.from_dict(stored["architecture"]), stored["decision"]
    plan = PickPlan(task, replace(ft, seeds=(seed,)), encoder, seed, pick.folds)
    decision, arch = safe_pick(plan, best.search_space, [best], 1, {"encoder": best.encoder, "task": best.task,
                                                                     "labels": best.labels})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"architecture": arch.to_dict(), "decision": decision})
    print(f"BO-HB, safe pick: {decision['line']}", flush=True)
    return arch, decision


def selection_scores(ws: SearchResult, results: dict[str, Any], bohb_pick: dict | None = None) -> dict[str, float]:
    """The linear arms' scores on the selection split, where something put them there: the safe pick's
    stand-alone incumbents, and the linear probe's chosen L2 strength. Incumbents trained on the supernet's
    fine-tuned encoder (``--rerank-on supernet``) are not the linear arms, which fine-tune from the pretrained
    one: BO-HB-safe's incumbents, trained as those arms are, stand in for them."""
    pick = ws.summary.get("pick", {})
    if SUPERNET_ENCODER in pick.get("scored_on", ""):
        pick = bohb_pick or {}
    out = {INCUMBENT_ARMS[c["name"]]: c["score"] for c in pick.get("standalone", [])
           if c["name"] in INCUMBENT_ARMS and c["score"] == c["score"]}
    probe = results["heads"].get("linear_probe", {}).get("fitted")
    if probe and (not out or pick.get("scored_on", "").startswith("the selection split")):  # the same rows
        out["linear_probe"] = probe["selection"][str(probe["l2"])]
    return out


def frozen_splits(task: TaskData, encoder: EncoderConfig, heads: list[tuple[str, Architecture]], device: str
                  ) -> dict[str, EncoderCache]:
    """The frozen encoder's outputs on train and dev (what every head and baseline reads), and the fit and
    selection rows' share of them (a --val-file's rows encoded on their own)."""
    needs = functools.reduce(operator.or_, (a.search_space.needs([a.choices]) for _, a in heads),
                             Needs(("mean",), sides=task.train.sides is not None))
    model = encoder.load()
    train, dev = frozen_caches(model, (task.train, task.dev), task.pad_id, needs, device)
    if task.fit_rows is None:
        return {"train": train, "dev": dev, "fit": train,
                "val": frozen_caches(model, (task.val,), task.pad_id, needs, device)[0]}
    return {"train": train, "dev": dev, "fit": train.subset(task.fit_rows), "val": train.subset(task.val_rows)}


def add_fitted_baselines(results: dict[str, Any], task: TaskData, caches: dict[str, EncoderCache],
                         seeds: tuple[int, ...], out: Path) -> None:
    """The converged linear probe and (pair tasks) the zero-parameter cosine, as arms of ``results``:
    deterministic, so every report seed has the same score. Kept in ``out`` (a resume reuses them)."""
    for name, fit in (("linear_probe", baselines.linear_probe), ("cosine", baselines.cosine)):
        path = out / f"{name}.json"
        r = read_json(path, "a fitted baseline") if path.is_file() else fit(task, caches)
        if r is None:
            continue
        atomic_write_json(path, r)
        choices = {"pool": baselines.POOL, "fit": "L-BFGS to convergence", "l2": r["l2"]} if "l2" in r else \
            {"pool": baselines.POOL, "pair": "cosine", "threshold": r["threshold"]}
        results["heads"][name] = {"architecture": {"space": "baseline", "choices": choices},
                                  "head_parameters": r["parameters"], "init": "fitted on frozen outputs",
                                  "seeds": {str(s): {"metrics": r["metrics"]} for s in seeds},
                                  "summary": summarize({s: r["metrics"] for s in seeds}), "fitted": r}


def run_compare(cmp: CompareConfig, bohb: BOHBConfig, data: DataConfig, encoder: EncoderConfig, ft: RetrainConfig,
                output_dir: str | None, overwrite: bool, resume: bool, pick: PickConfig = PickConfig()
                ) -> dict[str, Any]:
    """``python -m retrain.compare``: the arms, their retrains, and the report."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # each rank would run its own Optuna study and suggest other heads: DDP steps would not match
        raise InputError("python -m retrain.compare runs in one process; under torchrun, run its stages "
                         "(python -m supernet.search, python -m retrain) instead")
    if cmp.selection_seed in ft.seeds:
        raise InputError(f"--selection-seed {cmp.selection_seed} is one of the report --seeds {list(ft.seeds)}: a "
                         "search's own training run must not be reported; pick seeds without it")
    encoder.check_inputs(data.max_length)
    task = load_task(data, load_tokenizer(encoder.model))  # bad data fails first
    cmp = replace(cmp, space=resolve_space(cmp.space, len(task.spec.text_columns)))  # --space auto: per task
    out = claim_output_dir(Path(output_dir or f"logs/compare-{task.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"),
                           overwrite, "a comparison", "--resume continues it", keep=resume)
    print(f"output directory: {out}", flush=True)
    arms = search_arms(cmp, bohb, task, data, encoder, ft, out, pick)
    plan = RetrainPlan(task, ft, encoder, data, configs=arms.configs)
    caches = frozen_splits(task, encoder, arms.heads, ft.device) if ft.freeze_encoder else None
    if caches:  # the encoder's outputs once, for every retrain and for the baselines fitted on them
        plan = replace(plan, caches=(caches["train"], caches["dev"]), selection=(caches["fit"], caches["val"]))
    # every head with the same loop, budget and report seeds (BO-HB's lr variant with its own learning rate)
    results = retrain_heads(arms.heads, plan, out / "retrain")
    if caches:
        add_fitted_baselines(results, task, caches, ft.seeds, out / "baselines")
    result = {**comparison(results, arms.costs, task.spec.main_metric, selection_scores(arms.ws, results, arms.bohb_pick)),
              "protocol": _protocol(cmp, data, task, ft, arms.ws),
              "random_subnets_inherited": arms.ws.summary["random_subnets"],
              # the search's best by inherited score (what the random subnets are set against), not the pick
              "search_best_inherited": arms.ws.summary.get("search_best", arms.ws.summary["best"])}
    atomic_write_json(out / "compare.json", result)
    text = markdown(result, task.spec.name)
    atomic_write_text(out / "compare.md", text)
    plot(result, out / "compare.png")
    print(text)
    return result
