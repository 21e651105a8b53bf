#!/usr/bin/env bash
# Set up the course in a local virtual environment (.venv), then run it.
#
#   bash tools/course.sh lab            # install if needed, open JupyterLab on notebooks/
#   bash tools/course.sh test           # install if needed, run the whole test suite (unit tests + notebooks in ci)
#   bash tools/course.sh run [01 ...]   # install if needed, execute the lessons named (default: all) in your profile
#
# PyTorch: without an NVIDIA GPU (no working nvidia-smi) the first install takes PyTorch's CPU-only
# build (~200 MB instead of several GB of CUDA libraries) from its CPU index, when that index
# answers. TORCH_INDEX_URL chooses the index yourself, also for an existing .venv, e.g.
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash tools/course.sh lab
# (TORCH_INDEX_URL= , empty, means pip's default index.) COURSE_VENV moves the venv, PYTHON picks
# the Python that creates it.
set -euo pipefail

CPU_INDEX=${COURSE_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

say() { echo "course.sh: $*" >&2; }

has_nvidia_gpu() {
  # An NVIDIA driver that lists at least one GPU.
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"
}

index_answers() {
  # Whether a package index answers within a few seconds (offline machines and CI: it does not).
  "$PYTHON" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5).close()
EOF
}

choose_torch_index() {
  # Prints the index URL to install torch from ("" = pip's default) and says why on stderr.
  if [ -n "${TORCH_INDEX_URL+set}" ]; then
    say "installing PyTorch from TORCH_INDEX_URL=${TORCH_INDEX_URL:-(empty: the default index)}."
    echo "${TORCH_INDEX_URL}"
  elif [ "$(uname -s)" = Darwin ]; then
    say "macOS: installing PyTorch's default build (CPU and Apple's MPS GPU; no CUDA in it)."
    echo ""
  elif has_nvidia_gpu; then
    say "NVIDIA GPU found: installing PyTorch's default build (with CUDA)."
    echo ""
  elif index_answers "$CPU_INDEX"; then
    say "no NVIDIA GPU: installing PyTorch's CPU-only build (~200 MB) from $CPU_INDEX."
    echo "$CPU_INDEX"
  else
    say "no NVIDIA GPU, but PyTorch's CPU index ($CPU_INDEX) does not answer: installing pip's default build."
    echo ""
  fi
}

build_of_index() {
  # The local version label a wheel index serves: .../whl/cpu -> cpu, .../whl/cu130 -> cu130; else "".
  local last=${1%/}
  last=${last##*/}
  [[ "$last" =~ ^(cpu|cu[0-9]+|rocm[0-9.]+|xpu)$ ]] && echo "$last" || echo ""
}

installed_build() {
  # The build label of the venv's torch (torch.__version__ 2.14.1+cpu -> cpu), "" without one or
  # without torch. (Its pip metadata may say 2.14.1 for a CUDA build: import torch to know.)
  "$PY" -c 'import torch; v = torch.__version__; print(v.split("+")[1] if "+" in v else "")' 2>/dev/null || echo ""
}

install_torch() {
  local index=$1 reinstall=${2:-}
  local args=(-m pip install -q -c constraints.txt)
  [ -n "$reinstall" ] && args+=(--force-reinstall --no-deps)  # its dependencies are there already
  [ -n "$index" ] && args+=(--index-url "$index")
  "$PY" "${args[@]}" torch torchvision
}

make_venv() {
  # A working venv in $VENV: remove a half-made one (e.g. python3-venv was missing), say how to fix.
  if [ -e "$VENV" ] && ! "$VENV/bin/python" -c "import pip" >/dev/null 2>&1; then
    if [ -f "$VENV/pyvenv.cfg" ]; then
      say "$VENV is a half-made virtual environment (no working pip): removing it and starting again."
      rm -rf "$VENV"
    else
      say "$VENV exists but is not a virtual environment: move it away or set COURSE_VENV to another folder."
      return 1
    fi
  fi
  if [ ! -e "$VENV" ]; then
    if ! "$PYTHON" -m venv "$VENV" || ! "$VENV/bin/python" -c "import pip" >/dev/null 2>&1; then
      [ -f "$VENV/pyvenv.cfg" ] && rm -rf "$VENV"
      say "could not create a virtual environment with $PYTHON. On Debian/Ubuntu: sudo apt install python3-venv"
      say "(or python3.X-venv for your version), then run this command again. Or use conda: see README."
      return 1
    fi
  fi
}

install_course() {
  make_venv
  local stamp="$VENV/.course-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    say "installing the course environment into $VENV (first time: a few minutes)..."
    "$PY" -m pip install -q --upgrade pip
    install_torch "$(choose_torch_index)"
    "$PY" -m pip install -q -c constraints.txt -e ".[dev,browser]"
    touch "$stamp"
  fi
  # TORCH_INDEX_URL on an existing venv: pip calls 2.14.1+cu130 "already satisfied" by a request
  # for 2.14.1, so compare the build label and reinstall torch when it differs (e.g. cu130 -> cpu).
  local wanted have
  wanted=$(build_of_index "${TORCH_INDEX_URL:-}")
  [ -n "$wanted" ] || return 0
  have=$(installed_build)
  if [ "$wanted" != "$have" ]; then
    say "$VENV has torch ${have:-without a build label}; reinstalling torch and torchvision from $TORCH_INDEX_URL ($wanted)."
    install_torch "$TORCH_INDEX_URL" force
  fi
}

lesson_paths() {
  # Lesson arguments -> notebook paths: "01" or "1" -> notebooks/01_*.ipynb; a path stays a path.
  local arg match
  for arg in "$@"; do  # one path per line
    if [[ "$arg" =~ ^[0-9]{1,2}$ ]]; then
      match=$(compgen -G "notebooks/$(printf '%02d' "$((10#$arg))")_*.ipynb" || true)
      [ -n "$match" ] || { say "no lesson $arg in notebooks/ (lessons: $(cd notebooks && echo [0-9][0-9]_*.ipynb))"; return 1; }
      echo "$match"
    else
      [ -e "$arg" ] || { say "no notebook $arg"; return 1; }
      echo "$arg"
    fi
  done
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  VENV=${COURSE_VENV:-.venv}
  PYTHON=${PYTHON:-python3}
  PY="$VENV/bin/python"
  local command=${1:-}
  if [ $# -gt 0 ]; then shift; fi
  case "$command" in
    lab|test|run) install_course ;;
    *) echo "usage: bash tools/course.sh lab|test|run [extra arguments]   (run: lesson numbers, e.g. run 01 02)" >&2
       exit 2 ;;
  esac
  case "$command" in
    lab)
      # As root (a container, a cloud VM) Jupyter refuses to start without --allow-root.
      if [ "$(id -u)" = 0 ]; then set -- --allow-root "$@"; fi
      exec "$PY" -m jupyterlab notebooks/ "$@" ;;
    test)
      # Unit tests, then every solution notebook executed by nbval in the ci profile.
      # One torch thread: ci models are tiny, and two OpenMP threads on two busy cores wait on each
      # other (measured 5-20x slower under load); set OMP_NUM_THREADS yourself to override.
      export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
      COURSE_PROFILE=ci exec "$PY" -m pytest tests notebooks --nbval-lax --nbval-current-env \
        --ignore=notebooks/student -q "$@" ;;
    run)
      # The lessons named (default: every solution notebook), top to bottom, in your profile (auto:
      # GPU full, CPU quick; COURSE_PROFILE overrides). Training cells may take an hour in full: no
      # per-cell limit. In ci, one torch thread as in `test` (tiny models); other arguments go to pytest.
      # (Written for bash 3.2, macOS's: no mapfile, no empty arrays under set -u.)
      # Lessons come first; from the first option on, everything goes to pytest (`--maxfail 2`).
      local lessons=() options=() arg path
      for arg in "$@"; do
        if [ ${#options[@]} -eq 0 ] && [[ "$arg" =~ ^[0-9]{1,2}$ || "$arg" == *.ipynb ]]; then
          path=$(lesson_paths "$arg") || exit 2
          lessons+=("$path")
        else
          options+=("$arg")
        fi
      done
      [ ${#lessons[@]} -gt 0 ] || lessons=(notebooks --ignore=notebooks/student)
      if [ "${COURSE_PROFILE:-}" = ci ]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; fi
      exec "$PY" -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=86400 \
        "${lessons[@]}" ${options[@]+"${options[@]}"} ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
