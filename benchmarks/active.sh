#!/usr/bin/env bash
# Issue 22: does choosing which pairs to label save labels? The labeling simulation (marsctl active simulate) on the
# three shared sets with the default frozen-embedding head (mlp on cached MiniLM, retrained each round): labels
# hidden, a random seed of 50, +50 a round for 8 rounds (450 labels), strategies random (the reference), margin,
# diverse and fisher, 5 seeds, one prompt-grouped 70/30 test split (split seed 0). Embeddings are computed once per
# set (the encoder cache). The full reports go to a scratch folder; benchmarks/results/active/ keeps table.md and
# a summary (benchmarks/active_summary.py).
#   bash benchmarks/active.sh [SHARED_DIR] [SCRATCH_DIR] [HEAD_PARAM ...]
# The second table of docs/labeling.md (the head trained 10 epochs a round):
#   RESULTS=benchmarks/results/active/epochs10 bash benchmarks/active.sh DATA_ROOT runs/active10 epochs=10
set -euo pipefail
shared=${1:-../shared} scratch=${2:-runs/active} results=${RESULTS:-benchmarks/results/active}
shift $(( $# > 2 ? 2 : $# ))
params=()
for p in "$@"; do params+=(-p "$p"); done
export HF_HUB_OFFLINE=1
for ds in pandalm_testset llmbar hh_rlhf_harmless_base_test; do
  marsctl active simulate "$shared/data/$ds/pairs.jsonl" --seed-labels 50 --per-round 50 --rounds 8 --seeds 5 \
    --strategies random,margin,diverse,fisher "${params[@]}" --out "$scratch/$ds"
done
python benchmarks/active_summary.py "$scratch" "$results"
