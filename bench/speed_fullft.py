"""Issue #32 goal 3: a whole search with full fine-tuning against one linear-head fine-tune of the same budget.

In one run on one machine, each as a user runs it (a child process; CPU seconds from its rusage, wall
seconds), with the same task, rows, encoder and fine-tuning budget:
1. ``python -m retrain linear``: one seed of the linear head (pooler [CLS]), fine-tuned end to end;
2. ``python -m supernet.search --pick best``: supernet training + features + search + report;
3. the same with the default ``--pick safe`` (its re-ranking trains the top heads and the linear
   heads stand-alone: under full fine-tuning each is a fine-tune).
Prints the ratios 2/1 and 3/1 and the search's stages. Nothing else should run meanwhile.

    GLUE_DIR=../shared/data/glue python bench/speed_fullft.py --task sst2 --max-train-samples 2000 --epochs 1 \\
        --out bench/results/speed-fullft/sst2-2000.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed_frozen import timed_child, timed_search  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--max-train-samples", default="2000")
    p.add_argument("--epochs", default="1")
    p.add_argument("--extra", default="", help="more flags for all three, e.g. '--lr-encoder 5e-5'")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    shared = ["--task", args.task, "--max-train-samples", args.max_train_samples, "--epochs", args.epochs,
              *args.extra.split()]
    result: dict = {"shared_flags": shared, "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                                                     capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory() as d:
        result["linear_fine_tune"] = timed_child(["retrain", "linear", *shared, "--seeds", "1", "--output-dir",
                                                  f"{d}/linear"], lines=3)
    for pick in ("best", "safe"):
        result[f"search_pick_{pick}"] = timed_search(["--strategy", "evolution", *shared, "--trials", "96",
                                                      "--no-webui", "--pick", pick], lines=3)
    base = result["linear_fine_tune"]
    print(f"one linear-head fine-tune: {base['cpu_seconds']:.1f} CPU s, {base['seconds']:.1f} s wall")
    for pick in ("best", "safe"):
        r = result[f"search_pick_{pick}"]
        r["ratio_cpu"], r["ratio_wall"] = r["cpu_seconds"] / base["cpu_seconds"], r["seconds"] / base["seconds"]
        print(f"search --pick {pick}: {r['cpu_seconds']:.1f} CPU s, {r['seconds']:.1f} s wall; ratio CPU "
              f"{r['ratio_cpu']:.2f}x, wall {r['ratio_wall']:.2f}x; stages (CPU s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_cpu_seconds"].items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
