"""Fine-tune plain models built from architecture records, per seed, and report official dev metrics.

A retrained model is ``FrozenModel(encoder from_pretrained, pooling, plain_head(choices))``: no
NNI at training or inference time. The encoder starts from its pretrained weights and the head
from PyTorch's default initialisation, so a searched head and the linear baseline get exactly the
same loop, budget and seeds.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from transformers import AutoConfig
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from supernet import distributed
from supernet.arch import Architecture, atomic_torch_save, atomic_write_text
from supernet.backbone import modified_encoder
from supernet.cost import model_costs
from supernet.data import Encoded, batch_indices, pad_batch
from supernet.encoder import encoder_id, load_encoder, resolve_model
from supernet.metrics import compute_metrics
from supernet.model import FrozenModel, plain_head
from supernet.space import get_space
from supernet.tasks import TaskSpec
from supernet.train import (FineTuneConfig, epoch_batches, loss_fn, make_optimizer, optimizer_step, restore_checkpoint,
                            save_checkpoint, steps_per_epoch)

# BertForSequenceClassification's head: the pooler's [CLS] vector, then one linear layer
LINEAR_CHOICES = {"pool": "pooler", "depth": 0}
MODEL_FILE = "model.pt"
CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"


@dataclass(frozen=True)
class RetrainConfig(FineTuneConfig):
    """Fine-tuning budget shared by every head compared, and the seeds."""

    epochs: float = 3.0
    seeds: tuple[int, ...] = (1, 2, 3)
    checkpoint_every: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, got {self.seeds}")


def linear_architecture(task: str, encoder: str) -> Architecture:
    """The standard baseline as an architecture record of the ``paper`` space."""
    return Architecture("paper", get_space("paper").canonical(LINEAR_CHOICES), encoder=encoder, task=task)


def build_model(arch: Architecture, encoder: torch.nn.Module, num_labels: int) -> FrozenModel:
    """Plain model of ``arch`` on a pretrained encoder: in a backbone space the encoder is first
    modified (FFNs skipped, conv blocks in place of attention; conv blocks start fresh)."""
    space = arch.search_space
    if space.has_backbone and encoder.config.num_hidden_layers != space.encoder_layers:
        raise ValueError(f"the architecture's space {space.name!r} has {space.encoder_layers} encoder layers, and the "
                         f"encoder has {encoder.config.num_hidden_layers}; pass the --model / --num-hidden-layers "
                         "it was searched with")
    head = plain_head(space, arch.choices, encoder.config.hidden_size, num_labels)
    return FrozenModel(modified_encoder(encoder, space, arch.choices), arch.choices["pool"], head)


@torch.no_grad()
def evaluate(model: FrozenModel, data: Encoded, spec: TaskSpec, pad_id: int, device: str,
             batch_size: int = 128) -> dict[str, float]:
    was_training = model.training
    model.eval()
    outputs = []
    for index in batch_indices(data, batch_size, shuffle=False, bucket=False):
        batch = {k: v.to(device) for k, v in pad_batch(data, index, pad_id).items()}
        outputs.append(model(**batch).float().cpu())
    model.train(was_training)
    return compute_metrics(spec.metrics, torch.cat(outputs).numpy(), data.labels)


def fine_tune(model: FrozenModel, spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
              cfg: RetrainConfig, seed: int, log_dir: Path | None, desc: str = "retrain",
              eval_every: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None,
              checkpoint: Path | None = None) -> dict[str, Any]:
    """Fine-tune encoder + head; dev metrics every ``eval_every`` steps (default: each epoch) and
    at the end, to TensorBoard and to ``on_eval(step, scores)``, which may raise to stop early
    (Hyperband's pruning). With ``checkpoint``, the state is saved there every
    ``cfg.checkpoint_every`` steps and a run that finds one continues from it, exactly."""
    device = torch.device(cfg.device)
    model.to(device).train()
    distributed.check_batch(cfg.batch_size)
    trained = distributed.wrap(model)  # DDP under torchrun; rank 0 evaluates and writes
    main = distributed.is_main()
    per_epoch = steps_per_epoch(len(train), cfg.batch_size)
    total = cfg.max_steps or math.ceil(cfg.epochs * per_epoch)
    eval_every = eval_every or per_epoch
    optimizer, scheduler = make_optimizer(model, cfg, total)
    start, history, spent = 0, [], 0.0
    if checkpoint is not None and checkpoint.is_file():
        start, extra = restore_checkpoint(checkpoint, model, optimizer, scheduler)
        history, spent = extra["history"], extra["seconds"]
    writer = SummaryWriter(str(log_dir), purge_step=start or None) if log_dir is not None and main else None
    t0 = time.time() - spent
    try:
        for step in tqdm(range(start, total), desc=desc, unit="step", dynamic_ncols=True, initial=start, total=total,
                         disable=not main):
            if step % per_epoch == 0 or step == start:
                batches = epoch_batches(train, cfg.batch_size, seed, step // per_epoch)
            batch = pad_batch(train, distributed.shard(batches[step % len(batches)]), pad_id)
            loss = _train_step(trained, spec, batch, cfg, f"step {step} (seed {seed})", optimizer, scheduler)
            if writer and (step + 1) % 10 == 0:
                writer.add_scalar("train/loss", loss, step + 1)
            if (step + 1) % eval_every == 0 or step + 1 == total:
                scores = distributed.broadcast(evaluate(model, dev, spec, pad_id, cfg.device) if main else None)
                history.append({"step": step + 1, **scores})
                if writer:
                    for name, value in scores.items():
                        writer.add_scalar(f"dev/{name}", value, step + 1)
                if on_eval:
                    on_eval(step + 1, scores)
            if checkpoint is not None and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
                if main:
                    save_checkpoint(checkpoint, model, optimizer, scheduler, step + 1,
                                    {"history": history, "seconds": time.time() - t0})
                distributed.barrier()
    finally:
        if writer:
            writer.close()
    return {"metrics": {k: v for k, v in history[-1].items() if k != "step"}, "history": history,
            "steps": total, "seconds": time.time() - t0}


def _train_step(model, spec, batch, cfg, where: str, optimizer, scheduler) -> float:
    device = torch.device(cfg.device)
    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        loss = loss_fn(spec, model(**batch), batch["labels"])
    return optimizer_step(loss, model, optimizer, scheduler, cfg.grad_clip, where).item()


def summarize(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of every metric over seeds."""
    names = next(iter(per_seed.values())).keys()
    out = {}
    for name in names:
        values = [m[name] for m in per_seed.values()]
        out[name] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def save_model(path: Path, model: FrozenModel, arch: Architecture, num_labels: int, source: str) -> None:
    atomic_torch_save({"architecture": arch.to_dict(), "num_labels": num_labels, "encoder_source": source,
                       "encoder_config": model.encoder.config.to_dict(),
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def load_model(path: str | Path) -> FrozenModel:
    """One call from a saved ``model.pt`` to a ready plain model (eval mode; no NNI involved)."""
    from transformers import AutoModel
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "architecture" not in state:
            raise ValueError("no architecture record")
    except Exception as e:
        raise ValueError(f"{path} is not a saved retrain model (corrupt or truncated: {type(e).__name__}); "
                         "retrain again or use another model.pt") from None
    arch = Architecture.from_dict(state["architecture"])
    config_dict = dict(state["encoder_config"])
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    encoder = AutoModel.from_config(config)
    model = build_model(arch, encoder, state["num_labels"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def retrain_heads(heads: list[tuple[str, Architecture]], spec: TaskSpec, train: Encoded, dev: Encoded, pad_id: int,
                  cfg: RetrainConfig, out: Path, model: str | None, num_hidden_layers: int | None,
                  inherit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune every head for every seed (same loop and budget); finished seeds in ``out`` are kept.
    A head named in ``inherit`` starts from that trained supernet's weights (``freeze`` of its
    choices: encoder, conv blocks and head as the search scored them), not from the pretrained encoder.
    Writes per seed ``<head>/seed_<s>/result.json`` + TensorBoard, the best seed's ``<head>/model.pt``,
    and ``results.json`` / ``results.md`` in ``out``."""
    hidden = AutoConfig.from_pretrained(resolve_model(model)).hidden_size
    results: dict[str, Any] = {"task": spec.name, "metric": spec.main_metric, "encoder": encoder_id(model),
                               "num_hidden_layers": num_hidden_layers, "config": asdict(cfg), "heads": {}}
    for name, arch in heads:
        per_seed = {}
        for seed in cfg.seeds:
            seed_dir = out / name / f"seed_{seed}"
            done = seed_dir / "result.json"
            if done.is_file():  # a finished seed is kept (resume)
                per_seed[seed] = json.loads(done.read_text())
                continue
            torch.manual_seed(seed)  # the head's initial weights
            net = (inherit[name].freeze(arch.choices) if name in (inherit or {})
                   else build_model(arch, load_encoder(model, num_hidden_layers), spec.num_labels))
            ckpt = seed_dir / CHECKPOINT  # an unfinished seed continues from here (resume)
            r = fine_tune(net, spec, train, dev, pad_id, cfg, seed, seed_dir / "tensorboard", f"{name} seed {seed}",
                          checkpoint=ckpt)
            best = max((p["metrics"][spec.main_metric] for p in per_seed.values()), default=None)
            if distributed.is_main():
                costs = model_costs(net, dev, pad_id, cfg.device)
                r["parameters"], r["dev_latency_ms"] = costs["params"], costs["dev_latency_ms"]
            per_seed[seed] = r
            if distributed.is_main():
                # the model before the result: a kill in between reruns the seed instead of losing its model
                if best is None or r["metrics"][spec.main_metric] > best:  # keep the best seed's model
                    save_model(out / name / MODEL_FILE, net, arch, spec.num_labels, resolve_model(model))
                atomic_write_text(done, json.dumps(r, indent=2) + "\n")
                ckpt.unlink(missing_ok=True)
            distributed.barrier()
        head_params = sum(p.numel() for p in plain_head(arch.search_space, arch.choices, hidden, spec.num_labels)
                          .parameters())
        seeds = [r for r in per_seed.values() if "parameters" in r]
        results["heads"][name] = {"architecture": arch.to_dict(), "head_parameters": head_params,
                                  "init": "supernet" if name in (inherit or {}) else "pretrained encoder",
                                  "parameters": seeds[0]["parameters"] if seeds else None,
                                  "dev_latency_ms": statistics.median(r["dev_latency_ms"] for r in seeds)
                                  if seeds else None,
                                  "seeds": {str(s): r for s, r in per_seed.items()},
                                  "summary": summarize({s: r["metrics"] for s, r in per_seed.items()})}
    if not distributed.is_main():
        return results
    atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "results.md", f"# {spec.name}: dev metrics over seeds {list(cfg.seeds)}\n\n"
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
