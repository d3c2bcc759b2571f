"""Issue #32 goal 3: a whole search with full fine-tuning against one linear-head fine-tune of the same budget.

In one run on one machine, each as a user runs it (a child process; CPU seconds from its rusage, wall
seconds), with the same task, rows, encoder and fine-tuning budget:
1. ``python -m retrain linear``: one seed of the linear head (pooler [CLS]), fine-tuned end to end;
2. ``python -m supernet.search --pick best``: supernet training + features + search + report;
3. the same with the default ``--pick safe`` (``--rerank-on auto``: in a head space its re-ranking trains
   the top heads and the linear heads on the supernet's fine-tuned encoder's cached outputs);
4. ``--pick safe --rerank-on pretrained``: each of those heads fine-tuned from the pretrained encoder
   (the only way before ``--rerank-on``; once per fold below 200 selection rows).
Prints each search's ratio to 1, its stages and its pick. Nothing else should run meanwhile.

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


ARMS = {"pick_best": ["--pick", "best"], "pick_safe": ["--pick", "safe"],
        "pick_safe_pretrained": ["--pick", "safe", "--rerank-on", "pretrained"]}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--max-train-samples", default="2000")
    p.add_argument("--epochs", default="1")
    p.add_argument("--extra", default="", help="more flags for every arm, e.g. '--lr-encoder 5e-5'")
    p.add_argument("--arms", default=",".join(ARMS), help=f"searches to time, of {list(ARMS)}")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    shared = ["--task", args.task, "--max-train-samples", args.max_train_samples, "--epochs", args.epochs,
              *args.extra.split()]
    result: dict = {"shared_flags": shared, "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                                                     capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory() as d:
        result["linear_fine_tune"] = timed_child(["retrain", "linear", *shared, "--seeds", "1", "--output-dir",
                                                  f"{d}/linear"], lines=3)
    arms = args.arms.split(",")
    for arm in arms:
        result[f"search_{arm}"] = timed_search(["--strategy", "evolution", *shared, "--trials", "96",
                                                "--no-webui", *ARMS[arm]], lines=3)
    base = result["linear_fine_tune"]
    print(f"one linear-head fine-tune: {base['cpu_seconds']:.1f} CPU s, {base['seconds']:.1f} s wall")
    for arm in arms:
        r = result[f"search_{arm}"]
        r["ratio_cpu"], r["ratio_wall"] = r["cpu_seconds"] / base["cpu_seconds"], r["seconds"] / base["seconds"]
        print(f"search {' '.join(ARMS[arm])}: {r['cpu_seconds']:.1f} CPU s, {r['seconds']:.1f} s wall; ratio CPU "
              f"{r['ratio_cpu']:.2f}x, wall {r['ratio_wall']:.2f}x; stages (CPU s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_cpu_seconds"].items()))
        print("  " + next((line for line in r["last_lines"] if " pick: " in line), "(no pick line)"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
