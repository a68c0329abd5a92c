#!/usr/bin/env bash
# docs/results.md: marsctl compare on each shared dataset (defaults: 5 seeds, both protocols).
#   bash benchmarks/compare_all.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare}
export HF_HUB_OFFLINE=1
for ds in hh_rlhf_harmless_base_test pandalm_testset llmbar; do
  start=$(date +%s)
  marsctl compare "$shared/data/$ds/pairs.jsonl" \
    --strategies none,uniform,won,mars,mars-abs,mars-robust --seeds 5 --out "$out/$ds"
  echo "$ds: $(( $(date +%s) - start )) s" | tee -a "$out/timing.txt"
done
