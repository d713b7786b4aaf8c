#!/usr/bin/env bash
# The bible-en-es study of docs/RESULTS.md: baseline vs emb with one small recipe for a busy
# 2-core CPU, on one thread. The two runs advance in turns of STEP updates (--max-steps may
# change on --resume), so whenever the study is stopped both have trained equally long;
# running the script again continues where it stopped.
#   scripts/study_bible.sh DATA RUNS SEED [UPTO] [STEP]
#   MODES=emb scripts/study_bible.sh ...   one mode only (run the other beside it, one per core;
#                                           then the two are not kept equally long when stopped)
# DATA comes from `labelemb data prepare bible-en-es --out DATA`. The test set is scored
# afterwards from best.pt: labelemb seq2seq evaluate RUN --src DATA/test.en --ref DATA/test.es
set -euo pipefail
data=${1:?data folder}; runs=${2:?runs folder}; seed=${3:-1}; upto=${4:-1800}; step=${5:-100}
# The soft-target term starts after 100 updates (--warmup-steps): the paper waits 20,000 of
# 52,000; here the run's length is not known in advance, so early, for a run of a few hundred
# updates or more.
recipe=(--task parallel --data-dir "$data" --src-lang en --tgt-lang es --test-prefix none
        --emb-dim 128 --hidden 256 --layers 1 --batch-size 64 --vocab-size 4000
        --max-train-len 50 --epochs 10 --eval-every 100 --dev-max-pairs 200
        --warmup-steps 100 --max-len 100 --threads 1)
MODES=${MODES:-baseline,emb}  # comma-separated, as in study.sh
for ((n = step; n <= upto; n += step)); do
  for mode in ${MODES//,/ }; do
    extra=(); [ "$mode" = emb ] && extra=(--chunked-loss)
    out="$runs/bible-$mode-s$seed"
    flag=(); [ -f "$out/config.json" ] && flag=(--resume)
    python -m labelemb seq2seq train "${recipe[@]}" "${extra[@]}" --mode "$mode" --seed "$seed" \
      --out "$out" --max-steps "$n" "${flag[@]}"
  done
done
