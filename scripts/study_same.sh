#!/usr/bin/env bash
# Whether runs made again with today's code give the same numbers as a study's earlier runs:
# for every OLD/<mode>/seed-<k> that NEW also has, the per-epoch test_error, dev_error,
# train_loss and test_ece of metrics.jsonl are compared (the largest difference is printed);
# exit 1 if any differs by more than TOL (default 0: the same float32 computation in the same
# order on the same CPU gives the same bits).
#   scripts/study_same.sh OLD NEW [TOL]
#   scripts/study_same.sh runs/study-fashion-cnn runs/check-fashion-cnn
set -euo pipefail
old=${1:?usage: scripts/study_same.sh OLD NEW [TOL]}; new=${2:?NEW}; tol=${3:-0}
python3 - "$old" "$new" "$tol" <<'PY'
import json, sys
from pathlib import Path
old, new, tol = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
keys = ("test_error", "dev_error", "train_loss", "test_ece")
def records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
pairs = [(o, new / o.relative_to(old)) for o in sorted(old.glob("*/seed-*"))
         if (new / o.relative_to(old) / "result.json").is_file()]
if not pairs:
    sys.exit(f"no run of {old} is also finished in {new}")
worst = 0.0
for o, n in pairs:
    a, b = records(o), records(n)
    if len(a) != len(b):
        sys.exit(f"{o.relative_to(old)}: {len(a)} epochs in {old}, {len(b)} in {new}")
    diff = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in keys
               if x.get(k) is not None and y.get(k) is not None)
    worst = max(worst, diff)
    print(f"{o.relative_to(old)}: largest difference {diff:.3g} over {len(a)} epochs")
print(f"{len(pairs)} runs compared; largest difference {worst:.3g}")
sys.exit(0 if worst <= tol else 1)
PY
