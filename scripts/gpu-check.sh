#!/usr/bin/env bash
# GPU check for the transformer head: train + score at a realistic size, print pairs/s, peak GPU
# memory and held-out accuracy. See docs/transformer.md.
#
#   scripts/gpu-check.sh --prepare     # here: write .gpu-carry/ (MiniLM in fp16 + ../shared/data pairs)
#   scripts/gpu-check.sh               # on the GPU machine (no internet; carry .gpu-carry)
#   GPU_CHECK_TINY=1 scripts/gpu-check.sh   # the same, tiny, on CPU
#
# It needs torch, transformers and accelerate (the GPU image has them), and rich for marsctl's
# stderr output; marsctl itself runs from the checkout (PYTHONPATH), nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ "${1:-}" == "--prepare" ]]; then
    exec "$PY" scripts/gpu_check.py prepare
fi
export PYTHONPATH="$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MARSCTL_NO_PROGRESS=1 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PYEOF'
import importlib.metadata as md
for n in ("torch", "transformers", "accelerate", "tokenizers", "safetensors", "rich"):
    try:
        print(n, md.version(n))
    except md.PackageNotFoundError:
        print(n, "MISSING")
PYEOF
exec "$PY" scripts/gpu_check.py run
