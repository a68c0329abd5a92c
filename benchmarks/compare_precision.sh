#!/usr/bin/env bash
# Issue 20, item 2's accuracy check: the encoder in bf16 autocast against fp32, today's default head,
# `none` only, 5 seeds, paired (benchmarks/none_vs.sh). Needs a CPU with native bf16 (avx512_bf16 or
# amx_bf16); elsewhere `-p encoder_precision=bf16` stops with exit 2.
#   bash benchmarks/compare_precision.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
bash "$(dirname "$0")/none_vs.sh" "${1:-../shared}" "${2:-benchmarks/results/compare_precision}" bf16 \
  -p encoder_precision=bf16
