#!/usr/bin/env bash
# The selection options of issue 3, each measured against uniform and none on HH-RLHF and PandaLM
# (matched optimiser steps, 5 seeds; same split, pool and seeds as benchmarks/compare_all.sh).
#   bash benchmarks/compare_options.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_options}
export HF_HUB_OFFLINE=1
common=(--protocols steps --seeds 5)
for ds in hh_rlhf_harmless_base_test pandalm_testset; do
  data="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars,mars-abs --alpha 1 --alpha-scale std \
    --out "$out/$ds/alpha-std"
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars,mars-abs --alpha 1 --alpha-scale std \
    --crossfit 5 --out "$out/$ds/crossfit5"
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars --alpha 2 --alpha-scale std \
    --mix-uniform 0.5 --out "$out/$ds/mix0.5"
  marsctl compare "$data" "${common[@]}" --strategies none,uniform,mars --alpha 2 --alpha-scale std \
    --guard --out "$out/$ds/guard"
done
