#!/usr/bin/env bash
# The tables of docs/transformer.md: both transformers, alignment off and on (the paper's alpha
# grid, chosen on validation), the modality-dropout baselines, 5 seeds, in one command that
# trains two models at a time on the machine's two cores.
#   MODALIGN_DATA=../shared/data bash scripts/transformer_tables.sh runs/transformer
# MODALIGN (default: `modalign`) is the command to call, e.g. "python -m modalign".
set -euo pipefail
OUT=${1:-runs/transformer}
MODALIGN=${MODALIGN:-modalign}
mkdir -p "$OUT"
$MODALIGN robustness --dataset avdigits-tokens \
  --models transformer-late,transformer-early --align both --seeds 5 --jobs 2 \
  --out "$OUT" 2>&1 | tee "$OUT/run.log"
echo "done: $OUT/results.md"
