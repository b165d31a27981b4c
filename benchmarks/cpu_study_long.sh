#!/usr/bin/env bash
# The longer-budget CPU study behind docs/results/cpu-study/long/: the cpu-study recipe with 3x the tokens
# (1500 steps of 16 x 256 tokens = 6.1M tokens, 256-token context), baseline vs GradStack vs MIDAS PROP-1, two seeds,
# scoring the reasoning primitives every 250 steps (isoplot; the last point is the final model); then the
# fine-tuning probe on the seed-0 runs. ~3.5 h on a 2-core CPU (~30 min a run, ~35 min the probe). Resumable:
# finished runs are reused.
#
#   bash benchmarks/cpu_study_long.sh       # OUT=runs/cpu-study/long; reports copied to docs/results/cpu-study/long
set -euo pipefail
OUT=${OUT:-runs/cpu-study/long}
DOC=${DOC:-docs/results/cpu-study/long}
SW="python -m stackwise"

$SW compare --config cpu-study --out "$OUT" --seeds 2 --methods none,gradstack,midas \
    --train.steps 1500 --train.seq_len 256 --eval.primitives_every 250 --checkpoint.every 250
mkdir -p "$DOC"
cp "$OUT"/{report.md,summary.json,calibration.json,compare.json,isoplot.json} "$OUT"/*.png "$DOC/"

# The fine-tuning probe, cut to fit a sitting: 1 data seed, 500 held-out examples, evaluated every 50 steps and
# averaged over the last 2 evaluations (the paper: 3 seeds, 1000 examples, a longer late window).
$SW probe "$OUT" --steps 200 --lr 1e-3 --seeds 1 --eval-every 50 --window 2 --n-test 500 --run-seeds 0
cp "$OUT"/eval/probe.{md,json} "$DOC/"
echo "reports in $DOC"
