"""Command line of ``python -m retrain``."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from supernet.arch import Architecture, atomic_write_text
from supernet.cli import add_data_arguments, data_config_from_args
from supernet.data import TRAIN, encode, load_splits
from supernet.encoder import encoder_id, load_encoder, load_tokenizer, resolve_model
from supernet.model import plain_head

from .run import MODEL_FILE, RetrainConfig, build_model, fine_tune, linear_architecture, save_model, summarize

RESULTS = "results.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m retrain", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Fine-tune the plain model of an exported architecture (pretrained encoder + fresh head) "
                    "for several seeds and report the task's official dev metrics, mean ± std; optionally the "
                    "linear-head baseline with the same loop and budget.")
    p.add_argument("architecture", help="an architecture JSON (arch_top1.json of a search run), or 'linear'")
    p.add_argument("--baseline", choices=("none", "linear"), default="none",
                   help="also retrain the standard linear head on the pooler's [CLS] vector")
    add_data_arguments(p, task_default=None)
    t = p.add_argument_group("fine-tuning (the same for every head)")
    t.add_argument("--model", default=None, help="encoder (default: the one the architecture was searched on)")
    t.add_argument("--num-hidden-layers", type=int, default=None, help="keep only the first N encoder layers")
    t.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    t.add_argument("--epochs", type=float, default=3.0)
    t.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr-encoder", type=float, default=5e-5)
    t.add_argument("--lr-head", type=float, default=1e-3)
    t.add_argument("--device", default="cpu")
    t.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", default=None, help="default: logs/retrain-<task>-<time>")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    o.add_argument("--resume", action="store_true", help="keep the seeds already finished in --output-dir")
    return p


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None


def resolve_heads(args) -> tuple[str, list[tuple[str, Architecture]]]:
    """(task, [(name, architecture)]); refuses a task or encoder that does not match the record."""
    if args.architecture == "linear":
        task = args.task or "mrpc"
        heads = []
    else:
        arch = Architecture.load(args.architecture)
        if args.task and arch.task and args.task != arch.task:
            raise ValueError(f"{args.architecture} was searched for task {arch.task!r}, not --task {args.task!r}; "
                             "retrain it on its own task or search again")
        task = args.task or arch.task
        if not task:
            raise ValueError(f"{args.architecture} names no task; pass --task")
        if args.model and arch.encoder and encoder_id(args.model) != arch.encoder:
            raise ValueError(f"{args.architecture} was searched on encoder {arch.encoder!r}, not "
                             f"--model {args.model!r}; drop --model or search again on that encoder")
        heads = [(Path(args.architecture).stem, arch)]
    if args.architecture == "linear" or args.baseline == "linear":
        heads.append(("linear", linear_architecture(task, encoder_id(args.model))))
    return task, heads


def prepare_output(args, task: str) -> Path:
    out = Path(args.output_dir or f"logs/retrain-{task}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()) and not args.resume:
        if not args.overwrite:
            raise FileExistsError(f"{out} already holds results; --resume keeps its finished seeds, "
                                  "--overwrite replaces it, or pick another --output-dir")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def markdown_table(results: dict[str, Any], metrics: tuple[str, ...]) -> str:
    lines = ["| head | " + " | ".join(f"dev {m}" for m in metrics) + " | head params | seconds/seed |",
             "|---|" + "---|" * (len(metrics) + 2)]
    for name, r in results["heads"].items():
        cells = [f"{r['summary'][m]['mean']:.4f} ± {r['summary'][m]['std']:.4f}" for m in metrics]
        seconds = sum(s["seconds"] for s in r["seeds"].values()) / len(r["seeds"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['head_parameters']:,} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def run(args) -> dict[str, Any]:
    cfg = RetrainConfig(seeds=_seeds(args.seeds), epochs=args.epochs, max_steps=args.max_steps,
                        batch_size=args.batch_size, lr_encoder=args.lr_encoder, lr_head=args.lr_head,
                        device=args.device, precision=args.precision)
    task, heads = resolve_heads(args)
    data_cfg = data_config_from_args(args, task)
    spec, splits = load_splits(data_cfg)
    out = prepare_output(args, spec.name)
    print(f"output directory: {out}", flush=True)
    tokenizer = load_tokenizer(args.model)
    train = encode(splits[TRAIN], tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    dev_split = spec.dev_splits[0] if data_cfg.train_file is None else "validation"
    dev = encode(splits[dev_split], tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    pad_id = tokenizer.pad_token_id or 0
    hidden = AutoConfig.from_pretrained(resolve_model(args.model)).hidden_size
    results: dict[str, Any] = {"task": spec.name, "metric": spec.main_metric, "encoder": encoder_id(args.model),
                               "num_hidden_layers": args.num_hidden_layers, "config": asdict(cfg), "heads": {}}
    for name, arch in heads:
        per_seed, best = {}, None
        for seed in cfg.seeds:
            seed_dir = out / name / f"seed_{seed}"
            done = seed_dir / "result.json"
            if done.is_file():  # --resume: a finished seed is kept
                per_seed[seed] = json.loads(done.read_text())
                continue
            torch.manual_seed(seed)  # the head's initial weights
            model = build_model(arch, load_encoder(args.model, args.num_hidden_layers), spec.num_labels)
            r = fine_tune(model, spec, train, dev, pad_id, cfg, seed, seed_dir / "tensorboard", f"{name} seed {seed}")
            per_seed[seed] = r
            atomic_write_text(done, json.dumps(r, indent=2) + "\n")
            if best is None or r["metrics"][spec.main_metric] > best:  # keep the best seed's model
                best = r["metrics"][spec.main_metric]
                save_model(out / name / MODEL_FILE, model, arch, spec.num_labels, resolve_model(args.model))
        head_params = sum(p.numel() for p in plain_head(arch.search_space, arch.choices, hidden, spec.num_labels)
                          .parameters())
        results["heads"][name] = {"architecture": arch.to_dict(), "head_parameters": head_params,
                                  "seeds": {str(s): r for s, r in per_seed.items()},
                                  "summary": summarize({s: r["metrics"] for s, r in per_seed.items()})}
    atomic_write_text(out / RESULTS, json.dumps(results, indent=2) + "\n")
    table = markdown_table(results, spec.metrics)
    atomic_write_text(out / "results.md", f"# {spec.name}: dev metrics over seeds {list(cfg.seeds)}\n\n" + table)
    print(table, end="")
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
