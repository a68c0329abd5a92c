#!/usr/bin/env bash
# Issue 13, the loop side: noise-aware refinement (--noise soft/drop) and the scale-free tilt against none and
# uniform (matched optimiser steps, 5 seeds). Every compare folder of a dataset uses the same grouped splits
# and pool, so benchmarks/noise_table.py pairs their runs by seed on the same test pairs.
#   bash benchmarks/compare_noise.sh [SHARED_DIR] [OUT_DIR]
# These are the runs docs/results.md reports (LLMBar and HH-RLHF: the noise options with strategy none only;
# the augmented noise runs there did not fit the time on the shared machine).
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_noise}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5)
P="$shared/data/pandalm_testset/pairs.jsonl"
marsctl compare "$P" "${c[@]}" --strategies none,uniform,mars-abs --out "$out/pandalm_testset/base"
marsctl compare "$P" "${c[@]}" --strategies none,mars-abs --noise soft --out "$out/pandalm_testset/soft"
marsctl compare "$P" "${c[@]}" --strategies none,mars-abs --noise drop --out "$out/pandalm_testset/drop"
for ds in llmbar hh_rlhf_harmless_base_test; do
  d="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$d" "${c[@]}" --strategies none --out "$out/$ds/base"
  marsctl compare "$d" "${c[@]}" --strategies none --noise soft --out "$out/$ds/soft"
  marsctl compare "$d" "${c[@]}" --strategies none --noise drop --out "$out/$ds/drop"
done
marsctl compare "$P" "${c[@]}" --strategies mars-abs --alpha 1 --alpha-scale std --out "$out/pandalm_testset/tilt"
marsctl compare "$shared/data/llmbar/pairs.jsonl" "${c[@]}" --strategies uniform,mars-abs \
  --out "$out/llmbar/base_uniform"
for ds in pandalm_testset llmbar hh_rlhf_harmless_base_test; do
  python benchmarks/noise_table.py "$out/$ds"
  python benchmarks/budget_tilt.py "$out/$ds/base" > "$out/$ds/budget_tilt.md"
done
