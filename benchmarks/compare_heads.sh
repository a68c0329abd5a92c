#!/usr/bin/env bash
# Issue 13, the head options through marsctl compare (matched steps, 5 seeds, the same splits and pool as
# benchmarks/compare_defaults.sh, so benchmarks/noise_table.py pairs these runs with its base/none and
# base/uniform): a 5-network bootstrap ensemble with the uncertainty selector, and the length term taken out.
#   bash benchmarks/compare_heads.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_defaults}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5)
for ds in pandalm_testset llmbar hh_rlhf_harmless_base_test; do
  d="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$d" "${c[@]}" --strategies none,uniform,uncertainty -p ensemble=5 -p ensemble_resample=true \
    --out "$out/$ds/ensemble"
  marsctl compare "$d" "${c[@]}" --strategies none -p length=off --out "$out/$ds/length_off"
  python benchmarks/noise_table.py "$out/$ds"
done
