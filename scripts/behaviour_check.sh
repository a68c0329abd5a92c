#!/usr/bin/env bash
# The restructuring check (#19): runs fixed inputs into OUT with the marsctl of the current tree - the old
# README demo (fixtures/hh_train + hh_test, 3 rounds), a small compare (120 pairs, 2 seeds, 3 strategies) and
# a re-render (`marsctl report`) of every compare folder kept under KEPT (default benchmarks/results).
# Run it before and after a change, then: python scripts/compare_trees.py OUT_BEFORE OUT_AFTER
#   usage: scripts/behaviour_check.sh OUT [KEPT]      (MARSCTL: the marsctl command, default .venv/bin/marsctl)
set -euo pipefail
out=${1:?usage: behaviour_check.sh OUT [KEPT]}
kept=${2:-benchmarks/results}
marsctl=${MARSCTL:-.venv/bin/marsctl}
export HF_HUB_OFFLINE=1
mkdir -p "$out/reports"
$marsctl refine fixtures/hh_train.jsonl --eval fixtures/hh_test.jsonl --rounds 3 --out "$out/demo" 2>"$out/demo.stderr"
head -n 120 fixtures/hh_train.jsonl > "$out/compare_input.jsonl"
$marsctl compare "$out/compare_input.jsonl" --seeds 2 --strategies none,uniform,mars --out "$out/compare" 2>"$out/compare.stderr"
find "$kept" -name report.json | sort | while read -r rep; do
  d=$(dirname "$rep"); name=$(echo "${d#"$kept"/}" | tr '/' '_')
  $marsctl report "$d" -o "$out/reports/$name.html" 2>>"$out/reports.stderr" || echo "FAILED $d" >>"$out/reports.stderr"
done
