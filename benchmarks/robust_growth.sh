#!/usr/bin/env bash
# The robust-growth study behind docs/results/robust-growth/ (recipes/robust-growth.yaml: 12 layers, d_model 64,
# vocab 1024, block 2, 4000 steps of 16 x 128 tokens). Parts, in order; each is resumable (rerun the script: finished runs are
# reused, an interrupted run resumes from its last checkpoint), and each part's reports and every finished run's
# small files (config, metrics, events, result) are copied to docs/results/robust-growth/PART after it; on a fresh
# checkout those published runs are restored first, so the study continues across machines:
#
#   pilot   does depth pay here? baseline (12 layers) vs the shallow control (8 layers), 3 seeds
#   lr      the baseline's peak-LR sweep (1 seed; 3e-3 is the pilot's seed 0) and MIDAS's own sweep
#   screen  each stabilizer alone on MIDAS, 2 seeds, at the baseline-tuned LR (the LR drop is 0.9 per event: five
#           events compound it to 0.59)
#   final   5 paired seeds: baseline, MIDAS as published, the best stabilized MIDAS, GradStack, shallow and the
#           equal-compute baseline, at the baseline's LR; MIDAS and the best stabilized MIDAS also at MIDAS's own LR
#
#   bash benchmarks/robust_growth.sh [pilot|lr|screen|final|all]     (default all; OUT=runs/robust-growth)
# JOBS=2: two runs at once, half the threads each (stackwise compare --jobs; more work per second on a small CPU)
set -euo pipefail
PART=${1:-all}
OUT=${OUT:-runs/robust-growth}
DOC=${DOC:-docs/results/robust-growth}
SW=${SW:-python -m stackwise}  # (SW=echo: a dry run that shows the commands)
JOBS=${JOBS:-1}
CFG=robust-growth

source "$(dirname "$0")/study_lib.sh"  # publish, restore, reuse

if [[ $PART == pilot || $PART == all ]]; then
  restore pilot
  $SW compare --jobs "$JOBS" --config $CFG --out "$OUT/pilot" --seeds 3 --methods none,shallow:model.n_layers=8
  publish pilot
fi

if [[ $PART == lr || $PART == all ]]; then
  restore lr
  reuse pilot none lr none 0
  $SW compare --jobs "$JOBS" --config $CFG --out "$OUT/lr" --seeds 1 \
      --methods none,lr-1.5e-3:train.lr=0.0015,lr-6e-3:train.lr=0.006,midas,midas-lr-1.5e-3:growth.method=midas:train.lr=0.0015,midas-lr-6e-3:growth.method=midas:train.lr=0.006
  publish lr
fi

best_lr() {  # best_lr none|midas: the peak LR of that method's best arm in the LR sweep (recipe's own: 3e-3)
  local dir=$OUT/lr
  [ -f "$dir/summary.json" ] || dir=$DOC/lr  # a fresh checkout: the published sweep
  python - "$dir" "$1" <<'PY'
import json, sys
out, family = sys.argv[1], sys.argv[2]
arms = {a["label"]: a["overrides"] for a in json.load(open(f"{out}/compare.json"))["arms"]}
rows = [r for r in json.load(open(f"{out}/summary.json")) if r.get("status") == "ok"]
best = min((r for r in rows if arms[r["method"]].get("growth.method") == family),
           key=lambda r: r["final_val_loss"]["mean"])
print(arms[best["method"]].get("train.lr", "0.003"))
PY
}

screen_part() {  # the screen's folder: `screen` at the recipe's LR; a sweep that moves the LR gets its own folder,
  # so runs published at another LR are never mixed in (compare would refuse them anyway)
  if [ "$1" = "0.003" ]; then echo screen; else echo "screen-lr-$1"; fi
}

if [[ $PART == screen || $PART == all ]]; then
  LR=$(best_lr none)
  SCREEN=$(screen_part "$LR")
  echo "baseline-tuned peak LR: $LR"
  restore "$SCREEN"
  if [ "$LR" = "0.003" ]; then for seed in 0 1; do reuse pilot none screen none $seed; done; fi
  $SW compare --jobs "$JOBS" --config $CFG --out "$OUT/$SCREEN" --seeds 2 --train.lr "$LR" \
      --methods none,midas,midas-rewarm:growth.method=midas:growth.rewarmup_steps=50,midas-drop:growth.method=midas:growth.lr_drop=0.9,midas-depthlr:growth.method=midas:growth.depth_lr_exponent=0.5,midas-noise:growth.method=midas:growth.copy_noise=0.01,midas-identity:growth.method=midas:growth.init=identity,midas-reset-new:growth.method=midas:growth.optimizer_state=reset-new
  publish "$SCREEN"
fi

if [[ $PART == final || $PART == all ]]; then
  restore final
  LR=$(best_lr none)
  MLR=$(best_lr midas)
  SCREEN=$(screen_part "$LR")
  SCREEN_DIR=$OUT/$SCREEN
  [ -f "$SCREEN_DIR/summary.json" ] || SCREEN_DIR=$DOC/$SCREEN  # a fresh checkout: the published screen
  BEST=$(python - "$SCREEN_DIR" <<'PY'
import json, sys
rows = {r["method"]: r for r in json.load(open(f"{sys.argv[1]}/summary.json")) if r.get("status") == "ok"}
arms = {a["label"]: a["overrides"] for a in json.load(open(f"{sys.argv[1]}/compare.json"))["arms"]}
stab = [m for m in rows if m.startswith("midas-")]
best = min(stab, key=lambda m: rows[m]["paired_final_loss_diff"]["mean"])
print(":".join(f"{k}={v}" for k, v in arms[best].items()))
PY
)
  arm_dir() {  # arm_dir LABEL OVERRIDES: the run folder compare gives an arm (LABEL_key-value_...)
    echo "$1_$(echo "$2" | sed 's/=/-/g; s/:/_/g')"
  }
  echo "baseline LR $LR, MIDAS LR $MLR, best stabilized MIDAS: $BEST"
  restore pilot; restore lr; restore "$SCREEN"  # (a fresh checkout: the earlier parts' runs, for reuse)
  if [ "$LR" = "0.003" ]; then
    for seed in 0 1 2; do reuse pilot none final none $seed; reuse pilot shallow_model.n_layers-8 final shallow_model.n_layers-8 $seed; done
    best=$(arm_dir "" "$BEST"); best=${best#_}  # the best stabilizer's overrides as a folder suffix
    for seed in 0 1; do
      reuse screen midas final midas $seed
      # the best stabilizer's screen seeds, under its final label (compare checks that the configs agree)
      for dir in "$OUT/screen/runs/"midas-*_"$best"; do
        reuse screen "$(basename "$dir")" final "midas-stabilized_$best" $seed
      done
    done
    # the LR sweep's MIDAS seed 0 at MIDAS's own LR (if that LR is one of the sweep's)
    for dir in "$OUT/lr/runs/"midas-lr-*_"$(arm_dir "" "growth.method=midas:train.lr=$MLR" | cut -c2-)"; do
      reuse lr "$(basename "$dir")" final "$(arm_dir midas-own-lr "growth.method=midas:train.lr=$MLR")" 0
    done
  fi
  $SW compare --jobs "$JOBS" --config $CFG --out "$OUT/final" --seeds 5 --equal-compute --train.lr "$LR" \
      --methods "none,midas,midas-stabilized:$BEST,gradstack,shallow:model.n_layers=8,midas-own-lr:growth.method=midas:train.lr=$MLR,midas-stabilized-own-lr:$BEST:train.lr=$MLR"
  publish final
fi
echo "reports in $DOC"
