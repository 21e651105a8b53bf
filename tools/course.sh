#!/usr/bin/env bash
# Set up the course in a local virtual environment (.venv), then run it.
#
#   bash tools/course.sh lab     # install if needed, open JupyterLab on notebooks/
#   bash tools/course.sh test    # install if needed, run the whole test suite (unit tests + notebooks in ci)
#   bash tools/course.sh run     # install if needed, execute every lesson in your profile (auto: GPU full, CPU quick)
#
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash tools/course.sh lab
#   installs PyTorch's CPU-only build (much smaller) on a laptop without an NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${COURSE_VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.course-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "Installing the course environment into $VENV (first time: a few minutes)..."
  "$PY" -m pip install -q --upgrade pip
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$PY" -m pip install -q -c constraints.txt --index-url "$TORCH_INDEX_URL" torch torchvision
  else
    "$PY" -m pip install -q -c constraints.txt torch torchvision
  fi
  "$PY" -m pip install -q -c constraints.txt -e ".[dev,browser]"
  touch "$stamp"
fi

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  lab)
    exec "$PY" -m jupyterlab notebooks/ "$@" ;;
  test)
    # Unit tests, then every solution notebook executed by nbval in the ci profile.
    # One torch thread: ci models are tiny, and two OpenMP threads on two busy cores wait on each
    # other (measured 5-20x slower under load); set OMP_NUM_THREADS yourself to override.
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    COURSE_PROFILE=ci exec "$PY" -m pytest tests notebooks --nbval-lax --nbval-current-env \
      --ignore=notebooks/student -q "$@" ;;
  run)
    exec "$PY" -m pytest notebooks --nbval-lax --nbval-current-env --ignore=notebooks/student "$@" ;;
  *)
    echo "usage: bash tools/course.sh lab|test|run [extra arguments]" >&2
    exit 2 ;;
esac
