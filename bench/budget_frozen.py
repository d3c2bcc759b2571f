"""The frozen-encoder regime's budget: both linear heads (pooler [CLS] and mean pooling, one linear
layer each) on the frozen all-MiniLM-L6-v2, per task, head learning rate and epochs, dev metrics after
every epoch. The encoder's outputs are computed once per task and shared by every run. Like
``budget_sweep.sh`` it reads the dev set, for the linear heads only, to find where they plateau; the
budget it picks is shared by every arm.

    python bench/budget_frozen.py --tasks mrpc,cola,stsb --out bench/results/budget-frozen
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrain.run import RetrainConfig, RetrainPlan, retrain_heads  # noqa: E402
from supernet.core.files import atomic_write_json  # noqa: E402
from supernet.data.sources import DataConfig
from supernet.data.splits import load_task  # noqa: E402
from supernet.nn.arch import linear_architecture  # noqa: E402
from supernet.nn.encoder import EncoderConfig, load_tokenizer  # noqa: E402
from supernet.nn.reading import Needs  # noqa: E402
from supernet.train.frozen import frozen_caches  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="mrpc,cola,stsb")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="head learning rates")
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    encoder, table = EncoderConfig(), {}
    for name in args.tasks.split(","):
        data = DataConfig(task=name, max_train_samples=args.max_train_samples)
        task = load_task(data, load_tokenizer(None))
        caches = frozen_caches(encoder.load(), (task.train, task.dev), task.pad_id, Needs(), "cpu")
        heads = [(h, linear_architecture(task.spec.name, encoder.name, task.spec.label_names, pool))
                 for h, pool in (("linear", "pooler"), ("linear_mean", "mean"))]
        for lr in args.lrs.split(","):
            cfg = RetrainConfig(epochs=args.epochs, lr_head=float(lr), seeds=(args.seed,), freeze_encoder=True,
                                linear_fit="budget")  # a curve over epochs, not one converged fit
            res = retrain_heads(heads, RetrainPlan(task, cfg, encoder, data, caches=caches),
                                Path(args.out) / f"{name}-lr{lr}")
            for h, r in res["heads"].items():
                curve = [e[task.spec.main_metric] for e in r["seeds"][str(args.seed)]["history"]]
                table[f"{name} {h} lr_head={lr}"] = curve
                print(f"{name} {h} lr_head={lr}: " + " ".join(f"{v:.3f}" for v in curve), flush=True)
    atomic_write_json(Path(args.out) / "curves.json", {"command": "python bench/budget_frozen.py "
                                                       + " ".join(sys.argv[1:] if argv is None else argv),
                                                       "metric_per_epoch": table})
    return table


if __name__ == "__main__":
    main()
