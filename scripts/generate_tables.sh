#!/usr/bin/env bash
# Every table of docs/generate.md, one `modalign generate` command each (the commands printed
# there), one after another.
#   MODALIGN_DATA=../shared/data bash scripts/generate_tables.sh runs/generate
# MODALIGN (default: `modalign`) is the command to call, e.g. "python -m modalign";
# ONLY="name ..." runs those tables only.
set -euo pipefail
OUT=${1:-runs/generate}
MODALIGN=${MODALIGN:-modalign}
export OMP_NUM_THREADS=1
tables=(
  "mnist-label --dataset mnist-label"
  "avdigits --dataset avdigits"
  "digits-label --dataset digits-label"
)
mkdir -p "$OUT"
for spec in "${tables[@]}"; do
  name=${spec%% *}
  [[ -n "${ONLY:-}" && " ${ONLY} " != *" ${name} "* ]] && continue
  # shellcheck disable=SC2086
  $MODALIGN generate ${spec#* } --seeds 5 --out "$OUT/$name" >"$OUT/$name.log" 2>&1 \
    && echo "done $name" || echo "FAILED $name (see $OUT/$name.log)"
done
