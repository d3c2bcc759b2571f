"""P3: candidate heads evaluated per minute, and where a web-UI trial's time goes.

Measures, in one run, on the task's full dev set:
1. the one-off cost of the cached encoder outputs (dev + calibration rows, every pooling);
2. scoring alone (``CandidateScorer.score``: freeze, batch-norm recalibration, dev metrics);
3. the same through NNI's regularized evolution in-process (``--no-webui``: sequential engine);
4. through NNI's manager and local training service (the web UI), one process per trial
   (``strategies.trial_entry``), split from NNI's own trial events into trial-process time and
   the manager's gap between trials, plus the import time NNI's own trial entry would cost.

The head weights are the supernet's initial ones: scoring cost does not depend on their values.

    python bench/search_throughput.py --num-hidden-layers 2 --candidates 300 --webui-trials 8
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from strategies.config import SearchConfig
from strategies.evolution import run_experiment
from supernet.data.encoded import encode
from supernet.data.sources import TRAIN, DataConfig, load_splits
from supernet.nn.encoder import load_encoder, load_tokenizer
from supernet.nn.space import get_space
from supernet.nn.supernet import HeadSupernet
from supernet.scoring.candidates import CandidateScorer, save_search_state
from supernet.train.frozen import supernet_cache

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--glue-dir", default=None, help="default: $GLUE_DIR")
    p.add_argument("--task", default="mrpc")
    p.add_argument("--model", default=None)
    p.add_argument("--num-hidden-layers", type=int, default=2)
    p.add_argument("--space", default="paper")
    p.add_argument("--candidates", type=int, default=300, help="candidates scored in steps 2 and 3")
    p.add_argument("--webui-trials", type=int, default=8, help="trials through the NNI manager (0: skip)")
    p.add_argument("--port", type=int, default=8799)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def trial_events(work_dir: Path) -> tuple[list[float], list[float]]:
    """(trial-process seconds, manager gap seconds) from NNI's TrialJobEvent table."""
    db = next(work_dir.glob("*/db/nni.sqlite"))
    rows = list(sqlite3.connect(db).execute("select timestamp, trialJobId, event from TrialJobEvent order by timestamp"))
    start = {t: ts for ts, t, e in rows if e == "RUNNING"}
    end = sorted((ts, t) for ts, t, e in rows if e == "SUCCEEDED")
    runs = [(ts - start[t]) / 1000 for ts, t in end if t in start]
    starts = sorted(start.values())
    gaps = [(s - e) / 1000 for (e, _), s in zip(end, starts[1:])]
    return runs, gaps


def scoring_per_minute(state: Path, space, n: int) -> float:
    """Candidates scored per minute from a search state (``n`` fixed random candidates, one process)."""
    scorer = CandidateScorer.from_file(state)
    rng = random.Random(0)
    cands = [space.sample(rng) for _ in range(n)]
    t = time.perf_counter()
    for c in cands:
        scorer.score(c)
    return 60 * len(cands) / (time.perf_counter() - t)


def main(argv=None) -> dict:
    args = parse_args(argv)
    data_cfg = DataConfig(task=args.task, glue_dir=args.glue_dir)
    spec, splits = load_splits(data_cfg)
    tok = load_tokenizer(args.model)
    dev = encode(splits[spec.dev_splits[0]], tok, data_cfg.max_length, data_cfg.cache_dir)
    calib = encode(splits[TRAIN].head(512), tok, data_cfg.max_length, data_cfg.cache_dir)
    space = get_space(args.space)
    torch.manual_seed(0)
    net = HeadSupernet(load_encoder(args.model, args.num_hidden_layers), space, spec.num_labels)
    pad = tok.pad_token_id or 0
    out: dict = {"setup": {**vars(args), "dev_rows": len(dev), "threads": torch.get_num_threads(),
                           "machine": platform.platform(), "date": time.strftime("%Y-%m-%d")}}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t = time.perf_counter()
        feats, cal = supernet_cache(net, dev, pad), supernet_cache(net, calib, pad)
        out["features_seconds"] = time.perf_counter() - t
        state = d / "search_state.pt"
        save_search_state(state, net.head, spec.metrics, feats, dev.labels, cal)

        out["scoring_per_minute"] = scoring_per_minute(state, space, args.candidates)

        cfg = SearchConfig(trials=args.candidates, webui=False)
        t = time.perf_counter()
        n = len(run_experiment(space.name, state, cfg, d / "headless" / "nni", 0))
        out["nni_inprocess_per_minute"] = 60 * n / (time.perf_counter() - t)
        print(f"encoder outputs once: {out['features_seconds']:.1f} s for {len(dev)} dev + {len(calib)} calib rows\n"
              f"P3 scoring alone: {out['scoring_per_minute']:,.0f} candidates/min\n"
              f"P3 NNI evolution in-process: {out['nni_inprocess_per_minute']:,.0f} candidates/min "
              f"(target >= 1,000; {out['nni_inprocess_per_minute'] / out['scoring_per_minute']:.2f} of scoring alone)",
              flush=True)

        if args.webui_trials:
            cmd = "import nni.nas.execution.training_service, strategies.evolution"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", cmd], cwd=ROOT, check=True, capture_output=True)
            out["trial_import_seconds"] = time.perf_counter() - t
            cfg = SearchConfig(trials=args.webui_trials, webui=True, port=args.port, population=4, sample_size=2)
            t = time.perf_counter()
            n = len(run_experiment(space.name, state, cfg, d / "webui" / "nni", 0))
            wall = time.perf_counter() - t
            runs, gaps = trial_events(d / "webui" / "nni")
            out["webui"] = {"trials": n, "wall_seconds": wall, "per_minute": 60 * n / wall,
                            "trial_process_seconds": statistics.median(runs),
                            "gap_seconds": statistics.median(gaps) if gaps else None}
            w = out["webui"]
            score_s = 60 / out["scoring_per_minute"]
            print(f"web UI: {w['per_minute']:.1f} candidates/min ({n} trials in {wall:.0f} s including the manager's "
                  f"start); per trial: process {w['trial_process_seconds']:.2f} s (scoring {score_s:.3f} s of it) "
                  f"+ manager gap {w['gap_seconds']:.2f} s. NNI's own trial entry would spend "
                  f"{out['trial_import_seconds']:.2f} s importing; strategies/trial_entry.py is stdlib-only",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
