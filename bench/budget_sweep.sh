#!/usr/bin/env bash
# Converged-budget sweep (issue #18, item 4): the linear head (pooler [CLS] + one linear layer, as
# BertForSequenceClassification) on the full 6-layer all-MiniLM-L6-v2, per task, learning rate and
# epochs; dev metrics after every epoch. Resumable: a finished configuration is skipped, an
# unfinished one continues from its checkpoint. This sweep reads the official dev set, for the
# linear head only, to compare with published dev numbers; the budget it picks is shared by every
# arm (if anything it favours the linear baseline).
#
#   GLUE_DIR=../shared/data/glue bench/budget_sweep.sh OUT_DIR [small|full ...]
#
# The full regime's grid can be narrowed (a full grid is ~5 CPU hours on 2 cores), e.g.
#   FULL_TASKS=mrpc FULL_EPOCHS=5 bench/budget_sweep.sh OUT full
# and the small regime's tasks with SMALL_TASKS="sst2 stsb".
set -euo pipefail
out=${1:?usage: budget_sweep.sh OUT_DIR [small|full ...]}; shift
regimes=${*:-small full}
run() {  # regime task lr epochs [rows]
  local dir="$out/$1-$2-lr$3-ep$4"
  [ -f "$dir/results.json" ] && return 0
  local resume=(); [ -d "$dir" ] && resume=(--resume)
  python -m retrain linear --task "$2" --lr-encoder "$3" --epochs "$4" --seeds 1 \
    ${5:+--max-train-samples $5} --output-dir "$dir" "${resume[@]}"
}
for regime in $regimes; do
  if [ "$regime" = small ]; then  # Kenneweg et al.'s small tasks: the first 500 training rows
    for task in ${SMALL_TASKS:-mrpc cola stsb sst2}; do for lr in 5e-5 1e-4; do for ep in 10 20; do
      run small $task $lr $ep 500; done; done; done
  else
    for ep in ${FULL_EPOCHS:-10 3}; do for lr in ${FULL_LRS:-5e-5 2e-5 1e-4}; do
      for task in ${FULL_TASKS:-mrpc cola stsb}; do run full $task $lr $ep; done; done; done
  fi
done
