"""Issue #30, ablation: what each new read adds on its own, with a frozen encoder.

One linear layer (depth 0) on mean pooling, changing one read at a time from the standard head's
(joint encoding, last layer): ``pair`` siamese / cosine (pair tasks), ``layers`` mean4 / max3 /
scalar_mix; plus the max3 read with [CLS] pooling (MaxPoolBERT's head). Every arm is fixed in advance
(nothing is selected), retrained with the same loop, budget and report seeds on the encoder's
outputs computed once, and reported on the official dev set.

    GLUE_DIR=../shared/data/glue python bench/ablation_frozen.py --task stsb --out bench/results/ablation-frozen/stsb
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrain.comparison import paired  # noqa: E402
from retrain.run import RetrainConfig, RetrainPlan, retrain_heads  # noqa: E402
from supernet.data.sources import DataConfig  # noqa: E402
from supernet.data.splits import load_task  # noqa: E402
from supernet.nn.arch import Architecture  # noqa: E402
from supernet.nn.encoder import EncoderConfig, load_tokenizer  # noqa: E402
from supernet.nn.space import get_space, resolve_space  # noqa: E402


def arms(space_name: str, task: str, encoder: str) -> dict[str, Architecture]:
    space = get_space(space_name)
    base = {**space.reference(), "pool": "mean", "depth": 0}
    changes = {"mean + linear (joint, last layer)": {}}
    if space.has_pairs:
        changes.update({"pair: siamese": {"pair": "siamese"}, "pair: cosine": {"pair": "cosine"}})
        if "cosine_proj" in space.pair:
            changes["pair: cosine_proj"] = {"pair": "cosine_proj"}
    changes.update({"layers: mean4": {"layers": "mean4"}, "layers: max3": {"layers": "max3"},
                    "layers: scalar_mix": {"layers": "scalar_mix"},
                    "layers: max3, cls pooling (MaxPoolBERT)": {"layers": "max3", "pool": "cls"}})
    return {name: Architecture(space_name, space.canonical({**base, **c}), encoder=encoder, task=task)
            for name, c in changes.items()}


def write_table(out_dir: Path, arm: str, base: str, rows: dict, delta: str, extra: tuple[str, str] | None = None
                ) -> str:
    """``ablation.md``: per arm its mean, an ``extra`` (header, row key) column if given, and the paired
    difference ``rows[arm][delta]`` against ``base`` with its CI; printed too."""
    heads = ["mean", *([extra[0]] if extra else [])]
    lines = [f"| {arm} | {' | '.join(heads)} | Δ vs {base} [95% CI] |", "|---" * (len(heads) + 2) + "|"]
    for name, r in rows.items():
        d, cells = r[delta], [r["mean"], *([r[extra[1]]] if extra else [])]
        lines.append(f"| {name} | {' | '.join(f'{c:.4f}' for c in cells)} | "
                     f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |")
    text = "\n".join(lines)
    (out_dir / "ablation.md").write_text(text + "\n")
    print(text)
    return text


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--epochs", type=float, default=10.0)
    p.add_argument("--lr-head", type=float, default=1e-3)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--linear-fit", choices=("budget", "converged"), default="budget",
                   help="budget: each arm trained for --epochs (the committed results); converged: L-BFGS")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data, encoder = DataConfig(task=args.task), EncoderConfig()
    task = load_task(data, load_tokenizer(None))
    space = resolve_space("auto", len(task.spec.text_columns))
    heads = arms(space, task.spec.name, encoder.name)
    cfg = RetrainConfig(epochs=args.epochs, lr_head=args.lr_head, freeze_encoder=True, linear_fit=args.linear_fit,
                        seeds=tuple(int(s) for s in args.seeds.split(",")))
    results = retrain_heads([(f"arm{i}", a) for i, a in enumerate(heads.values())],
                            RetrainPlan(task, cfg, encoder, data), args.out)
    metric = task.spec.main_metric
    per_seed = {name: {s: r["metrics"][metric] for s, r in results["heads"][f"arm{i}"]["seeds"].items()}
                for i, name in enumerate(heads)}
    base = per_seed["mean + linear (joint, last layer)"]
    rows = {name: {"mean": sum(v.values()) / len(v), "per_seed": v, "vs_joint_mean_linear": paired(v, base),
                   "choices": dict(heads[name].choices)} for name, v in per_seed.items()}
    out = {"task": task.spec.name, "metric": metric, "space": space, "budget": cfg.to_dict(), "rows": rows,
           "command": "python bench/ablation_frozen.py " + " ".join(argv or sys.argv[1:])}
    (args.out / "ablation.json").write_text(json.dumps(out, indent=2) + "\n")
    write_table(args.out, f"arm ({task.spec.name}, frozen, dev {metric}, seeds {args.seeds})", "mean + linear",
                rows, "vs_joint_mean_linear")
    return out


if __name__ == "__main__":
    main()
