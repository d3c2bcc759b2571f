"""Issue #30, measures 2-3 at small data: what the pair reads and LP-FT add under full fine-tuning.

The first ``--rows`` training rows, every weight of the encoder fine-tuned, at the budget of the committed
small full fine-tuning comparisons (``bench/results/compare-<task>-small-fullft/``: STS-B 20 epochs, MRPC 10,
lr 1e-4 encoder / 1e-3 head). Arms fixed in advance (nothing is selected), each one linear map on a read:
- ``linear (pooler [CLS], joint)``: BertForSequenceClassification's head, the comparisons' ``linear`` arm;
- the same with LP-FT (Kumar et al. 2022): the head first trains ``--warmup-epochs`` on the frozen encoder;
- ``pair: siamese`` / ``cosine`` / ``cosine_proj``: each text encoded alone by the shared encoder (two
  passes per pair), mean-pooled; a cosine's scale and bias start fitted on the pretrained cosines.
Same loop, seeds and dev set for every arm; paired differences against the first arm.

    GLUE_DIR=../shared/data/glue python bench/ablation_fullft.py --task stsb --out bench/results/ablation-fullft-small/stsb
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation_frozen import write_table  # noqa: E402
from retrain.comparison import paired  # noqa: E402
from retrain.run import RetrainConfig, RetrainPlan, retrain_heads  # noqa: E402
from supernet.data.sources import DataConfig  # noqa: E402
from supernet.data.splits import load_task  # noqa: E402
from supernet.nn.arch import Architecture  # noqa: E402
from supernet.nn.encoder import EncoderConfig, load_tokenizer  # noqa: E402
from supernet.nn.space import get_space  # noqa: E402

EPOCHS = {"stsb": 20.0, "mrpc": 10.0}  # the small full fine-tuning comparisons' budgets
BASE = "linear (pooler [CLS], joint)"
LPFT = "linear (pooler [CLS], joint) + LP-FT"


def arms(task: str, encoder: str) -> dict[str, Architecture]:
    space = get_space("pairs")
    pooler = space.reference()  # one linear layer on the pooler, joint encoding, last layer
    mean = {**pooler, "pool": "mean"}
    choices = {BASE: pooler, LPFT: pooler, "pair: siamese": {**mean, "pair": "siamese"},
               "pair: cosine": {**mean, "pair": "cosine"}, "pair: cosine_proj": {**mean, "pair": "cosine_proj"}}
    return {name: Architecture("pairs", space.canonical(c), encoder=encoder, task=task) for name, c in choices.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=sorted(EPOCHS))
    p.add_argument("--rows", type=int, default=500, help="the first N training rows")
    p.add_argument("--epochs", type=float, default=None, help="default: the task's small comparison budget")
    p.add_argument("--lr-encoder", type=float, default=1e-4)
    p.add_argument("--lr-head", type=float, default=1e-3)
    p.add_argument("--warmup-epochs", type=float, default=10.0, help="LP-FT's head-only epochs (LP-FT arm only)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data, encoder = DataConfig(task=args.task, max_train_samples=args.rows), EncoderConfig()
    task = load_task(data, load_tokenizer(None))
    heads = arms(task.spec.name, encoder.name)
    cfg = RetrainConfig(epochs=args.epochs or EPOCHS[args.task], lr_encoder=args.lr_encoder, lr_head=args.lr_head,
                        seeds=tuple(int(s) for s in args.seeds.split(",")))
    names = {f"arm{i}": name for i, name in enumerate(heads)}
    lpft = next(k for k, n in names.items() if n == LPFT)
    t0, cpu0 = time.time(), time.process_time()
    results = retrain_heads(list(zip(names, heads.values())), RetrainPlan(
        task, cfg, encoder, data, configs={lpft: replace(cfg, head_warmup_epochs=args.warmup_epochs)},
        eval_every=10 ** 9), args.out)  # dev read once, at the end (the per-epoch curve costs as much as training)
    metric = task.spec.main_metric
    per_seed = {names[k]: {s: r["metrics"] for s, r in h["seeds"].items()} for k, h in results["heads"].items()}
    main_of = lambda name: {s: m[metric] for s, m in per_seed[name].items()}
    rows = {}
    for name in heads:
        scores = main_of(name)
        rows[name] = {"mean": sum(scores.values()) / len(scores), "per_seed": per_seed[name],
                      "vs_linear": paired(scores, main_of(BASE)), "choices": dict(heads[name].choices)}
        if "accuracy" in next(iter(per_seed[name].values())) and metric != "accuracy":
            rows[name]["accuracy_mean"] = sum(m["accuracy"] for m in per_seed[name].values()) / len(scores)
    out = {"task": task.spec.name, "metric": metric, "rows_used": len(task.train), "budget": cfg.to_dict(),
           "lpft_warmup_epochs": args.warmup_epochs, "rows": rows, "seconds": time.time() - t0,
           "cpu_seconds": time.process_time() - cpu0,
           "command": "python bench/ablation_fullft.py " + " ".join(argv or sys.argv[1:])}
    (args.out / "ablation.json").write_text(json.dumps(out, indent=2) + "\n")
    acc = any("accuracy_mean" in r for r in rows.values())
    write_table(args.out, f"arm ({task.spec.name}, first {args.rows} rows, full fine-tuning, dev {metric}, seeds "
                f"{args.seeds})", BASE, rows, "vs_linear", ("accuracy", "accuracy_mean") if acc else None)
    return out


if __name__ == "__main__":
    main()
