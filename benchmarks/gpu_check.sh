#!/usr/bin/env bash
# The GPU checks of the course in one call, for a lent GPU machine or any CUDA box.
#
#   bash benchmarks/gpu_check.sh            # writes logs and JSON reports to $OUT (default results/gpu)
#   GPU_CHECK_MODELS=vgg16 bash benchmarks/gpu_check.sh   # one model only, when device time is short
#
# Sized for about 5-8 minutes on one H100/H200 (estimates; each step prints its own times):
#   1. the CUDA unit tests (tests/test_gpu.py) and the CPU-only suite's core on this torch;
#   2. bench_train_step on the GPU: engine (AMP + channels_last + non_blocking) vs the textbook loop;
#   3. bench_cifar_recipe: the lessons' full recipe, a few epochs on synthetic CIFAR-size data,
#      projected to 30 epochs (with real CIFAR-10 under data/, add GPU_CHECK_DATA=real: 30 epochs);
#   4. the same for VGG16 with cudnn.benchmark on, to decide whether the lessons should use it.
# Files under $OUT: machine.txt, pytest.log and a .log + .json per benchmark (8 files: the device
# tool brings back at most 8).
# Uses whatever python3 is there (the lent machine: torch 2.11 / torchvision 0.26, no nbval).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PYTHON:-python3}
models=${GPU_CHECK_MODELS:-vgg16,resnet50}
data=${GPU_CHECK_DATA:-synthetic}
status=0

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU visible to $PY: these checks need one (CI and the CPU suite never run them)." >&2
  exit 2
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; "$PY" -c \
  "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"; } \
  2>&1 | tee "$OUT/machine.txt"

echo "== 1. unit tests (CUDA paths, then the core suite on this torch)"
"$PY" -m pytest tests/test_gpu.py tests/test_engine.py tests/test_checkpoint.py tests/test_metrics.py \
  tests/models tests/data -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/pytest.log" || status=1

echo "== 2. training step: engine vs textbook loop on the GPU"
"$PY" -m benchmarks.bench_train_step --devices cuda --repeats 4 --json "$OUT/bench_train_step.json" \
  2>&1 | tee "$OUT/bench_train_step.log" || status=1

echo "== 3. the CIFAR-10 recipe of lessons 01/02 ($data data)"
"$PY" -m benchmarks.bench_cifar_recipe --models "$models" --data "$data" --timed-epochs 3 \
  --json "$OUT/bench_cifar_recipe.json" 2>&1 | tee "$OUT/bench_cifar_recipe.log" || status=1

echo "== 4. the same for VGG16 with cudnn.benchmark on (should the lessons turn it on?)"
"$PY" -m benchmarks.bench_cifar_recipe --models vgg16 --data "$data" --timed-epochs 3 --cudnn-benchmark \
  --json "$OUT/bench_cifar_recipe_cudnn.json" 2>&1 | tee "$OUT/bench_cifar_recipe_cudnn.log" || status=1

exit $status
