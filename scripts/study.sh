#!/usr/bin/env bash
# The accuracy studies of docs/RESULTS.md: several modes under ONE recipe with the same seeds on
# the real Fashion-MNIST, then the report (table, curves) and the learned embedding's heatmap.
#   scripts/study.sh OUT [extra labelemb-train flags...]
#   MODES=baseline,emb,ls,ols SEEDS=0-2 scripts/study.sh runs/study-mlp --model mlp
# The modes are split over two processes with one thread each, which keeps both cores of a
# 2-core machine busy without the slowdown of two processes fighting over two threads each.
# --resume makes the script safe to re-run after an interruption, or with more SEEDS.
set -euo pipefail
OUT=${1:?usage: scripts/study.sh OUT [labelemb train flags]}
shift
MODES=${MODES:-baseline,emb,ls,ols}
SEEDS=${SEEDS:-0-2}
mkdir -p "$OUT"
IFS=, read -r -a modes <<< "$MODES"
half=$(( (${#modes[@]} + 1) / 2 ))
first=$(IFS=,; echo "${modes[*]:0:half}")
second=$(IFS=,; echo "${modes[*]:half}")
common=(--dataset fashion-mnist --seeds "$SEEDS" --out "$OUT" --threads 1 --resume "$@")
labelemb train "${common[@]}" --modes "$first" > "$OUT/train-1.log" 2>&1 &
pids=($!)
if [ -n "$second" ]; then
  labelemb train "${common[@]}" --modes "$second" > "$OUT/train-2.log" 2>&1 &
  pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done
labelemb report "$OUT" --out "$OUT/report"
labelemb inspect "$OUT/emb/seed-${SEEDS%%[-,]*}" --out "$OUT/inspect" --hide-diagonal
