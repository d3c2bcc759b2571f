"""Command line of ``python -m retrain``."""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from supernet import distributed
from supernet.arch import Architecture
from supernet.cli import add_data_arguments, add_fine_tune_arguments, claim_output_dir, data_config_from_args, run_cli
from supernet.data import TRAIN, encode, load_splits
from supernet.encoder import encoder_id, load_tokenizer
from supernet.tasks import TASKS

from .run import RetrainConfig, linear_architecture, markdown_table, retrain_heads



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m retrain", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Fine-tune the plain model of an exported architecture (pretrained encoder + fresh head) "
                    "for several seeds and report the task's official dev metrics, mean ± std; optionally the "
                    "linear-head baseline with the same loop and budget.")
    p.add_argument("architecture", help="an architecture JSON (arch_top1.json of a search run), or 'linear'")
    p.add_argument("--baseline", choices=("none", "linear"), default="none",
                   help="also retrain the standard linear head on the pooler's [CLS] vector")
    p.add_argument("--init-from", default=None, metavar="RUN_DIR",
                   help="start the architecture from the trained supernet of this search run (inherited encoder, "
                        "conv blocks and head) instead of the pretrained encoder and a fresh head; the linear "
                        "baseline still starts from the pretrained encoder")
    add_data_arguments(p, task_default=None)
    add_retrain_arguments(p.add_argument_group("fine-tuning (the same for every head)"),
                            "encoder (default: the one the architecture was searched on)")
    o = p.add_argument_group("output")
    o.add_argument("--output-dir", default=None, help="default: logs/retrain-<task>-<time>")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    o.add_argument("--resume", action="store_true",
                   help="continue in --output-dir: finished seeds are kept, an unfinished one continues "
                        "from its last checkpoint")
    return p


def add_retrain_arguments(g, model_help: str) -> None:
    """The shared fine-tuning flags with retrain's defaults, plus the seeds."""
    add_fine_tune_arguments(g, model_help, 3.0,
                            "steps between checkpoints of an unfinished seed (--resume continues from the last)")
    g.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")


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


def check_label_count(heads: list[tuple[str, Architecture]], spec) -> None:
    """A head searched on a GLUE task is refused on data with another number of classes."""
    for name, arch in heads:
        if arch.task in TASKS and TASKS[arch.task].num_labels != spec.num_labels:
            raise ValueError(f"{name} was searched for {arch.task} ({TASKS[arch.task].num_labels} labels) but the "
                             f"data has {spec.num_labels}; check --num-labels or search again on this data")


def check_encoder_depth(heads: list[tuple[str, Architecture]], model: str | None, num_hidden_layers: int | None) -> None:
    """A backbone architecture names a choice per encoder layer: the encoder must have that many."""
    from transformers import AutoConfig

    from supernet.encoder import resolve_model
    backbone = [(n, a) for n, a in heads if a.search_space.has_backbone]
    if not backbone:
        return
    layers = num_hidden_layers or AutoConfig.from_pretrained(resolve_model(model)).num_hidden_layers
    for name, arch in backbone:
        if arch.search_space.encoder_layers != layers:
            raise ValueError(f"{name} chooses {arch.search_space.encoder_layers} encoder layers (space "
                             f"{arch.space!r}) and the encoder has {layers}; pass the --num-hidden-layers "
                             "it was searched with")


def inherited_supernet(run_dir: str, heads: list[tuple[str, Architecture]], spec) -> dict[str, Any]:
    """{architecture head name: the run's trained supernet}, after checking they belong together."""
    from supernet.search import load_supernet
    name, arch = heads[0]
    if name == "linear":
        raise ValueError("--init-from applies to a searched architecture; give its JSON instead of 'linear'")
    supernet = load_supernet(run_dir)
    if supernet.space.name != arch.space:
        raise ValueError(f"--init-from {run_dir}: its supernet is space {supernet.space.name!r}, and {name} is "
                         f"space {arch.space!r}; pass the run that exported it")
    if supernet.num_labels != spec.num_labels:
        raise ValueError(f"--init-from {run_dir}: its supernet has {supernet.num_labels} labels, and the task "
                         f"{spec.num_labels}")
    return {name: supernet}


def prepare_data(data_cfg, model: str | None):
    """(task spec, encoded train split, encoded dev split, pad id) for ``data_cfg``."""
    spec, splits = load_splits(data_cfg)
    tokenizer = load_tokenizer(model)
    train = encode(splits[TRAIN], tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    dev_split = spec.dev_splits[0] if data_cfg.train_file is None else "validation"
    dev = encode(splits[dev_split], tokenizer, data_cfg.max_length, data_cfg.cache_dir)
    return spec, train, dev, tokenizer.pad_token_id or 0


def fine_tune_config(args) -> RetrainConfig:
    return RetrainConfig(seeds=_seeds(args.seeds), epochs=args.epochs, max_steps=args.max_steps,
                         batch_size=args.batch_size, lr_encoder=args.lr_encoder, lr_head=args.lr_head,
                         device=args.device, precision=args.precision, checkpoint_every=args.checkpoint_every)


def run(args) -> dict[str, Any]:
    cfg = fine_tune_config(args)
    cfg = replace(cfg, device=distributed.init_from_env(cfg.device))  # under torchrun: data parallel
    main = distributed.is_main()
    task, heads = resolve_heads(args)
    data_cfg = data_config_from_args(args, task)
    spec, train, dev, pad_id = prepare_data(data_cfg, args.model)
    check_label_count(heads, spec)
    check_encoder_depth(heads, args.model, args.num_hidden_layers)
    inherit = inherited_supernet(args.init_from, heads, spec) if args.init_from else None
    out = None
    if main:
        out = claim_output_dir(Path(args.output_dir or f"logs/retrain-{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"),
                               args.overwrite, "results", "--resume keeps its finished seeds", keep=args.resume)
        print(f"output directory: {out}", flush=True)
    out = distributed.broadcast(out)
    results = retrain_heads(heads, spec, train, dev, pad_id, cfg, out, args.model, args.num_hidden_layers, inherit)
    if main:
        print(markdown_table(results, spec.metrics), end="")
    return results


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)
