#!/usr/bin/env bash
# The reasoning study behind docs/results/reasoning/ (recipes/reasoning.yaml: an 8-layer d_model 64 model on prose
# mixed with generated reasoning-rich text, primitives scored during training). Parts, in order; each resumable
# (finished runs and their evaluations are reused; published small files are restored on a fresh checkout):
#
#   pilot   the fixed-depth baseline at synthetic shares 0.7, 0.4, 0.1 and 0.2, in that order, each only while needed
#           (1 seed each): 5-shot primitives (n=200), then the fine-tuning probe if those clear; the smallest share
#           at which at least four tasks, one of them a depth-1 variable assignment, have a 95% interval above
#           chance 5-shot, and every probe data seed's accuracy has one too, is the study's share
#   study   baseline, MIDAS, GradStack and LIDAS, 3 seeds, at that share: compare (isoplots and accuracy at
#           matched validation loss in its report), 5-shot primitives, the probe (256 examples in batches of 32,
#           3 data seeds) and the depth analyses (looping the middle block, similarity, depth use)
#
#   bash benchmarks/reasoning_study.sh [pilot|study|all]     (default all; OUT=runs/reasoning)
#   SMOKE=1 bash benchmarks/reasoning_study.sh               (the same steps on a tiny model, in minutes: a check)
# JOBS=2: two runs at once, half the threads each (stackwise compare --jobs; more work per second on a small CPU)
set -euo pipefail
PART=${1:-all}
if [ -n "${SMOKE:-}" ]; then OUT=${OUT:-runs/reasoning-smoke} DOC=${DOC:-runs/reasoning-smoke/published}; fi
OUT=${OUT:-runs/reasoning}
DOC=${DOC:-docs/results/reasoning}
SW="python -m stackwise"
JOBS=${JOBS:-1}
source "$(dirname "$0")/study_lib.sh"  # publish, restore, reuse

CFG=(--config reasoning)
EVAL=(--n 200)
PROBE=(--n-train 256 --seeds 3 --steps 200 --batch-size 32 --lr 1e-3 --eval-every 40 --window 3)
ANALYZE=(--k-max 4 --n 100)
SEEDS=3
if [ -n "${SMOKE:-}" ]; then  # every step on a tiny model and budget: checks the script, measures nothing
  CFG=(--config reasoning --model.n_layers 4 --model.d_model 32 --model.n_heads 2 --model.vocab_size 512
       --train.steps 24 --train.seq_len 64 --train.warmup_steps 2 --eval.every 12 --eval.primitives_every 12
       --eval.primitives_n 4 --checkpoint.every 12)
  EVAL=(--n 4 --shots 1) PROBE=(--n-train 8 --seeds 1 --steps 2 --batch-size 4 --eval-every 1 --window 1 --n-test 10)
  ANALYZE=(--k-max 2 --n 2 --batches 1) SEEDS=1
fi

evaluate() {  # evaluate PART: primitives, probe and analyses of every run of the comparison (stored ones reused)
  $SW eval "$OUT/$1" "${EVAL[@]}" && $SW probe "$OUT/$1" "${PROBE[@]}" && $SW analyze "$OUT/$1" "${ANALYZE[@]}"
}

SHARES="0.1 0.2 0.4 0.7"
cleared() {  # cleared SHARE [5shot]: did that pilot's baseline clear chance? (5-shot: >= 4 tasks, one a depth-1
  # assignment, with 95% intervals above chance; the probe: every data seed's 95% interval above chance; `5shot`
  # checks the first part alone) prints why
  python - "$OUT/pilot-$1" "${2:-all}" <<'PY'
import json, os, sys
from stackwise.evals.scoring import wilson
pilot, part = sys.argv[1:]
table = json.load(open(f"{pilot}/eval/primitives.json"))["none"]
above = [t for t, e in table.items() if "multiple_choice" in e
         and e["multiple_choice"]["ci95"][0] > e["multiple_choice"]["chance"]]
ok = len(above) >= 4 and any(t.startswith("var1_") for t in above)
why = f"{pilot}: 5-shot above chance on {len(above)} tasks ({', '.join(above) or 'none'})"
if part == "all":
    path = f"{pilot}/runs/none/seed0/eval/probe.json"
    if os.path.exists(path):
        probe = json.load(open(path))
        n_test = probe["config"]["n_test"]
        lows = [wilson(round(s["late_accuracy"] * n_test), n_test)[0] for s in probe["per_seed"]]
        ok = ok and min(lows) > probe["chance"]
        why += f"; probe's lowest 95% bound {min(lows):.1%} (chance {probe['chance']:.0%})"
    else:
        ok, why = False, why + "; probe not run"
print(f"{why}: {'cleared' if ok else 'not cleared'}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

pilot() {  # pilot SHARE: the baseline at that synthetic share, evaluated and published; succeeds if it cleared.
  # The probe (the slow part) runs only when 5-shot clears: the share needs both.
  restore "pilot-$1"
  # (errexit is off inside a function called from a || list: a failed step ends the script explicitly)
  $SW compare --jobs "$JOBS" "${CFG[@]}" --out "$OUT/pilot-$1" --seeds 1 --methods none \
      --data.mix "bundled:$(python -c "print(round(1 - $1, 4))"),synthetic:$1" || exit 1
  $SW eval "$OUT/pilot-$1" "${EVAL[@]}" || exit 1
  if cleared "$1" 5shot; then $SW probe "$OUT/pilot-$1" "${PROBE[@]}" || exit 1; fi
  publish "pilot-$1"
  cleared "$1"
}

if [[ $PART == pilot || $PART == all ]]; then
  # a search down the shares: the largest first (if even it does not clear, no share will, and the recipe's budget
  # is what must change); while one clears, the next smaller (0.4, then the smallest, 0.1); 0.2 only when 0.4
  # cleared and 0.1 did not
  pilot 0.7 && { pilot 0.4 && { pilot 0.1 || pilot 0.2 || true; } || true; } || true
fi

if [[ $PART == study || $PART == all ]]; then
  SHARE=""
  for share in $SHARES; do  # the smallest share whose pilot cleared chance
    if [ -f "$OUT/pilot-$share/eval/primitives.json" ] && cleared "$share"; then SHARE=$share; break; fi
  done
  if [ -z "$SHARE" ]; then
    SHARE=${SHARES##* }
    echo "no pilot share cleared chance; using the largest, $SHARE"
  fi
  echo "synthetic share: $SHARE"
  restore study
  $SW compare --jobs "$JOBS" "${CFG[@]}" --out "$OUT/study" --seeds $SEEDS --methods none,midas,gradstack,lidas \
      --data.mix "bundled:$(python -c "print(round(1 - $SHARE, 4))"),synthetic:$SHARE"
  evaluate study
  $SW report "$OUT/study"
  publish study
fi
echo "reports in $DOC"
