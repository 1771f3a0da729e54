#!/usr/bin/env bash
# Create .venv and install robust-rl with the exact versions of requirements.lock. Safe to re-run.
#   PYTHON=python3.11 bash setup.sh     the interpreter (Python >= 3.11; default python3)
#   TORCH_INDEX_URL=URL bash setup.sh   where pip finds torch==2.13.0, e.g. PyTorch's CPU index (see README)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  found=$("$PY" --version 2>/dev/null) || found="not found"
  echo "error: robust-rl needs Python >= 3.11 (the lock's versions need it); '$PY' is $found: set PYTHON=python3.11 (or newer)" >&2
  exit 2
fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: .venv was made with $(.venv/bin/python --version 2>&1); remove it (rm -r .venv) and re-run" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, exactly: the CPU wheel (an unpinned torch, or one pulled in by a dependency, is a multi-GB CUDA build)
.venv/bin/pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/pip install -q -r requirements.lock
.venv/bin/pip install -q --no-deps -e .
