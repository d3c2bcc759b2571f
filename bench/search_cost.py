"""P1: search cost of weight sharing vs the BO-Hyperband baseline, from one ``retrain.compare`` run.

Reads the run's ``compare.json`` and ``bo_hyperband/trials.json`` (both arms measured in the
same run, on the same machine) and prints:
- the weight-sharing search cost: one supernet fine-tune + evolution with inherited weights;
- BO-Hyperband's cost until it found its best architecture (trial seconds summed in trial order,
  up to and including the best trial) and its whole budget;
- their ratios, and the retrained dev metric (mean ± std over seeds) of both arms.

    python bench/search_cost.py bench/results/compare-mrpc-minilm6
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def search_cost(compare_dir: Path) -> dict:
    compare = json.loads((compare_dir / "compare.json").read_text())
    trials_file = next(p for p in (compare_dir / "bo_hyperband" / "trials.json",
                                   compare_dir / "bo_hyperband_trials.json") if p.is_file())
    trials = json.loads(trials_file.read_text())["trials"]
    metric = compare["metric"]
    done = [t for t in trials if t.get("metrics")]
    best = max(done, key=lambda t: t["metrics"][metric] if t["state"] == "complete" else float("-inf"))
    to_best = sum(t["seconds"] for t in trials[:trials.index(best) + 1])
    ws, bo = compare["rows"]["weight_sharing"], compare["rows"]["bo_hyperband"]
    return {"metric": metric, "ws_seconds": ws["search"]["seconds"], "bohb_seconds": bo["search"]["seconds"],
            "bohb_seconds_to_best": to_best, "bohb_best_trial": best["number"], "bohb_trials": len(trials),
            "ratio_to_best": ws["search"]["seconds"] / to_best,
            "ratio_total": ws["search"]["seconds"] / bo["search"]["seconds"],
            "ws_retrained": (ws["mean"], ws["std"]), "bohb_retrained": (bo["mean"], bo["std"])}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("compare_dir", type=Path, help="output directory of python -m retrain.compare")
    r = search_cost(p.parse_args(argv).compare_dir)
    print(f"weight sharing: {r['ws_seconds']:.0f} s (supernet fine-tune + evolution)\n"
          f"BO-Hyperband: {r['bohb_seconds_to_best']:.0f} s to its best architecture (trial {r['bohb_best_trial']} "
          f"of {r['bohb_trials']}), {r['bohb_seconds']:.0f} s in all\n"
          f"P1 ratio WS / BO-HB to best: {r['ratio_to_best']:.3f} (target <= 0.1); WS / BO-HB total: "
          f"{r['ratio_total']:.3f}\n"
          f"retrained dev {r['metric']}: WS {r['ws_retrained'][0]:.4f} ± {r['ws_retrained'][1]:.4f}, "
          f"BO-HB {r['bohb_retrained'][0]:.4f} ± {r['bohb_retrained'][1]:.4f}")
    return r


if __name__ == "__main__":
    main()
