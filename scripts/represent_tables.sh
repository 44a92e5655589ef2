#!/usr/bin/env bash
# Every table of docs/represent.md, one `modalign represent` command each (the commands
# printed there), one after another.
#   MODALIGN_DATA=../shared/data bash scripts/represent_tables.sh runs/represent
# MODALIGN (default: `modalign`) is the command to call, e.g. "python -m modalign";
# ONLY="name ..." runs those tables only.
set -euo pipefail
OUT=${1:-runs/represent}
MODALIGN=${MODALIGN:-modalign}
export OMP_NUM_THREADS=1
tables=(
  "avdigits --dataset avdigits --methods gmc"
  "avdigits-label --dataset avdigits-label --methods gmc"
  "prokaryotic --dataset prokaryotic --methods gmc,otm"
  "3sources --dataset 3sources --methods gmc,otm"
  "orl4 --dataset orl4 --methods gmc,otm"
  # GMC's network at its initial weights through the same probes: what training adds.
  "avdigits-untrained --dataset avdigits --methods gmc-untrained"
  "avdigits-label-untrained --dataset avdigits-label --methods gmc-untrained"
  "prokaryotic-untrained --dataset prokaryotic --methods gmc-untrained"
  "3sources-untrained --dataset 3sources --methods gmc-untrained"
  "orl4-untrained --dataset orl4 --methods gmc-untrained"
  # The multimodal VAEs, trained as in `modalign generate` (docs/generate.md): 1,240 steps.
  "avdigits-vae --dataset avdigits --methods mvae,wvae,wvae-factorised,vae-untrained --epochs 69"
  "mnist-label-vae --dataset mnist-label --methods mvae,wvae,wvae-factorised,vae-untrained --epochs 20"
)
mkdir -p "$OUT"
for spec in "${tables[@]}"; do
  name=${spec%% *}
  [[ -n "${ONLY:-}" && " ${ONLY} " != *" ${name} "* ]] && continue
  # shellcheck disable=SC2086
  $MODALIGN represent ${spec#* } --seeds 5 --out "$OUT/$name" >"$OUT/$name.log" 2>&1 \
    && echo "done $name" || echo "FAILED $name (see $OUT/$name.log)"
done
