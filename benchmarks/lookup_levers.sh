#!/bin/bash
# The look-up toy's lever screen for the second hop's plateau (docs/results/reasoning/README.md, "What a 30-minute
# pilot would need"): the fixed toy of the long run (`--steps 40000`, whose hop jumped at ~30,500), one option
# changed per run, each stopped at step STOP (default 12,000: a lever that helps a 30-minute pilot must bring the jump
# before it). The `small` levers are a curriculum rather than an optimiser setting: problems of two or three numbers
# and one alias (fewer distractors) up to step 3000, 6000 or 12,000, the usual problems after; small6k-seed1 repeats
# small6k with another init and stream; mix6k makes only half the problems small up to step 6000 (the usual ones
# beside them teach the direct look-up by name, which the small ones alone do not), mix6k-seed1 with another init and
# stream, and mix-all keeps the half-and-half mix to the end (mix-all-seed1 with another init and stream, mix75-all
# with three problems in four small); none-seed1 and none-seed2 change no option, only the init and stream
# (`--seed`), to measure how far the plateau's end moves by seed alone. abcd, conv and abcd-conv change the
# architecture instead: Canon layers at all four of the paper's sites (`--canon ABCD`), the toy's Canon A initialised
# as PyTorch's Conv1d (`--canon-init conv`, as the paper's reference code does) rather than as the identity, and
# both; abcd-mix puts the four sites and mix-all's half-and-half curriculum together, and abcd-seed1 and
# abcd-mix-seed1 repeat abcd and abcd-mix with another init and stream. Resumable: a run saved under runs/toy/lever-NAME
# continues where it stopped, and a finished one returns at once. One thread per run
# (OMP_NUM_THREADS=1), run after run.
#
#     bash benchmarks/lookup_levers.sh [NAME ...]     # default: every lever below, in order
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
STOP=${STOP:-12000}
declare -A LEVERS=([lr6e-3]="--lr 0.006" [gain2]="--attn-gain 2" [wd0]="--weight-decay 0" [gain0.5]="--attn-gain 0.5"
         [small6k]="--small 6000" [small3k]="--small 3000" [small12k]="--small 12000"
         [small6k-seed1]="--small 6000 --seed 1" [mix6k]="--small 6000 --small-share 0.5"
         [mix6k-seed1]="--small 6000 --small-share 0.5 --seed 1" [mix-all]="--small 40000 --small-share 0.5"
         [mix-all-seed1]="--small 40000 --small-share 0.5 --seed 1" [mix75-all]="--small 40000 --small-share 0.75"
         [none-seed1]="--seed 1" [none-seed2]="--seed 2" [abcd]="--canon ABCD" [conv]="--canon-init conv"
         [abcd-conv]="--canon ABCD --canon-init conv" [abcd-mix]="--canon ABCD --small 40000 --small-share 0.5"
         [abcd-seed1]="--canon ABCD --seed 1" [abcd-mix-seed1]="--canon ABCD --small 40000 --small-share 0.5 --seed 1")
ORDER=(lr6e-3 gain2 wd0 gain0.5 small6k small3k small12k small6k-seed1 mix6k mix6k-seed1 mix-all mix-all-seed1
       mix75-all none-seed1 none-seed2 abcd conv abcd-conv abcd-mix abcd-seed1 abcd-mix-seed1)
mkdir -p runs/toy
for name in "${@:-${ORDER[@]}}"; do
  [[ -n "${LEVERS[$name]:-}" ]] || { echo "unknown lever $name (one of: ${ORDER[*]})" >&2; exit 2; }
  # shellcheck disable=SC2086  # (the options split into words on purpose)
  python benchmarks/lookup_toy.py --aliases --canon-only --steps 40000 --every 1000 ${LEVERS[$name]} \
    --save "runs/toy/lever-$name" --stop "$STOP" >> "runs/toy/lever-$name.txt" 2>> "runs/toy/lever-$name.log"
  tail -n 1 "runs/toy/lever-$name.log"
done
