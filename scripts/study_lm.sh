#!/usr/bin/env bash
# The language-model studies of docs/RESULTS.md (section 0, the declared plan; issue 28): a small
# GPT-2 trained from scratch on the King James Version (examples/hf_causal_lm.py: ce, ls, emb)
# and a small Marian model on bible-en-es (examples/hf_translation.py: ce, emb), each with its
# example's default recipe, the same seeds for every loss, one tokenizer per study.
#   scripts/study_lm.sh OUT [SEEDS]
#   scripts/study_lm.sh studies/lm 0-2
# The data folders are made when missing: runs/bible-lm and runs/bible-en-es (`labelemb data
# prepare`). Runs go to OUT/kjv/<loss>/seed-<k> and OUT/bible-en-es/<loss>/seed-<k>; a finished
# run (its result.json) is skipped, so running the script again continues where it stopped (a
# run it interrupted starts again). Two processes, one thread each: the first trains the KJV
# study's tokenizer and its ce and emb runs; the second the translation study's, then the KJV
# study's ls runs (the tokenizer exists by then: each study trains its own exactly once).
set -euo pipefail
out=${1:?usage: scripts/study_lm.sh OUT [SEEDS]}; SEEDS=${2:-0-2}
here=$(dirname "$0")
lm_data=runs/bible-lm mt_data=runs/bible-en-es
[ -f "$lm_data/train.txt" ] || labelemb data prepare bible-lm --out "$lm_data"
[ -f "$mt_data/train.en" ] || labelemb data prepare bible-en-es --out "$mt_data"
mkdir -p "$out/kjv" "$out/bible-en-es"
causal=(python3 "$here/../examples/hf_causal_lm.py" --data "$lm_data" --out "$out/kjv"
        --threads 1 --seeds "$SEEDS")
translation=(python3 "$here/../examples/hf_translation.py" --data "$mt_data"
             --out "$out/bible-en-es" --threads 1 --seeds "$SEEDS")
"${causal[@]}" --modes ce,emb >> "$out/kjv/train-0.log" 2>&1 &
first=$!
{ "${translation[@]}" --modes ce,emb >> "$out/bible-en-es/train.log" 2>&1
  while [ ! -f "$out/kjv/tokenizer/tokenizer.json" ]; do  # the first process trains it
    kill -0 "$first" 2>/dev/null || exit 1                # ... unless it died first
    sleep 10
  done
  "${causal[@]}" --modes ls >> "$out/kjv/train-1.log" 2>&1; } &
second=$!
status=0
wait "$first" || status=$?
wait "$second" || status=$?
[ "$status" -eq 0 ] || exit "$status"
"${causal[@]}" --modes ce,ls,emb > "$out/kjv/summary.txt"     # every run done: only the tables
"${translation[@]}" --modes ce,emb > "$out/bible-en-es/summary.txt"
labelemb report "$out" --out "$out/report"
