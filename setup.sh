#!/usr/bin/env bash
# Create .venv and install robust-rl with the exact versions of requirements.lock. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, exactly: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build)
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r requirements.lock
.venv/bin/pip install -q --no-deps -e .
