#!/usr/bin/env bash
# The declared sweep of docs/RESULTS.md (section "Declared sweep"): the label-embedding knobs the
# paper leaves open, one at a time from the classification preset, each trained with the paper's
# MLP recipe on the sweep's own seeds; the setting is chosen on the DEV split only (mean final
# dev error), never on test.
#   scripts/sweep.sh OUT [extra labelemb-train flags...]
#   SEEDS=100-101 scripts/sweep.sh runs/sweep-fashion-mlp --model mlp
# Two processes with one thread each; --resume makes it safe to re-run after an interruption.
set -euo pipefail
OUT=${1:?usage: scripts/sweep.sh OUT [labelemb train flags]}
shift
SEEDS=${SEEDS:-100-101}
# name: flags. "preset" is the paper's setting, the reference every other line is read against.
settings=(
  "preset:"
  "tau-1:--tau 1" "tau-4:--tau 4"
  "alpha-0.5:--alpha 0.5" "alpha-0.99:--alpha 0.99"
  "beta-0.25:--beta 0.25" "beta-0.75:--beta 0.75"
  "hinge-l2:--hinge l2" "hinge-abs:--hinge abs"
  "warmup-550:--warmup-steps 550" "warmup-2750:--warmup-steps 2750"
  "sharp-0.5:--soft-target-temperature 0.5" "sharp-0.25:--soft-target-temperature 0.25"
)
mkdir -p "$OUT"
run_part() {  # every other setting, from $1; the rest are more flags
  local i start=$1
  shift
  for (( i = start; i < ${#settings[@]}; i += 2 )); do
    local name=${settings[i]%%:*} flags=${settings[i]#*:}
    # shellcheck disable=SC2086
    labelemb train --dataset fashion-mnist --modes emb --seeds "$SEEDS" --threads 1 --resume \
      --no-summary --out "$OUT/$name" $flags "$@"
  done
}
run_part 0 "$@" >> "$OUT/sweep-0.log" 2>&1 &
a=$!
run_part 1 "$@" >> "$OUT/sweep-1.log" 2>&1 &
b=$!
wait "$a"; wait "$b"
python3 - "$OUT" <<'PY'
# Mean final dev error per setting (the selection rule), and test error beside it for reading.
import json, statistics, sys
from pathlib import Path
rows = []
for setting in sorted(Path(sys.argv[1]).iterdir()):
    runs = sorted(setting.glob("emb/seed-*/metrics.jsonl"))
    if not runs:
        continue
    last = [json.loads(r.read_text().splitlines()[-1]) for r in runs]
    rows.append((statistics.fmean(x["dev_error"] for x in last), setting.name,
                 statistics.fmean(x["test_error"] for x in last),
                 statistics.fmean(x["test_ece"] for x in last), len(last)))
lines = ["| setting | dev error (%) | test error (%) | raw test ECE (%) | seeds |",
         "|---|---:|---:|---:|---:|"]
lines += [f"| {n} | {100 * d:.2f} | {100 * t:.2f} | {100 * e:.2f} | {k} |"
          for d, n, t, e, k in sorted(rows)]
text = "\n".join(lines) + f"\n\nchosen on dev: {min(rows)[1]}\n"
(Path(sys.argv[1]) / "sweep.md").write_text(text)
print(text)
PY
# The chosen setting's flags, for its re-run on fresh seeds: `labelemb train ... $(cat FILE)`.
chosen=$(sed -n 's/^chosen on dev: //p' "$OUT/sweep.md")
for s in "${settings[@]}"; do
  [ "${s%%:*}" != "$chosen" ] || echo "${s#*:}" > "$OUT/chosen.flags"
done
