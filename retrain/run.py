"""Fine-tune plain models built from architecture records, per seed, and report official dev metrics.

A retrained model is ``FrozenModel(encoder from_pretrained, pooling, plain_head(choices))``: no
NNI at training or inference time. The encoder starts from its pretrained weights and the head
from PyTorch's default initialisation, so a searched head and the linear baseline get exactly the
same loop (``supernet.train.loop``), budget and seeds.
"""
from __future__ import annotations

import copy
import functools
import json
import operator
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from supernet.core import distributed
from supernet.core.config import Config, arg
from supernet.core.errors import InputError
from supernet.core.files import atomic_write_json, atomic_write_text, read_json
from supernet.core.metrics import compute_metrics
from supernet.data.sources import DataConfig
from supernet.data.splits import TaskData
from supernet.data.tasks import TASKS, TaskSpec, get_task
from supernet.nn.arch import Architecture, linear_architecture
from supernet.nn.encoder import EncoderConfig, resolve_model
from supernet.nn.head import plain_head
from supernet.nn.model import FrozenModel, build_model
from supernet.nn.reading import Needs
from supernet.nn.saved import (
    MODEL_FILE,  # noqa: E402  (re-exported: retrain.run.MODEL_FILE is used by tools)
    save_model,
)
from supernet.scoring.cost import model_costs
from supernet.train.finetune import fine_tune  # noqa: F401  (retrain.run.fine_tune is public)
from supernet.train.frozen import EncoderCache, evaluate_cached, frozen_caches
from supernet.train.loop import (
    FineTuneConfig,
)
from supernet.train.probe import select_and_refit
from supernet.train.supernet import load_supernet

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"
SETTINGS = "settings.json"  # per head: what its seeds were trained with (a resume must match it)
_NOT_RESULT_SETTINGS = ("seeds", "device", "checkpoint_every")  # do not change what a seed computes


@dataclass(frozen=True)
class RetrainConfig(FineTuneConfig):
    """Fine-tuning budget shared by every head compared, and the seeds."""

    epochs: float = arg(3.0, "fine-tuning epochs")
    seeds: tuple[int, ...] = arg((1, 2, 3), "comma-separated seeds, one fine-tune each")
    linear_fit: str = arg("converged", "frozen encoder: a head without hidden layers (one linear layer, or a "
                                       "cosine's scale and bias) is fitted to convergence by L-BFGS, its L2 strength "
                                       "chosen on the selection split, as the safe pick scores it and every seed alike "
                                       "('budget': fine-tuned for --epochs like any head)",
                          choices=("converged", "budget"))

    def __post_init__(self):
        super().__post_init__()
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise InputError(f"--seeds must be distinct integers >= 0, got {self.seeds}")


@dataclass(frozen=True)
class HeadsConfig(Config):
    """Which heads ``python -m retrain`` trains besides the architecture given."""

    baseline: str = arg("none", "also retrain the standard linear head on the pooler's [CLS] vector",
                        choices=("none", "linear"))
    init_from: str | None = arg(None, "start the architecture from the trained supernet of this search run "
                                      "(inherited encoder, conv blocks and head) instead of the pretrained encoder and "
                                      "a fresh head; the linear baseline still starts from the pretrained encoder",
                                metavar="RUN_DIR")


def summarize(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of every metric over seeds."""
    names = next(iter(per_seed.values())).keys()
    out = {}
    for name in names:
        values = [m[name] for m in per_seed.values()]
        out[name] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


# ------------------------------------------------------------------ which heads, checked against the data

def resolve_heads(architecture: str, heads_cfg: HeadsConfig, task: str | None, encoder: EncoderConfig
                  ) -> tuple[str, list[tuple[str, Architecture]]]:
    """(task, [(name, architecture)]); refuses a task or encoder that does not match the record."""
    if architecture == "linear":
        task, heads = task or "mrpc", []
    else:
        arch = Architecture.load(architecture)
        task = _task_name(task)
        if task and arch.task and task != _task_name(arch.task):
            raise InputError(f"{architecture} was searched for task {arch.task!r}, not --task {task!r}; "
                             "retrain it on its own task or search again")
        task = task or arch.task
        if not task:
            raise InputError(f"{architecture} names no task; pass --task")
        if encoder.model and arch.encoder and encoder.name != arch.encoder:
            raise InputError(f"{architecture} was searched on encoder {arch.encoder!r}, not "
                             f"--model {encoder.model!r}; drop --model or search again on that encoder")
        heads = [(Path(architecture).stem, arch)]
    if architecture == "linear" or heads_cfg.baseline == "linear":
        heads.append(("linear", linear_architecture(task, encoder.name)))
    return task, heads


def check_heads(heads: list[tuple[str, Architecture]], spec: TaskSpec, encoder: EncoderConfig) -> None:
    """Refuse a head searched for another number of classes or other class names, or for an encoder
    of another depth."""
    from transformers import AutoConfig
    for name, arch in heads:
        if arch.labels is not None and arch.labels != spec.label_names:
            raise InputError(f"{name} was searched on classes {list(arch.labels)}, and the data's classes are "
                             f"{list(spec.label_names or [])}; retrain it on data with the same labels")
        if arch.task in TASKS and TASKS[arch.task].num_labels != spec.num_labels:
            raise InputError(f"{name} was searched for {arch.task} ({TASKS[arch.task].num_labels} labels) but the "
                             f"data has {spec.num_labels}; check --num-labels or search again on this data")
    backbone = [(n, a) for n, a in heads if a.search_space.has_backbone]
    if not backbone:
        return
    layers = encoder.num_hidden_layers or AutoConfig.from_pretrained(resolve_model(encoder.model)).num_hidden_layers
    for name, arch in backbone:
        if arch.search_space.encoder_layers != layers:
            raise InputError(f"{name} chooses {arch.search_space.encoder_layers} encoder layers (space "
                             f"{arch.space!r}) and the encoder has {layers}; pass the --num-hidden-layers "
                             "it was searched with")


def _task_name(task: str | None) -> str | None:
    """A GLUE task's canonical name ('MRPC', 'SST-2' -> 'mrpc', 'sst2'); other names as given."""
    return get_task(task).name if task and task.lower().replace("-", "").replace("_", "") in TASKS else task


def inherited_supernet(run_dir: str, heads: list[tuple[str, Architecture]], spec: TaskSpec) -> dict[str, Any]:
    """{architecture head name: the run's trained supernet}, after checking they belong together."""
    name, arch = heads[0]
    if name == "linear":
        raise InputError("--init-from applies to a searched architecture; give its JSON instead of 'linear'")
    summary = Path(run_dir) / "search_summary.json"
    searched = read_json(summary, "a finished search's summary").get("task") if summary.is_file() else None
    if searched and arch.task and searched != arch.task:
        raise InputError(f"--init-from {run_dir}: that run searched task {searched!r}, and {name} is for "
                         f"{arch.task!r}; pass the run that exported it")
    supernet = load_supernet(run_dir)
    if supernet.space.name != arch.space:
        raise InputError(f"--init-from {run_dir}: its supernet is space {supernet.space.name!r}, and {name} is "
                         f"space {arch.space!r}; pass the run that exported it")
    if supernet.num_labels != spec.num_labels:
        raise InputError(f"--init-from {run_dir}: its supernet has {supernet.num_labels} labels, and the task "
                         f"{spec.num_labels}")
    return {name: supernet}


# ------------------------------------------------------------------ retraining every head for every seed

@dataclass(frozen=True)
class RetrainPlan:
    """Everything ``retrain_heads`` trains with; ``settings(name, arch)`` is what a head's seeds depend on."""

    task: TaskData
    cfg: RetrainConfig
    encoder: EncoderConfig
    data: DataConfig
    inherit: Mapping[str, Any] | None = None
    caches: tuple[EncoderCache, EncoderCache] | None = None  # frozen encoder: its outputs, shared by every seed
    selection: tuple[EncoderCache, EncoderCache] | None = None  # ... and on the fit and selection rows
    configs: Mapping[str, RetrainConfig] = field(default_factory=dict)  # a head's own fine-tuning, if not ``cfg``
    # optimizer steps between dev evaluations (None: every epoch, the TensorBoard curves; a benchmark that reads
    # only the final score may skip the others: evaluation draws no random numbers, so the scores are the same)
    eval_every: int | None = None

    def cfg_for(self, name: str) -> RetrainConfig:
        return self.configs.get(name, self.cfg)

    def selection_caches(self, needs: Needs) -> tuple[EncoderCache, EncoderCache]:
        """The frozen encoder's outputs on the fit and selection rows: ``selection``, else cut from the
        training rows' cache (a --val-file's rows encoded on their own)."""
        if self.selection is not None:
            return self.selection
        t, train = self.task, self.caches[0]
        if t.fit_rows is not None:
            return train.subset(t.fit_rows), train.subset(t.val_rows)
        return train, frozen_caches(self.encoder.load(), (t.val,), t.pad_id, needs, self.cfg.device)[0]

    def settings(self, name: str, arch: Architecture) -> dict[str, Any]:
        fine_tune = {k: v for k, v in self.cfg_for(name).to_dict().items() if k not in _NOT_RESULT_SETTINGS}
        if not fine_tune["freeze_encoder"]:  # how a frozen head is fitted changes nothing here
            fine_tune.pop("linear_fit")
        if self._cosine_starts_fitted(name, arch):  # since cec8da3; runs from before started at scale 1, bias 0
            fine_tune["cosine_start"] = "fitted"
        # the rows themselves, not only the paths: a file changed between runs must not mix into one mean
        rows = {"train": self.task.train.fingerprint(), "dev": self.task.dev.fingerprint()}
        return {"architecture": {"space": arch.space, "choices": dict(arch.choices)}, "fine_tune": fine_tune,
                "data": self.data.to_dict(), "rows": rows, "encoder": self.encoder.to_dict(),
                "init": "supernet" if name in (self.inherit or {}) else "pretrained encoder"}

    def _cosine_starts_fitted(self, name: str, arch: Architecture) -> bool:
        """A fresh cosine head trained by ``fine_tune`` (not inherited, not fitted by L-BFGS instead)."""
        cfg, choices = self.cfg_for(name), arch.choices
        if choices.get("pair") not in ("cosine", "cosine_proj") or name in (self.inherit or {}):
            return False
        return not (cfg.freeze_encoder and cfg.linear_fit == "converged" and choices["pair"] == "cosine"
                    and choices.get("layers", "last") != "scalar_mix")


def _flatten(settings: dict[str, Any]) -> dict[str, Any]:
    """{"part.key": value} of a settings record (one level down)."""
    return {f"{part}.{k}": v for part, d in settings.items()
            for k, v in (d.items() if isinstance(d, dict) else [("value", d)])}


def check_resume_settings(head_dir: Path, settings: dict[str, Any]) -> None:
    """A head's finished seeds are reused only if they were trained with the same settings."""
    path = head_dir / SETTINGS
    if not path.is_file():
        if distributed.is_main():
            atomic_write_json(path, settings)
        return
    stored = _flatten(read_json(path, "the settings a head was trained with"))
    if stored.get("fine_tune.freeze_encoder"):  # runs from before --linear-fit trained every head for its budget
        stored.setdefault("fine_tune.linear_fit", "budget")
    new = _flatten(json.loads(json.dumps(settings)))  # as JSON has it: tuples are lists
    diffs = [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(stored) | set(new))
             if stored.get(k) != new.get(k)]
    if diffs:
        raise InputError(f"{head_dir} was trained with other settings ({'; '.join(diffs[:6])}); its seeds cannot be "
                         "reused: pick another --output-dir, or --overwrite it")


def _train_seed(plan: RetrainPlan, name: str, arch: Architecture, seed: int, seed_dir: Path,
                fitted: dict[str, Any]) -> dict[str, Any]:
    t, cfg = plan.task, plan.cfg_for(name)
    torch.manual_seed(seed)  # the head's initial weights
    net = (plan.inherit[name].freeze(arch.choices) if name in (plan.inherit or {})
           else build_model(arch, plan.encoder.load(), t.spec.num_labels))
    if converges(plan, name, net):  # deterministic: one fit serves every seed (``fitted`` keeps it)
        net.to(cfg.device)
        if not fitted:
            fitted.update(result=fit_converged(plan, net), state=copy.deepcopy(net.head.state_dict()))
        net.head.load_state_dict(fitted["state"])
        r = copy.deepcopy(fitted["result"])
    else:
        r = fine_tune(net, t.spec, t.train, t.dev, t.pad_id, cfg, seed, seed_dir / "tensorboard",
                      f"{name} seed {seed}", eval_every=plan.eval_every, checkpoint=seed_dir / CHECKPOINT,
                      caches=plan.caches)  # resumes
    if distributed.is_main():
        costs = model_costs(net, t.dev, t.pad_id, cfg.device)
        r["parameters"], r["dev_latency_ms"] = costs["params"], costs["dev_latency_ms"]
    r["model"] = net
    return r


def converges(plan: RetrainPlan, name: str, net: FrozenModel) -> bool:
    """Whether ``net``'s head is fitted to convergence instead of fine-tuned (``--linear-fit converged``):
    a frozen encoder, and nothing trainable but one linear map of a vector the cache holds (no token
    block, no scalar mix, no hidden layer: the linear heads and the cosine head)."""
    cfg = plan.cfg_for(name)
    return (cfg.freeze_encoder and cfg.linear_fit == "converged"
            and name not in (plan.inherit or {}) and net.tokens is None and net.scalar_mix is None
            and len(net.head) == 1 and isinstance(net.head[0], torch.nn.Linear))


@torch.no_grad()
def _vectors(net: FrozenModel, cache: EncoderCache, device: str) -> torch.Tensor:
    return cache.outputs(net.vector, device)


def fit_converged(plan: RetrainPlan, net: FrozenModel) -> dict[str, Any]:
    """``net``'s one linear map fitted by ``select_and_refit`` on the vectors it reads (the fit and
    selection rows choose the L2 strength, every training row fits it): deterministic, so every seed
    gets the same head. Trained for a budget from PyTorch's (or the cosine's) start instead, a linear
    head under-fits, and a cosine head stays the constant predictor it starts as on MRPC (issue #31)."""
    t, device = plan.task, plan.cfg.device
    t0, cpu0 = time.time(), time.process_time()
    fit, val = plan.selection_caches(net.needs)
    y = lambda split: torch.from_numpy(np.asarray(split.labels))
    score = lambda out, labels: compute_metrics(t.spec.metrics, out.numpy(), labels.numpy())[t.spec.main_metric]
    net.eval()
    head, l2, selection = select_and_refit((_vectors(net, fit, device), y(t.fit)), (_vectors(net, val, device),
                                           y(t.val)), (_vectors(net, plan.caches[0], device), y(t.train)),
                                           t.spec.num_labels, score)
    net.head[0].load_state_dict(head.state_dict())
    metrics = evaluate_cached(net, plan.caches[1], t.dev.labels, t.spec)
    seconds, cpu = time.time() - t0, time.process_time() - cpu0
    return {"metrics": metrics, "history": [{"step": 0, **metrics}], "steps": 0, "seconds": seconds,
            "cpu_seconds": cpu, "head_warmup": {"seconds": 0.0, "cpu_seconds": 0.0},
            "fit": {"method": "L-BFGS to convergence", "l2": l2,
                    "selection": {str(k): v for k, v in selection.items()}}}


def retrain_head(plan: RetrainPlan, name: str, arch: Architecture, out: Path, settings: dict[str, Any]
                 ) -> dict[str, Any]:
    """Every seed of one head (``settings``: ``plan.settings`` of it); finished seeds in ``out/name`` are kept.
    The first seed's model is saved: one fixed in advance, not the one the report split scored best (that
    would be a choice made on it)."""
    check_resume_settings(out / name, settings)
    per_seed, fitted = {}, {}
    for seed in plan.cfg.seeds:
        seed_dir = out / name / f"seed_{seed}"
        done = seed_dir / "result.json"
        if done.is_file():  # a finished seed is kept (resume)
            per_seed[seed] = read_json(done, "a finished seed's result")
            continue
        r = _train_seed(plan, name, arch, seed, seed_dir, fitted)
        net = r.pop("model")
        per_seed[seed] = r
        if distributed.is_main():
            # the model before the result: a kill in between reruns the seed instead of losing its model
            if seed == plan.cfg.seeds[0]:
                save_model(out / name / MODEL_FILE, net, arch, plan.task.spec.num_labels,
                           resolve_model(plan.encoder.model), plan.task.spec.text_columns, plan.data.max_length)
            atomic_write_json(done, r)
            (seed_dir / CHECKPOINT).unlink(missing_ok=True)
        distributed.barrier()
    return per_seed


def retrain_heads(heads: list[tuple[str, Architecture]], plan: RetrainPlan, out: Path) -> dict[str, Any]:
    """Fine-tune every head for every seed (same loop and budget). A head named in ``plan.inherit``
    starts from that trained supernet's weights (``freeze`` of its choices: encoder, conv blocks and
    head as the search scored them), not from the pretrained encoder. Writes per seed
    ``<head>/seed_<s>/result.json`` + TensorBoard, the first seed's ``<head>/model.pt``, and
    ``results.json`` / ``results.md`` in ``out``. A head whose settings (architecture, fine-tuning, init,
    data) equal an earlier head's is not trained again: it gets that head's results, ``same_as``, and its
    directory as a link to that head's."""
    spec, config = plan.task.spec, plan.encoder.pretrained_config()
    depth = plan.encoder.num_hidden_layers or config.num_hidden_layers
    if plan.cfg.freeze_encoder and plan.caches is None:  # the encoder's outputs once, for every head and seed
        needs = functools.reduce(operator.or_, (a.search_space.needs([a.choices]) for _, a in heads))
        plan = replace(plan, caches=frozen_caches(plan.encoder.load(), (plan.task.train, plan.task.dev),
                                                  plan.task.pad_id, needs, plan.cfg.device))
    results: dict[str, Any] = {"task": spec.name, "metric": spec.main_metric, "encoder": plan.encoder.name,
                               "num_hidden_layers": plan.encoder.num_hidden_layers, "config": plan.cfg.to_dict(),
                               "heads": {}}
    trained: dict[str, str] = {}  # a retrain's settings -> the head that ran them
    for name, arch in heads:
        settings = plan.settings(name, arch)  # once: it hashes the training and dev rows
        first = trained.setdefault(json.dumps(settings, sort_keys=True), name)
        if first != name:  # e.g. a search that kept a linear incumbent: the same fine-tune, not a second one
            print(f"{name}: the same head and settings as {first}; its retrain is reused", flush=True)
            results["heads"][name] = {**results["heads"][first], "architecture": arch.to_dict(), "same_as": first}
            if distributed.is_main() and not (out / name).exists():  # <out>/<name>/model.pt is where users look
                (out / name).symlink_to(first, target_is_directory=True)
            continue
        per_seed = retrain_head(plan, name, arch, out, settings)
        parts = plain_head(arch.search_space, arch.choices, config.hidden_size, spec.num_labels, depth)
        head_params = sum(p.numel() for m in parts if m is not None for p in m.parameters())
        seeds = [r for r in per_seed.values() if "parameters" in r]
        results["heads"][name] = {"architecture": arch.to_dict(), "head_parameters": head_params,
                                  "init": settings["init"],
                                  "parameters": seeds[0]["parameters"] if seeds else None,
                                  "dev_latency_ms": statistics.median(r["dev_latency_ms"] for r in seeds)
                                  if seeds else None,
                                  "seeds": {str(s): r for s, r in per_seed.items()},
                                  "summary": summarize({s: r["metrics"] for s, r in per_seed.items()})}
    if distributed.is_main():
        atomic_write_json(out / RESULTS, results)
        atomic_write_text(out / "results.md", f"# {spec.name}: dev metrics over seeds {list(plan.cfg.seeds)}\n\n"
                          + markdown_table(results, spec.metrics))
    return results


def markdown_table(results: dict[str, Any], metrics: tuple[str, ...]) -> str:
    lines = ["| head | " + " | ".join(f"dev {m}" for m in metrics)
             + " | head params | model params | dev latency (ms/example) | seconds/seed |",
             "|---|" + "---|" * (len(metrics) + 4)]
    for name, r in results["heads"].items():
        cells = [f"{r['summary'][m]['mean']:.4f} ± {r['summary'][m]['std']:.4f}" for m in metrics]
        seconds = sum(s["seconds"] for s in r["seeds"].values()) / len(r["seeds"])
        params = f"{r['parameters']:,}" if r.get("parameters") else "-"
        latency = f"{r['dev_latency_ms']:.2f}" if r.get("dev_latency_ms") else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['head_parameters']:,} | {params} | {latency} | "
                     f"{seconds:.0f} |")
    return "\n".join(lines) + "\n"


def run_retrain(architecture: str, heads_cfg: HeadsConfig, task: str | None, make_data: Callable[[str], DataConfig],
                encoder: EncoderConfig, cfg: RetrainConfig, output_dir: str | None, overwrite: bool,
                resume: bool) -> dict[str, Any]:
    """``python -m retrain``: retrain ``architecture`` (and the linear baseline) for every seed, on
    ``make_data(task)`` (the task given, else the architecture record's)."""
    import time

    from supernet.core.files import claim_output_dir
    from supernet.data.splits import load_task
    from supernet.nn.encoder import load_tokenizer
    cfg = replace(cfg, device=distributed.init_from_env(cfg.device))  # under torchrun: data parallel
    task_name, heads = resolve_heads(architecture, heads_cfg, task, encoder)
    data = make_data(task_name)
    encoder.check_inputs(data.max_length)
    task = load_task(data, load_tokenizer(encoder.model))
    heads = [(n, replace(a, labels=task.spec.label_names) if n == "linear" else a) for n, a in heads]
    check_heads(heads, task.spec, encoder)
    inherit = inherited_supernet(heads_cfg.init_from, heads, task.spec) if heads_cfg.init_from else None
    out = None
    if distributed.is_main():
        out = claim_output_dir(Path(output_dir or f"logs/retrain-{task.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"),
                               overwrite, "results", "--resume keeps its finished seeds", keep=resume)
        print(f"output directory: {out}", flush=True)
    out = distributed.broadcast(out)
    results = retrain_heads(heads, RetrainPlan(task, cfg, encoder, data, inherit), out)
    if distributed.is_main():
        print(markdown_table(results, task.spec.metrics), end="")
    return results
