#!/usr/bin/env bash
# The CPU study behind docs/results/cpu-study/: first a peak-LR sweep for the *baseline* (1 seed), then every arm
# with that LR: baseline, GradStack, MIDAS PROP-1 and the equal-compute baseline (3 seeds), a shallower 8-layer
# control, MIDAS PROP-2 and LIDAS (2 seeds each). Resumable: rerun the script and finished runs are reused.
#
#   bash benchmarks/cpu_study.sh            # OUT=runs/cpu-study by default; reports copied to docs/results/cpu-study
set -euo pipefail
OUT=${OUT:-runs/cpu-study}
DOC=${DOC:-docs/results/cpu-study}
SW="python -m stackwise"

$SW compare --config cpu-study --out "$OUT/lr-sweep" \
    --methods none,lr-1.5e-3:train.lr=0.0015,lr-6e-3:train.lr=0.006

# The best final validation loss of the sweep picks the LR every arm then uses (the recipe's own 3e-3 is `none`).
LR=$(python - "$OUT/lr-sweep/summary.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
best = min(rows, key=lambda r: r["final_val_loss"]["mean"])["method"]
print({"none": "0.003", "lr-1.5e-3_train.lr-0.0015": "0.0015", "lr-6e-3_train.lr-0.006": "0.006"}[best])
PY
)
echo "baseline-tuned peak LR: $LR"
if [ "$LR" = "0.003" ] && [ ! -e "$OUT/main/runs/none/seed0" ]; then  # the sweep already ran this exact baseline
  mkdir -p "$OUT/main/runs/none" && cp -r "$OUT/lr-sweep/runs/none/seed0" "$OUT/main/runs/none/seed0"
fi

$SW compare --config cpu-study --out "$OUT/main" --seeds 3 --equal-compute --train.lr "$LR" \
    --methods none,gradstack,midas,midas:growth.alpha=2:seeds=2,lidas:seeds=2,shallow:model.n_layers=8:seeds=2

for part in lr-sweep main; do
  mkdir -p "$DOC/$part"
  cp "$OUT/$part"/{report.md,summary.json,calibration.json,compare.json} "$OUT/$part"/*.png "$DOC/$part/"
done
echo "reports in $DOC"
