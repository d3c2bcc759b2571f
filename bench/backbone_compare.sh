#!/bin/bash
# Searched backbone + head vs the full encoder + linear head, on MiniLM-L6 (all 6 layers), SST-2.
#   bench/backbone_compare.sh [OUT_DIR]    (default logs/backbone-compare; about 20 min on 2 CPU cores)
# 1. one supernet over space small+ffn+conv (per layer: FFN keep/skip; attention/conv3/conv7/conv15),
#    evolution for 48 trials maximising accuracy - 0.2 x latency / latency(full encoder);
# 2. retrain arch_top1.json (from the pretrained encoder) and the linear baseline with the same loop,
#    budget and seeds; then arch_top1.json again from the supernet's weights (--init-from);
# 3. print the comparison table (bench/backbone_table.py).
set -euo pipefail
OUT=${1:-logs/backbone-compare}
export GLUE_DIR=${GLUE_DIR:-../shared/data/glue}
python -m supernet.search --strategy evolution --task sst2 --space small+ffn+conv --max-train-samples 8000 \
  --epochs 2 --trials 48 --penalty latency --penalty-weight 0.2 --random-baseline 10 --no-webui \
  --output-dir "$OUT/search"
python -m retrain "$OUT/search/arch_top1.json" --baseline linear --max-train-samples 8000 --epochs 2 \
  --seeds 1,2,3 --output-dir "$OUT/retrain"
python -m retrain "$OUT/search/arch_top1.json" --init-from "$OUT/search" --max-train-samples 8000 --epochs 2 \
  --seeds 1,2,3 --output-dir "$OUT/retrain-inherited"
python bench/backbone_table.py "$OUT/search" "$OUT/retrain" "$OUT/retrain-inherited"
