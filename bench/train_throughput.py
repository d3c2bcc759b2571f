"""P2: supernet training throughput vs plain fine-tuning with a linear head, same encoder, batch, precision.

Both arms run the real code (``supernet.train.train_supernet`` and ``retrain.run.fine_tune``) on
the same MRPC training rows, the same length-bucketed batches and the same settings. Each arm is
timed at two step counts and throughput is the slope, sequences / (t(N2) - t(N1)) * (N2 - N1),
so the fixed costs (setup, the final dev evaluation, the final checkpoint) cancel. The arms
alternate, ``--repeats`` times, and the ratio is the median of the per-repeat ratios.

    python bench/train_throughput.py --num-hidden-layers 2 --repeats 5

``--mixed-views`` (a pair space under fine-tuning) adds a third arm, the supernet as it was before its
steps shared one view of the pair (``supernet.train.supernet.share_view``): a step whose heads read
the pair jointly and apart ran three encoder forwards.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from retrain.run import RetrainConfig, fine_tune
from supernet.data.encoded import encode
from supernet.data.sources import TRAIN, DataConfig, load_splits
from supernet.nn.arch import linear_architecture
from supernet.nn.encoder import load_encoder, load_tokenizer
from supernet.nn.model import build_model
from supernet.nn.space import get_space
from supernet.nn.supernet import HeadSupernet
import supernet.train.supernet as T
from supernet.train.supernet import TrainConfig, train_supernet


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue-dir", default=None, help="default: $GLUE_DIR")
    p.add_argument("--task", default="mrpc")
    p.add_argument("--model", default=None, help="encoder dir (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--num-hidden-layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--heads-per-step", type=int, default=4)
    p.add_argument("--space", default="paper", help="the supernet's space (mlp: the MLP-only heads)")
    p.add_argument("--steps", default="8,40", help="N1,N2: the two step counts of the slope")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--mixed-views", action="store_true",
                   help="also time the supernet with each head's own view of a pair (before share_view)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def one_repeat(r: int, rates, plain, supernet, mixed_views: bool) -> dict:
    """One repeat's throughputs: plain fine-tuning, the supernet, and (``mixed_views``) the supernet whose
    heads keep their own view of a pair."""
    (pw, pc), (sw, sc) = rates(plain), rates(supernet)
    row = {"plain_seq_per_s": pw, "supernet_seq_per_s": sw, "ratio": sw / pw,
           "plain_seq_per_cpu_s": pc, "supernet_seq_per_cpu_s": sc, "cpu_ratio": sc / pc}
    print(f"repeat {r + 1}: plain {pw:.1f} seq/s, supernet {sw:.1f} seq/s, ratio {sw / pw:.3f} "
          f"(per CPU second: {pc:.1f} vs {sc:.1f}, ratio {sc / pc:.3f})", flush=True)
    if mixed_views:
        mw, mc = rates(lambda n: supernet(n, mixed=True))
        row.update(mixed_seq_per_s=mw, mixed_seq_per_cpu_s=mc, mixed_cpu_ratio=mc / pc, shared_over_mixed_cpu=sc / mc)
        print(f"  mixed views: {mw:.1f} seq/s, per CPU second {mc:.1f}; shared / mixed throughput per CPU "
              f"second {sc / mc:.3f}", flush=True)
    return row


def main(argv=None) -> dict:
    args = parse_args(argv)
    n1, n2 = (int(s) for s in args.steps.split(","))
    data_cfg = DataConfig(task=args.task, glue_dir=args.glue_dir, max_eval_samples=32)
    spec, splits = load_splits(data_cfg)
    tok = load_tokenizer(args.model)
    train = encode(splits[TRAIN], tok, data_cfg.max_length, data_cfg.cache_dir)
    dev = encode(splits[spec.dev_splits[0]], tok, data_cfg.max_length, data_cfg.cache_dir)
    pad = tok.pad_token_id or 0
    common = dict(batch_size=args.batch_size, device=args.device, precision=args.precision)

    def plain(steps: int) -> float:
        torch.manual_seed(0)
        model = build_model(linear_architecture(spec.name, ""), load_encoder(args.model, args.num_hidden_layers),
                            spec.num_labels)
        t, c = time.perf_counter(), time.process_time()
        fine_tune(model, spec, train, dev, pad, RetrainConfig(max_steps=steps, seeds=(0,), **common), 0, None,
                  "plain", eval_every=10**9)
        return time.perf_counter() - t, time.process_time() - c

    def supernet(steps: int, mixed: bool = False) -> float:
        torch.manual_seed(0)
        shared = T.share_view
        if mixed:  # every head keeps its own pair read, as before share_view
            T.share_view = lambda first, head: head
        net = HeadSupernet(load_encoder(args.model, args.num_hidden_layers), get_space(args.space), spec.num_labels)
        cfg = TrainConfig(space=args.space, max_steps=steps, heads_per_step=args.heads_per_step, eval_every=10**9,
                          checkpoint_every=10**9, num_probes=1, **common)
        with tempfile.TemporaryDirectory() as d:
            t, c = time.perf_counter(), time.process_time()
            try:
                train_supernet(net, spec, train, dev, pad, cfg, Path(d))
            finally:
                T.share_view = shared
            return time.perf_counter() - t, time.process_time() - c

    def rates(run) -> tuple[float, float]:
        """Sequences per wall second and per CPU second (CPU time is less disturbed by other tenants)."""
        (w1, c1), (w2, c2) = run(n1), run(n2)
        seqs = args.batch_size * (n2 - n1)
        return seqs / (w2 - w1), seqs / (c2 - c1)

    rows = [one_repeat(r, rates, plain, supernet, args.mixed_views) for r in range(args.repeats)]
    out = {"ratio_median": statistics.median(x["ratio"] for x in rows),
           "cpu_ratio_median": statistics.median(x["cpu_ratio"] for x in rows), "repeats": rows,
           **({"shared_over_mixed_cpu_median": statistics.median(x["shared_over_mixed_cpu"] for x in rows)}
              if args.mixed_views else {}),
           "setup": {**vars(args), "threads": torch.get_num_threads(), "machine": platform.platform(),
                     "cpu": platform.processor(), "date": time.strftime("%Y-%m-%d")}}
    print(f"P2 supernet/plain throughput ratio (median of {args.repeats}): wall {out['ratio_median']:.3f}, "
          f"CPU time {out['cpu_ratio_median']:.3f} "
          f"(target >= 0.95); space {args.space}, {args.heads_per_step} heads per step, batch {args.batch_size}, "
          f"{args.num_hidden_layers or 6}-layer encoder, {args.precision}, {args.device}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
