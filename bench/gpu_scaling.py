"""Single-GPU throughput of every phase, and the back-of-envelope it gives for 1-8 GPUs (issue #8).

    # on the GPU machine (BERT-base shape, random weights: the time of a step does not depend on their values)
    python bench/gpu_scaling.py measure --encoder bert-base --device cuda --precision bf16 --json gpu.json
    # anywhere: the projection table from those measurements
    python bench/gpu_scaling.py table gpu.json --epochs 3

``measure`` runs the real code on each task's real rows: ``retrain.run.fine_tune`` with a linear head
(one BO-Hyperband trial, or the baseline) and ``supernet.train.train_supernet`` (4 sampled heads per
step), each timed at two step counts so that setup and the final evaluation cancel (throughput is
the slope), at per-GPU batch sizes 32, 16, 8 and 4: under ``torchrun`` with the global batch kept at
32, each of N GPUs runs a batch of 32/N. Then the search phase: the encoder outputs of the dev set
(once) and candidates scored per minute on them.

``table`` projects the wall time of each phase on N GPUs of one node from those numbers. Compute
per step is the measured time at the per-GPU batch; gradient all-reduce is NOT measured (one GPU):
it is estimated for a ring all-reduce of the fp32 gradients at ``--busbw`` GB/s (an assumption,
printed with the table), and the projection gives the range between full overlap with the backward
pass (DDP's bucketing aims at it) and none.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from retrain.run import RetrainConfig, fine_tune
from supernet.data.encoded import encode
from supernet.data.sources import TRAIN, DataConfig, load_splits
from supernet.nn.arch import linear_architecture
from supernet.nn.encoder import load_encoder, load_tokenizer, resolve_model
from supernet.nn.model import build_model
from supernet.nn.space import get_space
from supernet.nn.supernet import HeadSupernet
from supernet.scoring.candidates import save_search_state
from supernet.train.frozen import supernet_cache
from supernet.train.supernet import TrainConfig, train_supernet

# Shapes of the encoders the table speaks of (BertConfig keys); the weights are random.
ENCODERS = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# GLUE training-set sizes (rows) for the projection; the measured tasks give the per-row speed.
GLUE_TRAIN_ROWS = {"sst2": 67349, "mrpc": 3668, "cola": 8551, "stsb": 5749, "qnli": 104743, "qqp": 363846,
                   "mnli": 392702}
# Tasks not on disk here are projected at the speed of a measured task of the same kind.
PROXY = {"qnli": "mrpc", "qqp": "mrpc", "mnli": "mrpc"}


def random_encoder_dir(name: str, out: Path, tokenizer_dir: str | None) -> Path:
    """A model directory with ``name``'s shape, random weights and the packaged (uncased BERT) tokenizer."""
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, max_position_embeddings=512, **ENCODERS[name])).save_pretrained(out)
    src = Path(resolve_model(tokenizer_dir))
    for f in TOKENIZER_FILES:
        if (src / f).exists():
            shutil.copy(src / f, out / f)
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def slope(run, n1: int, n2: int, batch: int) -> float:
    """Sequences per second between n1 and n2 steps (fixed costs cancel)."""
    t1, t2 = run(n1), run(n2)
    return batch * (n2 - n1) / (t2 - t1)


def measure_task(args, task: str, model_dir: str, batches: list[int]) -> dict:
    data_cfg = DataConfig(task=task, glue_dir=args.glue_dir)
    spec, splits = load_splits(data_cfg)
    tok = load_tokenizer(model_dir)
    pad = tok.pad_token_id or 0
    train = encode(splits[TRAIN], tok, data_cfg.max_length, None)
    full_dev = encode(splits[spec.dev_splits[0]], tok, data_cfg.max_length, None)
    # the fine-tunes' final evaluation: a few rows, so that it costs little beside the timed steps
    dev_small = encode(splits[spec.dev_splits[0]].head(64), tok, data_cfg.max_length, None)
    common = dict(device=args.device, precision=args.precision)

    def plain(b: int):
        def run(steps: int) -> float:
            torch.manual_seed(0)
            model = build_model(linear_architecture(spec.name, ""), load_encoder(model_dir), spec.num_labels)
            sync(args.device)
            t = time.perf_counter()
            fine_tune(model, spec, train, dev_small, pad, RetrainConfig(max_steps=steps, seeds=(0,), batch_size=b,
                                                                          **common), 0, None, "plain",
                      eval_every=10**9)
            sync(args.device)
            return time.perf_counter() - t
        return run

    def supernet(b: int):
        def run(steps: int) -> float:
            torch.manual_seed(0)
            net = HeadSupernet(load_encoder(model_dir), get_space(args.space), spec.num_labels)
            cfg = TrainConfig(max_steps=steps, heads_per_step=args.heads_per_step, eval_every=10**9,
                              checkpoint_every=10**9, num_probes=1, batch_size=b, **common)
            with tempfile.TemporaryDirectory() as d:
                sync(args.device)
                t = time.perf_counter()
                train_supernet(net, spec, train, dev_small, pad, cfg, Path(d))
                sync(args.device)
                return time.perf_counter() - t
        return run

    out: dict = {"train_rows": len(train), "dev_rows": len(full_dev), "num_labels": spec.num_labels,
                 "mean_tokens": float(train.lengths.mean()), "plain_seq_per_s": {}, "supernet_seq_per_s": {}}
    n1, n2 = args.steps
    # one untimed run of each arm first: the process's first fine-tune pays one-off costs (CUDA
    # context, kernel selection, file cache) that would otherwise shorten t(n2) - t(n1) of repeat 1
    plain(batches[0])(n1)
    supernet(batches[0])(n1)
    for b in batches:
        out["plain_seq_per_s"][b] = statistics.median(slope(plain(b), n1, n2, b) for _ in range(args.repeats))
        out["supernet_seq_per_s"][b] = statistics.median(slope(supernet(b), n1, n2, b) for _ in range(args.repeats))
        print(f"{task} batch {b}: linear fine-tune {out['plain_seq_per_s'][b]:,.0f} seq/s, "
              f"supernet {out['supernet_seq_per_s'][b]:,.0f} seq/s", flush=True)

    torch.manual_seed(0)
    space = get_space(args.space)
    net = HeadSupernet(load_encoder(model_dir), space, spec.num_labels).to(args.device)
    out["encoder_params"] = sum(p.numel() for p in net.encoder.parameters())
    out["head_supernet_params"] = sum(p.numel() for p in net.head.parameters())
    calib = encode(splits[TRAIN].head(512), tok, data_cfg.max_length, None)
    supernet_cache(net, calib, pad, args.device)  # warm-up
    sync(args.device)
    t = time.perf_counter()
    feats = supernet_cache(net, full_dev, pad, args.device)
    sync(args.device)
    out["features_seq_per_s"] = len(full_dev) / (time.perf_counter() - t)
    cal = supernet_cache(net, calib, pad, args.device)
    with tempfile.TemporaryDirectory() as d:
        state = Path(d) / "search_state.pt"
        net.cpu()
        save_search_state(state, net.head, spec.metrics, {k: v.cpu() for k, v in feats.items()}, full_dev.labels,
                          {k: v.cpu() for k, v in cal.items()})
        from search_throughput import scoring_per_minute  # a sibling script (here on sys.path[0])
        out["scoring_per_minute"] = scoring_per_minute(state, space, args.candidates)
    print(f"{task}: dev encoder outputs {out['features_seq_per_s']:,.0f} seq/s; scoring "
          f"{out['scoring_per_minute']:,.0f} candidates/min (on the CPU, as in a search)", flush=True)
    return out


def measure(args) -> dict:
    with tempfile.TemporaryDirectory() as d:
        if args.encoder in ENCODERS:
            model_dir = str(random_encoder_dir(args.encoder, Path(d) / args.encoder, args.tokenizer))
        else:
            model_dir = args.encoder
        result = {"setup": {**{k: v for k, v in vars(args).items() if k != "func"},
                            "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else
                            platform.processor(), "torch": torch.__version__, "machine": platform.platform(),
                            "date": time.strftime("%Y-%m-%d")}, "tasks": {}}
        for task in args.tasks:
            batches = args.batches if task in args.sweep_tasks else [32]
            result["tasks"][task] = measure_task(args, task, model_dir, batches)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def allreduce_s(params: int, gpus: int, busbw_gbs: float) -> float:
    """Ring all-reduce of fp32 gradients: each GPU sends and receives 2 (N-1)/N of the bytes."""
    return 0.0 if gpus == 1 else 2 * (gpus - 1) / gpus * 4 * params / (busbw_gbs * 1e9)


def phase_minutes(rates: dict, params: int, rows: int, epochs: float, gpus: int, global_batch: int,
                  busbw: float) -> tuple[float, float]:
    """(full overlap, no overlap) minutes of fine-tuning ``rows`` x ``epochs`` on ``gpus`` GPUs."""
    per_gpu = global_batch // gpus
    rate = rates.get(per_gpu) or rates.get(str(per_gpu))
    if rate is None:
        return math.nan, math.nan
    steps = epochs * rows / global_batch
    compute, comm = per_gpu / rate, allreduce_s(params, gpus, busbw)
    return steps * max(compute, comm) / 60, steps * (compute + comm) / 60


def table(args) -> None:
    runs = [json.loads(Path(f).read_text()) for f in args.json]
    s, tasks = runs[0]["setup"], {}
    for run in runs:  # several measure runs of one setup: their rates are merged per task
        for t, r in run["tasks"].items():
            merged = tasks.setdefault(t, r)
            for key in ("plain_seq_per_s", "supernet_seq_per_s"):
                merged[key] = {**merged[key], **r[key]}
    print(f"# {s['encoder']} on {s['device_name']} ({s['precision']}, torch {s['torch']}, {s['date']}); "
          f"{args.epochs:g} epochs; all-reduce at an assumed {args.busbw:g} GB/s bus bandwidth\n")
    print("## Measured on one GPU (sequences/s; batch 32)\n")
    print("| task | train rows | mean tokens | linear fine-tune | supernet (4 heads/step) | supernet/linear | "
          "dev encoder outputs | candidates scored/min |")
    print("|---|---|---|---|---|---|---|---|")
    for t, r in tasks.items():
        p, n = r["plain_seq_per_s"]["32"], r["supernet_seq_per_s"]["32"]
        print(f"| {t} | {r['train_rows']:,} | {r['mean_tokens']:.1f} | {p:,.0f} | {n:,.0f} | {n / p:.2f} | "
              f"{r['features_seq_per_s']:,.0f} | {r['scoring_per_minute']:,.0f} |")
    sweep = [t for t, r in tasks.items() if len(r["plain_seq_per_s"]) > 1]
    for t in sweep:
        r = tasks[t]
        print(f"\n{t}, per-GPU batch → seq/s: linear " +
              ", ".join(f"{b}: {v:,.0f}" for b, v in r["plain_seq_per_s"].items()) + "; supernet " +
              ", ".join(f"{b}: {v:,.0f}" for b, v in r["supernet_seq_per_s"].items()))
    gpus = [int(g) for g in args.gpus.split(",")]
    search_rows = []
    for title, per_gpu_of in (("global batch 32: each GPU runs 32/N rows a step (same optimisation as 1 GPU)",
                               lambda g: 32 // g),
                              ("per-GPU batch 32: global batch 32 N, N times fewer steps (learning rate to re-tune)",
                               lambda g: 32)):
        print(f"\n## Projected minutes on N GPUs of one node, {title}\n\nRange: all-reduce fully hidden behind the "
              f"backward pass ... not hidden.\n")
        print("| task (train rows) | phase | " + " | ".join(f"{g} GPU" for g in gpus) + " |")
        print("|---|---|" + "---|" * len(gpus))
        for task, rows in GLUE_TRAIN_ROWS.items():
            src = task if task in tasks else PROXY.get(task)
            if src not in tasks:
                continue
            r = tasks[src]
            label = f"{task} ({rows:,})" + ("" if src == task else f" at {src}'s speed")
            supernet_params = r["encoder_params"] + r["head_supernet_params"]
            for phase, key, params in (("supernet", "supernet_seq_per_s", supernet_params),
                                       ("one linear fine-tune", "plain_seq_per_s", r["encoder_params"])):
                rates = {int(b): v for b, v in r[key].items()}
                cells = []
                for g in gpus:
                    lo, hi = phase_minutes(rates, params, rows, args.epochs, g, per_gpu_of(g) * g, args.busbw)
                    lo_s, hi_s = f"{lo:.1f}", f"{hi:.1f}"
                    cells.append("n/a" if math.isnan(lo) else lo_s if lo_s == hi_s else f"{lo_s}–{hi_s}")
                print(f"| {label} | {phase} | " + " | ".join(cells) + " |")
            if src == task and (task, r["dev_rows"], r) not in search_rows:
                search_rows.append((task, r["dev_rows"], r))
    print("\n## Search (after the supernet; needs no more than one GPU)\n")
    print(f"| task | dev rows | encoder outputs once (s) | {args.trials} candidates scored (s) |")
    print("|---|---|---|---|")
    for task, dev_rows, r in search_rows:
        print(f"| {task} | {dev_rows:,} | {dev_rows / r['features_seq_per_s']:.1f} | "
              f"{60 * args.trials / r['scoring_per_minute']:.1f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(required=True)
    m = sub.add_parser("measure", help="measure single-device throughput (run on the GPU)")
    m.add_argument("--encoder", default="bert-base", help=f"{sorted(ENCODERS)} (random weights) or a model dir")
    m.add_argument("--tokenizer", default=None, help="dir with the tokenizer files (default: the packaged MiniLM)")
    m.add_argument("--glue-dir", default=None, help="default: $GLUE_DIR")
    m.add_argument("--tasks", type=lambda s: s.split(","), default=["sst2", "mrpc", "cola", "stsb"])
    m.add_argument("--sweep-tasks", type=lambda s: s.split(","), default=["sst2", "mrpc"],
                   help="tasks measured at every --batches size (the others at 32 only)")
    m.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[32, 16, 8, 4],
                   help="per-GPU batch sizes of the sweep")
    m.add_argument("--space", default="paper")
    m.add_argument("--heads-per-step", type=int, default=4)
    m.add_argument("--steps", type=lambda s: tuple(int(x) for x in s.split(",")), default=(10, 60))
    m.add_argument("--repeats", type=int, default=1)
    m.add_argument("--candidates", type=int, default=300)
    m.add_argument("--device", default="cuda")
    m.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    m.add_argument("--json", default=None)
    m.set_defaults(func=measure)
    t = sub.add_parser("table", help="print the projection from a measure JSON")
    t.add_argument("json", nargs="+", help="measure JSON files (merged)")
    t.add_argument("--epochs", type=float, default=3.0)
    t.add_argument("--gpus", default="1,2,4,8")
    t.add_argument("--busbw", type=float, default=350.0,
                   help="all-reduce bus bandwidth, GB/s (assumed; NVLink-class; ~20-50 across nodes)")
    t.add_argument("--trials", type=int, default=1000, help="candidates scored in the search")
    t.set_defaults(func=table)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
