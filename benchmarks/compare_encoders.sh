#!/usr/bin/env bash
# Issue 10, lever 2, with today's default head: the static (model2vec) encoder against MiniLM on torch,
# `none` only (benchmarks/none_vs.sh). onnx gives the torch vectors (cosine >= 0.9999997,
# benchmarks/results/encoders.md), so its accuracy is torch's.
#   bash benchmarks/compare_encoders.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
bash "$(dirname "$0")/none_vs.sh" "${1:-../shared}" "${2:-benchmarks/results/compare_encoders}" static \
  -p encoder_backend=static
