#!/usr/bin/env bash
# GPU benchmark: the fixed-depth baseline and MIDAS at ~125M parameters (d_model 768, 12 layers, 12 heads,
# seq 1024, bf16 autocast, per-block torch.compile, fused AdamW, TF32) on the bundled corpus; then a markdown report
# (tokens/s, MFU against this card's measured bf16 matmul peak, growth-event cost, loss curves).
# Sized for one H100 in under 10 minutes. Runs from the source tree with no install:
#
#   bash benchmarks/gpu.sh                 # OUT=runs/gpu STEPS=600 BATCH=32 by default
#   SMOKE=1 bash benchmarks/gpu.sh         # a seconds-long CPU rehearsal of the same script (tiny model)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu}
STEPS=${STEPS:-600}
BATCH=${BATCH:-32}
if [ "${SMOKE:-0}" = "1" ]; then
  MODEL=(--model.d_model 64 --model.n_layers 4 --model.n_heads 2 --model.vocab_size 512 --train.seq_len 64
         --train.dtype float32 --train.compile false --train.device cpu)
  STEPS=${STEPS_SMOKE:-24}; BATCH=8
else
  MODEL=(--model.d_model 768 --model.n_layers 12 --model.n_heads 12 --model.vocab_size 8192 --train.seq_len 1024
         --train.dtype bfloat16 --train.compile true --train.device cuda)
fi
COMMON=("${MODEL[@]}" --train.steps "$STEPS" --train.batch_size "$BATCH" --train.warmup_steps $((STEPS / 10))
        --train.lr 1.5e-3 --train.log_every 1 --eval.every $((STEPS / 6)) --eval.batches 4 --eval.sample_tokens 0
        --checkpoint.every 0 --checkpoint.keep 1)
mkdir -p "$OUT"
status=0  # a failed run does not stop the other or the report of what finished; the script still exits non-zero
$PY -m stackwise train "${COMMON[@]}" --growth.method none --out "$OUT/baseline" 2>&1 | tail -n 20 || status=1
$PY -m stackwise train "${COMMON[@]}" --growth.method midas --growth.block_size 2 --growth.alpha 1 \
    --out "$OUT/midas" 2>&1 | tail -n 20 || status=1
$PY benchmarks/gpu_report.py "$OUT" | tee "$OUT/report.md" || status=1
exit $status
