#!/usr/bin/env bash
# Issue 13, the head: the mlp's length term started at its own fit (-p length_init=fit) against today's
# default start at zero, `none` only (benchmarks/none_vs.sh).
#   bash benchmarks/compare_length_init.sh [SHARED_DIR] [OUT_DIR]
set -euo pipefail
bash "$(dirname "$0")/none_vs.sh" "${1:-../shared}" "${2:-benchmarks/results/compare_length_init}" fit -p length_init=fit
