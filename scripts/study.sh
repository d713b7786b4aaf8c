#!/usr/bin/env bash
# The accuracy studies of docs/RESULTS.md: several modes under ONE recipe with the same seeds on
# the real Fashion-MNIST, then the report (table, curves, calibration, p-values) and the learned
# embedding's heatmap.
#   scripts/study.sh OUT [extra labelemb-train flags...]
#   MODES=baseline,emb,ls,ols,emb-fixed SEEDS=0-9 scripts/study.sh runs/study-mlp --model mlp
#   MODES=emb SEEDS=0-9 scripts/study.sh runs/study-mlp-sharp --model mlp --soft-target-temperature 0.5
# Work is split over two processes with one thread each (the modes, or one mode's seeds), which
# keeps both cores of a 2-core machine busy without the slowdown of two processes fighting over
# two threads each. emb-fixed
# (the frozen embedding of Appendix C) needs the emb run of the same seed, so it runs after the
# other modes, its seeds split over the two processes. --resume makes the script safe to re-run
# after an interruption, or with more SEEDS.
set -euo pipefail
OUT=${1:?usage: scripts/study.sh OUT [labelemb train flags]}
shift
MODES=${MODES:-baseline,emb,ls,ols}
SEEDS=${SEEDS:-0-2}
mkdir -p "$OUT"
common=(--dataset fashion-mnist --out "$OUT" --threads 1 --resume "$@")

# Runs `labelemb train` for the two halves of a comma-separated list in parallel: $1 is the flag
# the halves go to, $2 the list, $3 a log-name prefix, the rest more flags.
in_two() {
  local flag=$1 list=$2 name=$3; shift 3
  local -a items pids=()
  IFS=, read -r -a items <<< "$list"
  local half=$(( (${#items[@]} + 1) / 2 ))
  local part
  for part in "$(IFS=,; echo "${items[*]:0:half}")" "$(IFS=,; echo "${items[*]:half}")"; do
    [ -n "$part" ] || continue
    labelemb train "${common[@]}" "$flag" "$part" "$@" >> "$OUT/$name-${#pids[@]}.log" 2>&1 &
    pids+=($!)
  done
  local p status=0
  for p in "${pids[@]}"; do wait "$p" || status=$?; done
  return "$status"
}

seeds=$(python3 -c "import sys; from labelemb.engine.classification import parse_seeds
print(','.join(map(str, parse_seeds(sys.argv[1]))))" "$SEEDS")
others=$(echo ",$MODES," | sed 's/,emb-fixed,/,/g; s/^,//; s/,$//')
if [[ "$others" == *,* ]]; then  # several modes: split the modes
  in_two --modes "$others" train --seeds "$SEEDS"
elif [ -n "$others" ]; then      # one mode: split its seeds
  in_two --seeds "$seeds" train --modes "$others"
fi
if [[ ",$MODES," == *,emb-fixed,* ]]; then
  in_two --seeds "$seeds" fixed --modes emb-fixed --embedding "$OUT"
fi
labelemb report "$OUT" --out "$OUT/report"
labelemb inspect "$OUT/emb/seed-${SEEDS%%[-,]*}" --out "$OUT/inspect" --hide-diagonal
