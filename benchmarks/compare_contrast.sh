#!/usr/bin/env bash
# Issue 13: cross-prompt contrast pairs (the `contrast` augmenter, RRM) with today's default head, at the
# default budget, with its default loss weight 0.5 and with RRM's weight 1; matched steps, 5 seeds, the same
# splits as benchmarks/compare_defaults.sh. Each compare carries its own `none`, so it pairs directly.
#   bash benchmarks/compare_contrast.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_defaults}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5 --strategies none,uniform,mars-abs --backend contrast)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  for w in 0.5 1; do
    marsctl compare "$shared/data/$ds/pairs.jsonl" "${c[@]}" --augment-param weight=$w --out "$out/$ds/contrast_w$w"
  done
done
