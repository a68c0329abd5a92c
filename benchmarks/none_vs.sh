#!/usr/bin/env bash
# `none` (training once) with the defaults against `none` with one head option, on the three shared sets;
# matched steps, 5 seeds, the splits of compare_defaults.sh; noise_table.py pairs LABEL/none with base/none.
#   bash benchmarks/none_vs.sh SHARED_DIR OUT_DIR LABEL COMPARE_OPTIONS...
set -euo pipefail
shared=$1 out=$2 label=$3
shift 3
export HF_HUB_OFFLINE=1
c=(--protocols steps --seeds 5 --strategies none)
for ds in llmbar pandalm_testset hh_rlhf_harmless_base_test; do
  data="$shared/data/$ds/pairs.jsonl"
  marsctl compare "$data" "${c[@]}" --out "$out/$ds/base"
  marsctl compare "$data" "${c[@]}" "$@" --out "$out/$ds/$label"
  python benchmarks/noise_table.py "$out/$ds"
done
