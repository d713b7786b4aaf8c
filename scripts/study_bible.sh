#!/usr/bin/env bash
# The bible-en-es study of docs/RESULTS.md (section 0, the declared plan): baseline vs emb, the
# same small recipe for a 2-core CPU, one thread per run, one process per core (baseline on
# one, emb on the other), every seed trained to the same budget of updates; the test set is
# decoded with beam 5 from the best-dev checkpoint and scored with sacrebleu (result.json's
# test_bleu), then the report and the nearest words of the ten words declared in RESULTS.md.
#   scripts/study_bible.sh DATA OUT [SEEDS] [BUDGET]
#   scripts/study_bible.sh runs/bible-data runs/study-bible 1-5 3600
# DATA comes from `labelemb data prepare bible-en-es --out DATA`. Runs go to OUT/<mode>/seed-<k>
# (`labelemb seq2seq train --modes ... --seeds ...`), which resumes seed by seed: running the
# script again continues where it stopped (--max-steps may change on --resume, so a larger
# BUDGET extends every run).
set -euo pipefail
data=${1:?usage: scripts/study_bible.sh DATA OUT [SEEDS] [BUDGET]}
out=${2:?runs folder}; seeds=${3:-1-5}; budget=${4:-3600}
# The soft-target term starts after 100 updates (--warmup-steps): the paper waits 20,000 of
# 52,000; a run of a few thousand updates needs it early. Dev BLEU is greedy on the first 200
# dev verses every 100 updates; best.pt keeps the best.
recipe=(--task parallel --data-dir "$data" --src-lang en --tgt-lang es
        --emb-dim 128 --hidden 256 --layers 1 --batch-size 64 --vocab-size 4000
        --max-train-len 50 --epochs 20 --max-steps "$budget" --eval-every 100
        --dev-max-pairs 200 --dev-beam 1 --beam 5 --warmup-steps 100 --max-len 100
        --threads 1 --seeds "$seeds" --out "$out" --resume)
# (--epochs 20 does not bind: 3,600 updates of 64 pairs are 8.5 epochs of the 27,039 pairs.)
mkdir -p "$out"
labelemb seq2seq train "${recipe[@]}" --modes baseline >> "$out/baseline.log" 2>&1 &
a=$!
labelemb seq2seq train "${recipe[@]}" --modes emb --chunked-loss >> "$out/emb.log" 2>&1 &
b=$!
wait "$a"; wait "$b"
labelemb report "$out" --out "$out/report"
# ten Spanish words declared before training (RESULTS.md section 3): Table-5-style neighbours
words=(blanco padre madre hermano hija lluvia viento nube fuego pan)
source "$(dirname "$0")/study_lib.sh"
IFS=, read -r -a each <<< "$(expand_seeds "$seeds")"
for s in "${each[@]}"; do
  # written whole or not at all; a seed whose weights a later session no longer has keeps its file
  [ -f "$out/neighbours-seed-$s.txt" ] && [ ! -f "$out/emb/seed-$s/best.pt" ] && continue
  labelemb seq2seq neighbours "$out/emb/seed-$s" "${words[@]}" -k 5 > "$out/neighbours-seed-$s.tmp"
  mv "$out/neighbours-seed-$s.tmp" "$out/neighbours-seed-$s.txt"
done
