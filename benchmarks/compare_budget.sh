#!/usr/bin/env bash
# Issue 13, item 4 with today's default head: the scale-free tilt (mars-abs, alpha = 1/std of the margins) at
# the default budget on the three shared sets, and budgets of 2n and 5n on PandaLM (n ~ 529 training pairs),
# matched steps, 5 seeds, the same splits as benchmarks/compare_defaults.sh (noise_table.py pairs them).
#   bash benchmarks/compare_budget.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_defaults}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5)
for ds in llmbar hh_rlhf_harmless_base_test pandalm_testset; do
  marsctl compare "$shared/data/$ds/pairs.jsonl" "${c[@]}" --strategies mars-abs --alpha 1 --alpha-scale std \
    --out "$out/$ds/tilt"
  python benchmarks/noise_table.py "$out/$ds"
done
P="$shared/data/pandalm_testset/pairs.jsonl"
for b in 1058 2645; do
  marsctl compare "$P" "${c[@]}" --strategies uniform,mars-abs -b "$b" --out "$out/pandalm_testset/budget$b"
  python benchmarks/noise_table.py "$out/pandalm_testset"
done
