#!/usr/bin/env bash
# Issue 13, item 4 with today's default head: the scale-free tilt (mars-abs, alpha = 1/std of the margins) at
# the default budget, and budgets of 2n and 5n (n = the training pairs of a split: ~1,615 HH-RLHF, ~529
# PandaLM, ~693 LLMBar), on the three shared sets; matched steps, 5 seeds, the same splits as
# benchmarks/compare_defaults.sh. The budget runs carry their own `none`, so compare pairs them directly.
#   bash benchmarks/compare_budget.sh [SHARED_DIR] [OUT_DIR] [tilt|budget|all]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_defaults}
what=${3:-all}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5)
declare -A n=([llmbar]=693 [pandalm_testset]=529 [hh_rlhf_harmless_base_test]=1615)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  data="$shared/data/$ds/pairs.jsonl"
  if [ "$what" != budget ]; then
    marsctl compare "$data" "${c[@]}" --strategies mars-abs --alpha 1 --alpha-scale std --out "$out/$ds/tilt"
    python benchmarks/noise_table.py "$out/$ds"
  fi
  if [ "$what" != tilt ]; then
    for k in 2 5; do
      marsctl compare "$data" "${c[@]}" --strategies none,uniform,mars-abs -b $(( k * n[$ds] )) \
        --out "$out/$ds/budget${k}n"
    done
  fi
done
