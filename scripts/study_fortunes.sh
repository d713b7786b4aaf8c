#!/usr/bin/env bash
# The text study of docs/RESULTS.md (section 0, the declared plan): 40 fortune categories, a
# small BERT-style encoder trained from scratch with the unmodified transformers.Trainer
# (examples/hf_text_classification.py, its default 2-epoch recipe), five losses: ce, ls, ols,
# emb, and emb with a sharper soft target (soft_target_temperature 0.5), the same seeds for
# every loss, ONE tokenizer for the whole study (trained once, then copied to the second
# folder: the tokenizers library does not build the same vocabulary twice).
#   scripts/study_fortunes.sh DATA OUT [SEEDS]
#   scripts/study_fortunes.sh runs/fortunes-data runs/study-fortunes 0-9
# DATA comes from `labelemb data prepare fortunes --out DATA` (made here when missing). Runs go
# to OUT/<loss>/seed-<k> and OUT-sharp/emb/seed-<k>; a finished run (its result.json) is
# skipped, so running the script again continues where it stopped. Two processes with one
# thread each, the seeds split between them.
set -euo pipefail
data=${1:?usage: scripts/study_fortunes.sh DATA OUT [SEEDS]}
out=${2:?runs folder}; SEEDS=${3:-0-9}
here=$(dirname "$0")
source "$here/study_lib.sh"
example=(python3 "$here/../examples/hf_text_classification.py" --data "$data" --threads 1)
[ -f "$data/labels.json" ] || labelemb data prepare fortunes --out "$data"
seeds=$(expand_seeds "$SEEDS")
mkdir -p "$out" "$out-sharp"
# The first run alone: it trains the study's tokenizer (OUT/tokenizer), which every later
# process loads instead of training its own.
"${example[@]}" --out "$out" --modes ce --seeds "${seeds%%,*}" >> "$out/train-first.log" 2>&1
in_two "$out/train" "$seeds" "${example[@]}" --out "$out" --modes ce,ls,ols,emb --seeds
[ -f "$out-sharp/tokenizer/tokenizer.json" ] || cp -r "$out/tokenizer" "$out-sharp/"
cmp "$out/tokenizer/tokenizer.json" "$out-sharp/tokenizer/tokenizer.json"  # one vocabulary
in_two "$out-sharp/train" "$seeds" "${example[@]}" --out "$out-sharp" --modes emb \
  --soft-target-temperature 0.5 --seeds
python3 "$here/../examples/summarize_text_runs.py" "$out" "$out-sharp" > "$out/summary.md"
labelemb report "$out" "$out-sharp" --out "$out/report"
labelemb inspect "$out/emb/seed-${seeds%%,*}" --out "$out/inspect" --hide-diagonal --top-k 3
