#!/usr/bin/env bash
# The optimizer study behind docs/results/optimizers/: does MIDAS's saving survive a better optimizer, and do the
# two add up? AdamW, Muon, SOAP and PSGD-Kron, each as the fixed-depth baseline and with MIDAS, on the robust-growth
# study's recipe (recipes/robust-growth.yaml: the CPU scale at which the full depth pays off; the CPU study's own
# recipe does not, see docs/results/cpu-study). Needs the `optim` extra (pip install -e ".[optim]"). Parts, in order;
# each resumable (rerun: finished runs are reused, interrupted ones resume; published small files are restored on a
# fresh checkout):
#
#   lr     each optimizer's peak-LR sweep on the fixed-depth baseline, 1 seed (AdamW's points are the robust-growth
#          study's own LR sweep, reused when published)
#   main   {AdamW, Muon, SOAP, PSGD} x {baseline, MIDAS}, 5 paired seeds (DESIGN §5: the gaps are hundredths of a
#          nat), each optimizer at its best LR from `lr`. The report prices every run with its own optimizer's step
#          time (calibrated time: optimizer work is counted). AdamW's arms at 3e-3 are the robust-growth final
#          comparison's (seeds 0-2), adopted when published; their seeds 3-4 train here
#
#   bash benchmarks/optimizer_study.sh [lr|main|all]     (default all; OUT=runs/optimizers)
#   SMOKE=1 bash benchmarks/optimizer_study.sh           (the same steps on a tiny model, in minutes: a check)
# JOBS=2: two runs at once, half the threads each (stackwise compare --jobs; more work per second on a small CPU)
set -euo pipefail
PART=${1:-all}
if [ -n "${SMOKE:-}" ]; then OUT=${OUT:-runs/optimizers-smoke} DOC=${DOC:-runs/optimizers-smoke/published}; fi
OUT=${OUT:-runs/optimizers}
DOC=${DOC:-docs/results/optimizers}
SW="python -m stackwise"
JOBS=${JOBS:-1}
source "$(dirname "$0")/study_lib.sh"  # publish, restore, reuse, adopt

CFG=(--config robust-growth)
SEEDS=5
if [ -n "${SMOKE:-}" ]; then  # every step on a tiny model and budget: checks the script, measures nothing
  CFG=(--config robust-growth --model.d_model 32 --model.n_heads 2 --model.vocab_size 512 --train.steps 24
       --train.seq_len 64 --train.warmup_steps 2 --eval.every 12 --checkpoint.every 12)
  SEEDS=1
fi

label() {  # label SPEC: the folder compare gives the arm of that method spec
  python -c 'import sys; from stackwise.compare import parse_methods; print(parse_methods(sys.argv[1])[-1].label)' "$1"
}

# Peak LRs swept per optimizer around the recipe's 3e-3 (AdamW's 3e-3 is the recipe's `none` arm). Muon's update
# RMS is matched to AdamW's and SOAP is Adam in a rotated basis, so their LRs live on AdamW's scale; PSGD-Kron's
# authors advise starting from Adam-like settings and its package default is 1e-3, so its grid reaches lower.
# Sophia-G's step is at most the LR per coordinate (clipped), like a signed Adam step, so its grid is AdamW's too.
# Muon's and SOAP's grids reach 1.2e-2 because the best of their first three was 6e-3, the edge.
declare -A GRID=([adamw]="0.0015 0.006" [muon]="0.0015 0.003 0.006 0.012" [soap]="0.0015 0.003 0.006 0.012"
                 [psgd]="0.001 0.003 0.006" [sophia]="0.0015 0.003 0.006")
OPTIMIZERS=${OPTIMIZERS:-"adamw muon soap psgd"}  # OPTIMIZERS="adamw muon soap psgd sophia" adds Sophia-G

if [[ $PART == lr || $PART == all ]]; then
  restore lr
  if [ -z "${SMOKE:-}" ]; then  # AdamW's sweep is the robust-growth study's: the same configs, trained once
    adopt docs/results/robust-growth lr none lr none 0
    adopt docs/results/robust-growth lr "$(label lr-1.5e-3:train.lr=0.0015)" lr "$(label lr-0.0015:train.lr=0.0015)" 0
    adopt docs/results/robust-growth lr "$(label lr-6e-3:train.lr=0.006)" lr "$(label lr-0.006:train.lr=0.006)" 0
  fi
  METHODS=none
  for opt in $OPTIMIZERS; do
    for lr in ${GRID[$opt]}; do
      if [ "$opt" = adamw ]; then METHODS+=",lr-${lr}:train.lr=${lr}"; else METHODS+=",${opt}-lr-${lr}:optim.name=${opt}:train.lr=${lr}"; fi
    done
  done
  $SW compare --jobs "$JOBS" "${CFG[@]}" --out "$OUT/lr" --seeds 1 --methods "$METHODS"
  publish lr
fi

best_lr() {  # best_lr OPTIMIZER: the peak LR of that optimizer's best arm in the sweep
  local dir=$OUT/lr
  [ -f "$dir/summary.json" ] || dir=$DOC/lr  # a fresh checkout: the published sweep
  python - "$dir" "$1" <<'PY'
import json, sys
out, name = sys.argv[1], sys.argv[2]
spec = json.load(open(f"{out}/compare.json"))
arms = {a["label"]: {**spec["common"], **a["overrides"]} for a in spec["arms"]}
rows = [r for r in json.load(open(f"{out}/summary.json")) if r.get("status") == "ok"]
mine = [r for r in rows if arms[r["method"]].get("optim.name", "adamw") == name]
best = min(mine, key=lambda r: r["final_val_loss"]["mean"])
print(arms[best["method"]].get("train.lr", "0.003"))
PY
}

if [[ $PART == main || $PART == all ]]; then
  restore main
  LR=$(best_lr adamw)
  METHODS="none,midas"
  # the sweep's run at the chosen LR is seed 0 of that optimizer's baseline arm
  if [ "$LR" = "0.003" ]; then reuse lr none main none 0; else reuse lr "$(label "lr-$LR:train.lr=$LR")" main none 0; fi
  if [ "$LR" = "0.003" ] && [ -z "${SMOKE:-}" ]; then  # AdamW's baseline and MIDAS at 3e-3 are the robust-growth
    # study's final comparison's arms, same configs (compare refuses a run whose config differs): trained once
    for ((seed = 0; seed < SEEDS; seed++)); do
      adopt docs/results/robust-growth final none main none $seed
      adopt docs/results/robust-growth final midas main midas $seed
    done
  fi
  for opt in $OPTIMIZERS; do
    [ "$opt" = adamw ] && continue
    olr=$(best_lr "$opt")
    echo "$opt: best peak LR $olr"
    arm="${opt}:optim.name=${opt}:train.lr=${olr}"
    reuse lr "$(label "${opt}-lr-${olr}:optim.name=${opt}:train.lr=${olr}")" main "$(label "$arm")" 0
    METHODS+=",${arm},${opt}-midas:growth.method=midas:optim.name=${opt}:train.lr=${olr}"
  done
  echo "AdamW: best peak LR $LR"
  $SW compare --jobs "$JOBS" "${CFG[@]}" --out "$OUT/main" --seeds "$SEEDS" --train.lr "$LR" --methods "$METHODS"
  publish main
fi
echo "reports in $DOC"
