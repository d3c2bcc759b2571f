"""The table of bench/backbone_compare.sh: searched backbone + head vs full encoder + linear head.

    python bench/backbone_table.py <search run dir> <retrain output dir> [<retrain --init-from output dir>]

Prints, from one run: dev metric (mean ± std over seeds), parameters, measured dev latency, and
the ratios searched / baseline; then what the search saw (inherited-weight scores, lookup-table
latency, the Pareto front's size).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("search_dir", type=Path)
    p.add_argument("retrain_dir", type=Path)
    p.add_argument("inherited_dir", type=Path, nargs="?", help="the same architecture retrained with --init-from")
    args = p.parse_args(argv)
    summary = json.loads((args.search_dir / "search_summary.json").read_text())
    results = json.loads((args.retrain_dir / "results.json").read_text())
    metric = results["metric"]
    heads = results["heads"]
    searched = next(name for name in heads if name != "linear")
    rows = [("searched backbone + head, from the pretrained encoder", heads[searched]),
            ("full encoder + linear head", heads["linear"])]
    if args.inherited_dir:
        inherited = json.loads((args.inherited_dir / "results.json").read_text())["heads"][searched]
        rows.insert(1, ("searched backbone + head, from the supernet (--init-from)", inherited))
    print(f"# {results['task']}, encoder {results['encoder']}, seeds {list(results['config']['seeds'])}, "
          f"{results['config']['epochs']} epochs\n")
    print(f"| model | dev {metric} | parameters | dev latency (ms/example) |")
    print("|---|---|---|---|")
    for label, h in rows:
        s = h["summary"][metric]
        print(f"| {label} | {s['mean']:.4f} ± {s['std']:.4f} | {h['parameters']:,} | {h['dev_latency_ms']:.3f} |")
    a, b = heads[searched], heads["linear"]
    print(f"\nratios searched / linear: parameters {a['parameters'] / b['parameters']:.3f}, "
          f"dev latency {a['dev_latency_ms'] / b['dev_latency_ms']:.3f}; "
          f"{metric} difference {a['summary'][metric]['mean'] - b['summary'][metric]['mean']:+.4f}")
    ref = summary["reference_full_encoder_linear_head"]
    best = summary["best"]
    print(f"search (inherited weights): best {metric} {best[metric]:.4f} at {best['latency_ms']:.3f} ms (table) vs "
          f"reference {ref[metric]:.4f} at {ref['latency_ms']:.3f} ms; random subnets mean "
          f"{summary['random_subnets']['mean']:.4f}; Pareto front {summary['pareto_front_size']} of "
          f"{summary['trials']} trials; seconds {json.dumps({k: round(v) for k, v in summary['seconds'].items()})}")


if __name__ == "__main__":
    main()
