#!/usr/bin/env bash
# eda vs an LLM rewriter (SmolLM2-135M through llama.cpp's OpenAI-compatible server) as the augmenter
# of marsctl compare, on the first 300 PandaLM pairs (matched steps, 5 seeds, 2 variants per text).
#   bash scripts/llama_server.sh &   (THREADS=2 PORT=8090)     then:
#   bash benchmarks/compare_backends.sh [SHARED_DIR] [OUT_DIR] [BASE_URL]
set -euo pipefail
shared=${1:-../shared}
out=${2:-benchmarks/results/compare_backends}
url=${3:-http://127.0.0.1:8090/v1}
export HF_HUB_OFFLINE=1
mkdir -p "$out"
head -300 "$shared/data/pandalm_testset/pairs.jsonl" > "$out/pandalm300.jsonl"
common=(--strategies none,uniform,mars --protocols steps --seeds 5 --augment-param n_variants=2)
start=$(date +%s)
marsctl compare "$out/pandalm300.jsonl" "${common[@]}" --backend openai --augment-param "base_url=$url" \
  --augment-param oversample=1 --augment-param max_new_tokens=64 --augment-param concurrency=1 --out "$out/openai"
echo "openai: $(( $(date +%s) - start )) s" | tee -a "$out/timing.txt"
start=$(date +%s)
marsctl compare "$out/pandalm300.jsonl" "${common[@]}" --backend eda --out "$out/eda"
echo "eda: $(( $(date +%s) - start )) s" | tee -a "$out/timing.txt"
# The local transformers backend on the same pairs (same SmolLM2 weights, de-quantised from the GGUF).
start=$(date +%s)
marsctl compare "$out/pandalm300.jsonl" "${common[@]}" --backend rewrite --augment-param oversample=1 \
  --augment-param max_new_tokens=64 --out "$out/rewrite"
echo "rewrite: $(( $(date +%s) - start )) s" | tee -a "$out/timing.txt"
