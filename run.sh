#!/usr/bin/env bash
# The course's two entry points; each sets up its own virtual environment first.
#   ./run.sh course   execute every notebook in order -> outputs/notebooks/*.ipynb, outputs/*.json
#   ./run.sh test     unit tests, lint, and every notebook under nbval in the smoke profile
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # pinned: a bare `torch` can pull GBs of CUDA wheels

setup() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp="$VENV/.installed" want
  want=$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install -q -r requirements.txt -e .
    echo "$want" > "$stamp"
  fi
}

case "${1:-}" in
  course)
    setup
    shift
    exec "$VENV/bin/python" -m utils.runner "$@"
    ;;
  test)
    setup
    shift
    # CI runs the smoke profile, offline; nbval cannot inject parameters, so the profile
    # variable is what shrinks every notebook.
    export QLORA_PROFILE=smoke HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export QLORA_OUTPUT_DIR=${QLORA_OUTPUT_DIR:-$PWD/outputs/test}
    start=$(date +%s)
    status=0
    "$VENV/bin/python" -m pytest "$@" || status=$?
    echo "test suite: $(( $(date +%s) - start )) s (exit $status)"
    exit $status
    ;;
  *)
    echo "usage: ./run.sh course [NN ...] [-p NAME VALUE]  |  ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
