#!/usr/bin/env bash
# The tables of docs/transformer.md: one `modalign robustness` command per transformer (the two
# run side by side on two cores), alpha grid {0.1, 1} for CPU time.
#   MODALIGN_DATA=../shared/data bash scripts/transformer_tables.sh runs/transformer
# MODALIGN (default: `modalign`) is the command to call, e.g. "python -m modalign".
set -euo pipefail
OUT=${1:-runs/transformer}
MODALIGN=${MODALIGN:-modalign}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
for model in transformer-late transformer-early; do
  $MODALIGN robustness --dataset avdigits-tokens --models "$model" --align both --alphas 0.1,1 \
    --seeds 5 --out "$OUT/$model" >"$OUT/$model.log" 2>&1 &
done
wait
echo "done: $OUT/transformer-late/results.md, $OUT/transformer-early/results.md"
