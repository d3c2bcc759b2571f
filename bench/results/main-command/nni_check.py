import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, "/work/main")
from strategies import report
from strategies.config import SearchConfig
from strategies.evolution import run_experiment
from supernet.scoring.candidates import CandidateScorer

state = Path(sys.argv[1]); space = sys.argv[2]
scorer = CandidateScorer.from_file(state)
for T in [int(x) for x in sys.argv[3].split(",")]:
    for seed in [int(x) for x in sys.argv[4].split(",")]:
        cfg = SearchConfig(strategy="evolution", trials=T, webui=False)
        with tempfile.TemporaryDirectory() as d:
            trials = run_experiment(space, state, cfg, Path(d) / "nni", seed)
        best = max(t["score"] for t in trials)
        rnd = report.random_subnets(scorer, T, seed)
        print(f"T={T} seed={seed} evolution {best:.4f} random best {max(rnd):.4f} mean {statistics.mean(rnd):.4f} {'WIN' if best > max(rnd) else 'no'}", flush=True)
