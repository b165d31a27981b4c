# Shell functions shared by the study scripts (sourced; they read OUT, the runs' folder, and DOC, the published one).
# A study publishes each part's reports and every finished run's small files under DOC/PART, and restores them into
# OUT/PART on a fresh checkout, so a study continues across machines and sittings.

publish() {  # publish PART: the comparison's report files and each finished run's small files
  local part=$1 src=$OUT/$1 run sub
  mkdir -p "$DOC/$part"
  cp "$src"/{report.md,summary.json,compare.json} "$src"/*.png "$DOC/$part/" 2>/dev/null || true
  cp "$src"/{calibration.json,growth_events.json,isoplot.json,matched_loss.json} "$DOC/$part/" 2>/dev/null || true
  for sub in eval analysis; do  # `stackwise eval|probe|analyze` on the comparison
    if [ -d "$src/$sub" ]; then mkdir -p "$DOC/$part/$sub" && cp "$src/$sub"/*.{json,md,png} "$DOC/$part/$sub/" 2>/dev/null || true; fi
  done
  for run in "$src"/runs/*/seed*; do
    [ -f "$run/result.json" ] || continue
    local dst="$DOC/$part/runs/${run#"$src"/runs/}"
    mkdir -p "$dst"
    cp "$run"/{config.yaml,metrics.jsonl,result.json} "$dst/"
    cp "$run"/{events.jsonl,data.json} "$dst/" 2>/dev/null || true
    for sub in eval analysis; do  # the run's own results (small JSON), reused when its model is gone
      if [ -d "$run/$sub" ]; then mkdir -p "$dst/$sub" && cp "$run/$sub"/*.json* "$dst/$sub/" 2>/dev/null || true; fi
    done
  done
  return 0
}

STUDY_PARTS=()  # the parts this invocation restored, i.e. worked on: published again when it ends, however it ends
publish_parts() {
  local part
  for part in "${STUDY_PARTS[@]}"; do publish "$part"; done
}
# A sitting that ends while a comparison is training (Ctrl-C, SIGTERM, an error) still publishes every run that
# finished, not only what a part publishes when it completes.
trap publish_parts EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

restore() {  # restore PART: finished runs published earlier (small files suffice for reports and reuse) come back
  local part=$1 run
  [[ " ${STUDY_PARTS[*]} " == *" $part "* ]] || STUDY_PARTS+=("$part")
  [ -d "$DOC/$part/runs" ] || return 0
  for run in "$DOC/$part"/runs/*/seed*; do
    local dst="$OUT/$part/runs/${run#"$DOC/$part"/runs/}"
    if [ -f "$run/result.json" ] && [ ! -f "$dst/result.json" ]; then rm -rf "$dst" && mkdir -p "$dst" && cp -r "$run"/. "$dst/"; fi
  done
  if [ -f "$DOC/$part/calibration.json" ] && [ ! -f "$OUT/$part/calibration.json" ]; then
    cp "$DOC/$part/calibration.json" "$OUT/$part/"
  fi
}

reuse() {  # reuse FROM_PART FROM_LABEL TO_PART TO_LABEL SEED: a finished run with the same config serves twice
  local from=$OUT/$1/runs/$2/seed$5 to=$OUT/$3/runs/$4/seed$5
  if [ -f "$from/result.json" ] && [ ! -e "$to" ]; then mkdir -p "$(dirname "$to")" && cp -r "$from" "$to"; fi
}


adopt() {  # adopt OTHER_DOC FROM_PART FROM_LABEL TO_PART TO_LABEL SEED: another study's published run with the same
  # config serves here too (compare refuses it, in one line, if its config differs from the arm's)
  local from=$1/$2/runs/$3/seed$6 to=$OUT/$4/runs/$5/seed$6
  if [ -f "$from/result.json" ] && [ ! -e "$to" ]; then mkdir -p "$(dirname "$to")" && cp -r "$from" "$to"; fi
}
