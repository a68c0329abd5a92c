#!/usr/bin/env bash
# Issue 13: noise-aware refinement on the 5-network bootstrap ensemble (its cross-fitted margins flag the
# suspects), against the same ensemble's `none`; matched steps, 5 seeds, the splits of compare_defaults.sh.
#   bash benchmarks/compare_ensemble_noise.sh [SHARED_DIR] [OUT_DIR]
#   python benchmarks/noise_table.py OUT_DIR/DATASET   pairs each run with base/none on the same test pairs
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_ensemble_noise}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5 --strategies none -p ensemble=5 -p ensemble_resample=true)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  data="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$data" "${c[@]}" --out "$out/$ds/base"
  for mode in soft drop; do
    marsctl compare "$data" "${c[@]}" --noise "$mode" --out "$out/$ds/$mode"
  done
  python benchmarks/noise_table.py "$out/$ds"
done
