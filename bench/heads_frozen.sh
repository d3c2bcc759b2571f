#!/usr/bin/env bash
# Issue #30, measure 1: frozen encoder, full training rows, the default space (--space auto: pairs for
# STS-B and MRPC, heads for SST-2, CoLA and Banking77), every arm of python -m retrain.compare: the
# linear heads at the shared budget, the converged linear probe, the zero-parameter cosine (pair
# tasks), weight sharing, BO-HB over the same space, a random head. Select on the split carved from
# train (seed 0), report on dev (Banking77: its test split) at seeds 1-3. Resumable: a finished task
# is skipped, an unfinished one continues (--resume DIR).
#
#   GLUE_DIR=../shared/data/glue bench/heads_frozen.sh [TASK ...]    (default: stsb mrpc banking77 cola sst2)
set -euo pipefail
BUDGET=(--freeze-encoder --epochs 10 --lr-head 1e-3 --seeds 1,2,3 --bohb-trials 50 --search-trials 100)
data() {  # task -> its data flags
  case $1 in
    banking77) echo --train-file ../shared/data/banking77/train.csv --test-file ../shared/data/banking77/test.csv \
                    --text-columns text --label-column category ;;
    *) echo --task "$1" ;;
  esac
}
for task in ${*:-stsb mrpc banking77 cola sst2}; do
  dir=bench/results/compare-$task-frozen-heads
  [ -f "$dir/compare.json" ] && continue
  where=(--output-dir "$dir"); [ -d "$dir" ] && where=(--resume "$dir")
  # shellcheck disable=SC2046
  /usr/bin/time -v python -m retrain.compare $(data "$task") "${BUDGET[@]}" "${where[@]}" \
    > "$dir.log" 2>&1 || { echo "$task failed: see $dir.log"; exit 1; }
  tail -c 20000 "$dir.log" > "$dir/run.log" && rm "$dir.log"  # the progress bars' last lines, the timing
done
