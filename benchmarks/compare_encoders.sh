#!/usr/bin/env bash
# Issue 10, lever 2, with today's default head: the static (model2vec) encoder against MiniLM on torch,
# `none` only (training once; matched steps, 5 seeds, the splits of compare_defaults.sh). onnx gives the
# torch vectors (cosine >= 0.9999997, benchmarks/results/encoders.md), so its accuracy is torch's.
#   bash benchmarks/compare_encoders.sh [SHARED_DIR] [OUT_DIR]
#   python benchmarks/noise_table.py OUT_DIR/DATASET   pairs static/none with base/none on the same test pairs
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_encoders}
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5 --strategies none)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  data="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$data" "${c[@]}" --out "$out/$ds/base"
  marsctl compare "$data" "${c[@]}" -p encoder_backend=static --out "$out/$ds/static"
  python benchmarks/noise_table.py "$out/$ds"
done
