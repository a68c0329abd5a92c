#!/usr/bin/env bash
# Issue 13 with today's default head (mlp, length term, 3 epochs): none, uniform and the default mars-abs,
# each without and with noise-aware refinement (--noise soft, --noise drop), matched optimiser steps, 5 seeds.
# Every compare folder of a dataset uses the same grouped splits and pool, so benchmarks/noise_table.py pairs
# their runs by seed on the same test pairs.
#   bash benchmarks/compare_defaults.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_defaults}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5)
for ds in pandalm_testset llmbar hh_rlhf_harmless_base_test; do
  d="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$d" "${c[@]}" --strategies none,uniform,mars-abs --out "$out/$ds/base"
  marsctl compare "$d" "${c[@]}" --strategies none,mars-abs --noise soft --out "$out/$ds/soft"
  marsctl compare "$d" "${c[@]}" --strategies none,mars-abs --noise drop --out "$out/$ds/drop"
  python benchmarks/noise_table.py "$out/$ds"
done
