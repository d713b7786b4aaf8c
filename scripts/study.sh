#!/usr/bin/env bash
# The accuracy studies of docs/RESULTS.md: several modes under ONE recipe with the same seeds on
# the real Fashion-MNIST, then the report (tables, effects with 95% CIs, forest plot, curves,
# calibration) and the learned embedding's heatmap.
#   scripts/study.sh OUT [extra labelemb-train flags...]
#   MODES=baseline,emb,ls,ols,emb-fixed SEEDS=0-9 scripts/study.sh runs/study-mlp --model mlp
#   MODES=emb SEEDS=0-9 scripts/study.sh runs/study-mlp-sharp --model mlp --soft-target-temperature 0.5
# Work is split over two processes with one thread each (the modes, or one mode's seeds), which
# keeps both cores of a 2-core machine busy without the slowdown of two processes fighting over
# two threads each. emb-fixed (the frozen embedding of Appendix C) needs the emb run of the
# same seed, so it runs after the other modes, its seeds split over the two processes.
# --resume makes the script safe to re-run after an interruption, or with more SEEDS.
set -euo pipefail
OUT=${1:?usage: scripts/study.sh OUT [labelemb train flags]}
shift
# shellcheck source=scripts/study_lib.sh
source "$(dirname "$0")/study_lib.sh"
MODES=${MODES:-baseline,emb,ls,ols}
SEEDS=${SEEDS:-0-2}
mkdir -p "$OUT"
train=(labelemb train --dataset fashion-mnist --out "$OUT" --threads 1 --resume "$@")

seeds=$(expand_seeds "$SEEDS")
others=$(echo ",$MODES," | sed 's/,emb-fixed,/,/g; s/^,//; s/,$//')
if [[ "$others" == *,* ]]; then  # several modes: split the modes
  in_two "$OUT/train" "$others" "${train[@]}" --seeds "$SEEDS" --modes
elif [ -n "$others" ]; then      # one mode: split its seeds
  in_two "$OUT/train" "$seeds" "${train[@]}" --modes "$others" --seeds
fi
if [[ ",$MODES," == *,emb-fixed,* ]]; then
  in_two "$OUT/fixed" "$seeds" "${train[@]}" --modes emb-fixed --embedding "$OUT" --seeds
fi
labelemb report "$OUT" --out "$OUT/report"
if [ -d "$OUT/emb/seed-${seeds%%,*}" ]; then
  labelemb inspect "$OUT/emb/seed-${seeds%%,*}" --out "$OUT/inspect" --hide-diagonal
fi
