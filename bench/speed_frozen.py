"""Issue #32: the frozen-regime search against the one unavoidable cost, one encoder pass over its rows.

Measures, in one run on one machine:
1. a plain encoder pass (all-MiniLM-L6-v2, mean pooling, batches of 128 rows, no gradient) over the
   rows the search reads (the first N SST-2 training rows), in this process: CPU and wall seconds;
2. the README's main command as a user runs it (a child process, from ``--repo``: this checkout, or
   another one for a before/after), its CPU seconds (the child's rusage) and wall seconds, and the
   stages its ``search_summary.json`` records;
and prints the ratios. Nothing else should run meanwhile (machines are noisy: compare within a run).

    GLUE_DIR=../shared/data/glue python bench/speed_frozen.py --out bench/results/speed-frozen/after.json
    GLUE_DIR=../shared/data/glue python bench/speed_frozen.py --repo /path/to/old/checkout --out .../before.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAIN = ["--strategy", "evolution", "--task", "sst2", "--max-train-samples", "8000", "--freeze-encoder", "--space",
        "mlp", "--trials", "96", "--no-webui"]


def encoder_pass(rows: int) -> dict[str, float]:
    """CPU and wall seconds of one mean-pooled encoder pass over the first ``rows`` SST-2 training rows."""
    import numpy as np
    import torch

    from supernet.data.encoded import encode, pad_batch
    from supernet.data.sources import TRAIN, DataConfig, load_splits
    from supernet.nn.encoder import load_encoder, load_tokenizer
    cfg = DataConfig(task="sst2", max_train_samples=rows)
    _, splits = load_splits(cfg)
    data = encode(splits[TRAIN], load_tokenizer(None), cfg.max_length, cfg.cache_dir)  # tokenised before timing
    encoder = load_encoder(None).eval()
    t0, cpu0 = time.time(), time.process_time()
    with torch.no_grad():
        for start in range(0, len(data), 128):
            b = pad_batch(data, np.arange(start, min(start + 128, len(data))), 0)
            h = encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
            (h * b["attention_mask"][..., None]).sum(1) / b["attention_mask"].sum(1, keepdim=True)
    return {"seconds": time.time() - t0, "cpu_seconds": time.process_time() - cpu0, "rows": len(data)}


def timed_child(args: list[str], repo: Path = ROOT, lines: int = 2) -> dict:
    """``python -m <args>`` from ``repo`` in a child process: its CPU (rusage, with the descendants it
    waited for) and wall seconds, and its stdout's last ``lines``; a failure stops the benchmark."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                          capture_output=True, text=True)
    wall, after = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": wall, "cpu_seconds": cpu, "last_lines": proc.stdout.strip().splitlines()[-lines:]}


def timed_search(flags: list[str], repo: Path = ROOT, lines: int = 2) -> dict:
    """``python -m supernet.search`` with ``flags`` in a fresh run directory (``timed_child``), plus its
    stages' seconds from ``search_summary.json``."""
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        r = timed_child(["supernet.search", *flags, "--output-dir", str(run)], repo, lines)
        summary = json.loads((run / "search_summary.json").read_text())
    return {**r, "stages_cpu_seconds": summary["cpu_seconds"], "stages_seconds": summary["seconds"]}


def main_command(repo: Path, extra: list[str]) -> dict:
    """The README's main command in a child process: its CPU (rusage) and wall seconds, and its stages."""
    flags = [f for f in MAIN if not ("--webui" in extra and f == "--no-webui")] + [f for f in extra if f != "--webui"]
    return timed_search(flags, repo)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=ROOT, help="checkout whose main command is timed (default: this)")
    p.add_argument("--extra", default="", help="more flags for the main command, e.g. '--pick best'")
    p.add_argument("--webui", action="store_true",
                   help="also run the main command with the web UI (issue #32 goal 2: within 1.3x of in-process)")
    p.add_argument("--out", type=Path, help="write the measurements here (JSON)")
    args = p.parse_args(argv)
    extra = args.extra.split()
    cmd = main_command(args.repo.resolve(), extra)
    webui = main_command(args.repo.resolve(), [*extra, "--webui", "--port", str(free_port())]) if args.webui else None
    enc = encoder_pass(8000)
    result = {"encoder_pass": enc, "main_command": cmd, "command": " ".join(["python -m supernet.search", *MAIN,
                                                                           *extra]),
              "repo": str(args.repo), "commit": subprocess.run(["git", "-C", str(args.repo), "rev-parse", "HEAD"],
                                                               capture_output=True, text=True).stdout.strip(),
              "ratio_cpu": cmd["cpu_seconds"] / enc["cpu_seconds"], "ratio_wall": cmd["seconds"] / enc["seconds"],
              "load_average": list(os.getloadavg())}
    if webui:
        result.update(main_command_webui=webui, webui_ratio_wall=webui["seconds"] / cmd["seconds"],
                      webui_ratio_cpu=webui["cpu_seconds"] / cmd["cpu_seconds"])
    report = {k: v for k, v in cmd["stages_cpu_seconds"].items()}
    print(f"encoder pass: {enc['cpu_seconds']:.1f} CPU s, {enc['seconds']:.1f} s wall ({enc['rows']} rows)\n"
          f"main command: {cmd['cpu_seconds']:.1f} CPU s, {cmd['seconds']:.1f} s wall; stages (CPU s): "
          + ", ".join(f"{k} {v:.1f}" for k, v in report.items())
          + f"\nratio to one encoder pass: CPU {result['ratio_cpu']:.2f}x, wall {result['ratio_wall']:.2f}x")
    if webui:
        print(f"with the web UI: {webui['cpu_seconds']:.1f} CPU s, {webui['seconds']:.1f} s wall "
              f"(search stage {webui['stages_seconds']['search']:.1f} s vs {cmd['stages_seconds']['search']:.1f} s "
              f"in-process); web UI / in-process: wall {result['webui_ratio_wall']:.2f}x, "
              f"CPU {result['webui_ratio_cpu']:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
