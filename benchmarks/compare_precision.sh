#!/usr/bin/env bash
# Issue 20, item 2's accuracy check: the encoder in bf16 autocast against fp32, the default head, `none` only,
# 5 seeds, paired, on the three shared sets (matched steps, the splits of compare_defaults.sh; noise_table.py
# pairs bf16/none with base/none). Both precisions are named: the default (auto) is itself bf16 on a CPU with
# native bf16. Needs such a CPU (avx512_bf16 or amx_bf16); elsewhere `-p encoder_precision=bf16` stops with exit 2.
#   bash benchmarks/compare_precision.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
shared=${1:-../shared} out=${2:-benchmarks/results/compare_precision}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5 --strategies none)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  data="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$data" "${c[@]}" -p encoder_precision=fp32 --out "$out/$ds/base"
  marsctl compare "$data" "${c[@]}" -p encoder_precision=bf16 --out "$out/$ds/bf16"
  python benchmarks/noise_table.py "$out/$ds"
done
