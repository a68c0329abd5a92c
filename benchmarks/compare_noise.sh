#!/usr/bin/env bash
# Issue 13, the loop side: noise-aware refinement (--noise soft/drop), the scale-free tilt, and budgets of
# n, 2n and 5n, each against none and uniform (matched optimiser steps, 5 seeds; the same grouped splits and
# pool as benchmarks/compare_all.sh, so runs of different compare folders pair up by seed).
#   bash benchmarks/compare_noise.sh [SHARED_DIR] [OUT_DIR] [DATASET ...]
# then: python benchmarks/noise_table.py OUT_DIR/DATASET
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_noise}
shift 2 || true
datasets=("${@:-pandalm_testset llmbar hh_rlhf_harmless_base_test}")
export HF_HUB_OFFLINE=1
common=(--protocols steps --seeds 5)
for ds in ${datasets[@]}; do
  data="$shared/data/$ds/pairs.jsonl"
  d="$out/$ds"
  start=$(date +%s)
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars-abs --out "$d/base"
  marsctl compare "$data" "${common[@]}" --strategies mars-abs --alpha 1 --alpha-scale std --out "$d/tilt"
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars-abs --noise soft --out "$d/soft"
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars-abs --noise drop --out "$d/drop"
  echo "$ds: $(( $(date +%s) - start )) s" | tee -a "$out/timing.txt"
done
