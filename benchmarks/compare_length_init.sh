#!/usr/bin/env bash
# Issue 13, the head: the mlp's length term started at its own fit (-p length_init=fit) against today's
# default start at zero, `none` only (training once; matched steps, 5 seeds, the splits of compare_defaults.sh).
#   bash benchmarks/compare_length_init.sh [SHARED_DIR] [OUT_DIR]
#   python benchmarks/noise_table.py OUT_DIR/DATASET   pairs fit/none with base/none on the same test pairs
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_length_init}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5 --strategies none)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  data="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$data" "${c[@]}" --out "$out/$ds/base"
  marsctl compare "$data" "${c[@]}" -p length_init=fit --out "$out/$ds/fit"
  python benchmarks/noise_table.py "$out/$ds"
done
