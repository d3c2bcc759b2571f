# per-genre dev Pearson of each arm's retrained model.pt (its best seed) in a STS-B compare dir
import json
import sys
from pathlib import Path

import numpy as np

from retrain.predict import PredictConfig, predict_file
from supernet.core.metrics import pearson  # the metric the retrain results were scored with
from supernet.data.readers import read_records

d = Path(sys.argv[1]); dev = Path(sys.argv[2]); out = Path(sys.argv[3]); out.mkdir(parents=True, exist_ok=True)
rec = read_records(dev)
gold = np.array([float(r["score"]) for r in rec]); genre = np.array([r["genre"] for r in rec])
rows = {}
for arm in ["linear", "linear_mean", "weight_sharing", "bo_hyperband", "random_head"]:
    m = d / "retrain" / arm / "model.pt"
    if not m.exists(): continue
    p = predict_file(str(m), PredictConfig(input=str(dev), output=str(out / f"{arm}.csv"), overwrite=True))
    pred = np.array([float(r["prediction"]) for r in read_records(Path(p))])
    r = {"all": pearson(pred, gold)}
    for g in sorted(set(genre)): r[g] = pearson(pred[genre == g], gold[genre == g])
    r["not captions"] = pearson(pred[genre != "main-captions"], gold[genre != "main-captions"])
    seeds = {s.name: json.load(open(s / "result.json"))["metrics"]["pearson"] for s in (d / "retrain" / arm).glob("seed_*")}
    r["seed"] = min(seeds, key=lambda s: abs(seeds[s] - r["all"]))  # model.pt is the best seed's
    r["seed_result"] = seeds[r["seed"]]
    rows[arm] = r; print(arm, {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
json.dump(rows, open(out / "genre.json", "w"), indent=1)
