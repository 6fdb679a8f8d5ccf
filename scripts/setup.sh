#!/usr/bin/env bash
# Install everything the tests need on Debian or Ubuntu, as root or as a user with sudo:
#   apt: Debian's Fashion-MNIST (the real-data tests) and a one-node Slurm (the executor tests);
#   pip: mixbench in editable mode with every extra.
# Stops at the first step that fails, with its exit code (a root shell without sudo, a container without apt,
# a pip error): nothing is skipped silently. Set PYTHON to choose the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if [ "$(id -u)" -eq 0 ]; then
  as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  as_root() { sudo "$@"; }
else
  echo "scripts/setup.sh: apt-get needs root: run this as root, or install sudo" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "scripts/setup.sh: apt-get not found: this script is for Debian or Ubuntu; elsewhere install" \
       "Fashion-MNIST and Slurm yourself, then: $PYTHON -m pip install -e '.[all]'" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends dataset-fashion-mnist slurm-wlm munge
"$PYTHON" -m pip install -e ".[all]"
echo "scripts/setup.sh: done; run the tests with: $PYTHON -m pytest -q"
