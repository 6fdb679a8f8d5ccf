#!/usr/bin/env bash
# The GPU path, measured (see benchmarks/gpu_check.py): run it on a machine with one CUDA GPU, from the
# repository root, after the README's install. It writes benchmarks/gpu_check-<date>.{md,json}; copy the
# figures into benchmarks/README.md ("GPU check"). Under 8 minutes on one GPU. Extra arguments pass through
# (e.g. --parts 2,3). Without a GPU it runs the CPU form and says what it skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py --out "benchmarks/gpu_check-$(date -u +%Y%m%d)" "$@"
