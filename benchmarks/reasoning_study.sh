#!/usr/bin/env bash
# The reasoning study behind docs/results/reasoning/ (recipes/reasoning.yaml: an 8-layer d_model 64 model trained
# first on nothing but look-up exams, then on prose mixed with generated reasoning-rich text, primitives scored
# during training). Parts, in order; each resumable (finished runs and their evaluations are reused; published
# small files are restored on a fresh checkout):
#
#   pilot   the fixed-depth baseline on the recipe (1 seed, published as exam-first-pilot): 5-shot primitives
#           (n=200), the fine-tuning probe and the depth analyses; it clears when at least four tasks, one of them a depth-1 variable
#           assignment, have a 95% interval above chance 5-shot, and every probe data seed's accuracy has one too
#   study   baseline, MIDAS, GradStack and LIDAS, 3 seeds, on the recipe (the baseline's seed 0 is the pilot's
#           run): compare (isoplots and accuracy at matched validation loss in its report), 5-shot primitives,
#           the probe (256 examples in batches of 32, 3 data seeds) and the depth analyses (looping the middle
#           block, similarity, depth use). It runs whether or not the pilot cleared, and says which. Each run is
#           evaluated as soon as it finishes, beside the training, and published: only small files are kept, so a
#           run whose model is gone before its probe and analyses would have to be trained again.
#   controls  what DESIGN §5 asks of the study: the baseline's peak LR swept around the recipe's 3e-3 (1.5e-3,
#           6e-3 and 1.2e-2, seed 0; the recipe's is the study's run), MIDAS's own sweep (1.5e-3, 6e-3, 1.2e-2
#           and 2.4e-2, seed 0: growth starts with a small model, whose best LR may differ; 1.2e-2, MIDAS's
#           lowest loss, for both with seeds 0-1; 6e-3, where the look-up forms or not by seed and MIDAS led
#           the baseline on var0_code in seeds 0-1, for both with seeds 0-4), and a shallower control of the
#           same width (5 layers, about two thirds of 8; seeds 0 and 1, paired with the study's baseline) to show
#           whether the full depth pays at this budget; and MIDAS growing early (growth at steps 500, 1250 and
#           2000, seeds 0-1): the growth arms lose the look-up at the data switch (step 2500) while still at depth
#           6; does a grown model already at full depth there hold it like the baseline? Each run's 5-shot
#           primitives (n=200) are scored as it finishes (the probe and the depth analyses are the study's, not
#           repeated here), then the report.
#
# The earlier pilots (a share of synthetic text mixed into prose from the first step, docs/results/reasoning/
# pilot-0.7 and the others) are reproduced by the commands in docs/results/reasoning/README.md.
#
#   bash benchmarks/reasoning_study.sh [pilot|study|controls|all]     (default all; OUT=runs/reasoning)
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
SHALLOW=5
EARLY=0.1,0.15,0.15,0.6  # MIDAS's stage shares with every growth event before the switch (depths 2-4-6-8)
if [ -n "${SMOKE:-}" ]; then  # every step on a tiny model and budget: checks the script, measures nothing
  CFG=(--config reasoning --model.n_layers 4 --model.d_model 32 --model.n_heads 2 --model.vocab_size 512
       --train.steps 24 --train.seq_len 64 --train.warmup_steps 2 --eval.every 12 --eval.primitives_every 12
       --eval.primitives_n 4 --checkpoint.every 12 --data.stages "0=synthetic:0:32:exam:1.0;12=bundled:0.3,synthetic:0.7")
  EVAL=(--n 4 --shots 1) PROBE=(--n-train 8 --seeds 1 --steps 2 --batch-size 4 --eval-every 1 --window 1 --n-test 10)
  ANALYZE=(--k-max 2 --n 2 --batches 1) SEEDS=1 SHALLOW=3 EARLY=0.25,0.75 POLL=${POLL:-2}
fi

evaluate() {  # evaluate PART: primitives, probe and analyses of every run of the comparison (stored ones reused)
  $SW eval "$OUT/$1" "${EVAL[@]}" && $SW probe "$OUT/$1" "${PROBE[@]}" && $SW analyze "$OUT/$1" "${ANALYZE[@]}"
}

evaluate_finished() {  # evaluate_finished PART [primitives]: the same for each finished run whose model is here and
  # whose evaluations are not all stored yet (with `primitives`, its 5-shot primitives only). Only small files are
  # published, so a run left unevaluated when the machine goes has lost its model: it would need training again.
  local run
  for run in "$OUT/$1"/runs/*/seed*; do
    [ -f "$run/result.json" ] && [ -f "$run/final/model.safetensors" ] || continue
    if [ "${2:-}" == primitives ]; then
      [ -f "$run/eval/primitives.json" ] || { $SW eval "$run" "${EVAL[@]}" && publish "$1"; }
      continue
    fi
    [ -f "$run/eval/primitives.json" ] && [ -f "$run/eval/probe.json" ] && [ -f "$run/analysis/looping.json" ] && continue
    { [ -f "$run/eval/primitives.json" ] || $SW eval "$run" "${EVAL[@]}"; } && $SW probe "$run" "${PROBE[@]}" \
      && $SW analyze "$run" "${ANALYZE[@]}" && publish "$1"  # (probe and analyze reuse what they stored)
  done
}

train_and_evaluate() {  # train_and_evaluate PART all|primitives COMPARE_ARGS...: the comparison in the background,
  # each run evaluated (one thread, beside the training) as soon as it finishes, then the comparison's evaluation
  # (`primitives`: the 5-shot primitives alone), then its report
  $SW compare --jobs "$JOBS" "${CFG[@]}" --out "$OUT/$1" "${@:3}" &
  local training=$!
  while kill -0 "$training" 2>/dev/null; do
    OMP_NUM_THREADS=1 evaluate_finished "$1" "$2" || echo "evaluating a finished run failed; retried at the end"
    sleep "${POLL:-60}"
  done
  wait "$training"
  if [ "$2" == primitives ]; then $SW eval "$OUT/$1" "${EVAL[@]}"; else evaluate "$1"; fi
  $SW report "$OUT/$1"
}

PILOT=exam-first-pilot
cleared() {  # did the pilot's baseline clear chance? (5-shot: >= 4 tasks, one a depth-1 assignment, with 95%
  # intervals above chance; the probe: every data seed's 95% interval above chance) prints why
  python - "$OUT/$PILOT" <<'PY'
import json, os, sys
from stackwise.evals.scoring import wilson
pilot = sys.argv[1]
table = json.load(open(f"{pilot}/eval/primitives.json"))["none"]
above = [t for t, e in table.items() if "multiple_choice" in e
         and e["multiple_choice"]["ci95"][0] > e["multiple_choice"]["chance"]]
ok = len(above) >= 4 and any(t.startswith("var1_") for t in above)
why = f"{pilot}: 5-shot above chance on {len(above)} tasks ({', '.join(above) or 'none'})"
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

if [[ $PART == pilot || $PART == all ]]; then
  restore "$PILOT"
  $SW compare --jobs "$JOBS" "${CFG[@]}" --out "$OUT/$PILOT" --seeds 1 --methods none
  $SW eval "$OUT/$PILOT" "${EVAL[@]}"
  $SW probe "$OUT/$PILOT" "${PROBE[@]}"
  $SW analyze "$OUT/$PILOT" "${ANALYZE[@]}"  # published with it: the study's seed 0 where its model is not at hand
  publish "$PILOT"
  cleared || true
fi

if [[ $PART == study || $PART == all ]]; then
  if [ -f "$OUT/$PILOT/eval/primitives.json" ]; then cleared || echo "the pilot did not clear; the study runs on"; fi
  restore study
  reuse "$PILOT" none study none 0  # the same config and seed: one run serves as pilot and as the study's seed 0
  train_and_evaluate study all --seeds $SEEDS --methods none,midas,gradstack,lidas
  publish study
fi

if [[ $PART == controls || $PART == all ]]; then
  restore study
  restore controls
  for seed in 0 1; do  # the recipe's LR: the study's baseline and MIDAS
    reuse study none controls none "$seed"
    reuse study midas controls midas "$seed"
  done
  train_and_evaluate controls primitives --seeds 5 \
      --methods "none:seeds=2,lr-1.5e-3:train.lr=0.0015:seeds=1,lr-6e-3:train.lr=0.006,\
lr-1.2e-2:train.lr=0.012:seeds=2,shallow:model.n_layers=$SHALLOW:seeds=2,\
midas:seeds=2,midas:train.lr=0.0015:seeds=1,midas:train.lr=0.006,midas:train.lr=0.012:seeds=2,\
midas:train.lr=0.024:seeds=1,midas:growth.stage_fractions=[$EARLY]:seeds=2"
  publish controls
fi
echo "reports in $DOC"
