#!/usr/bin/env bash
# GPU self-check: on a machine with an NVIDIA GPU (x86 with a driver, or a Jetson with JetPack), set up a venv
# with TensorRT and a CUDA binding, print what the machine has, and run the TensorRT tests (`pytest -m gpu`).
# Non-interactive; everything it prints also goes to a log file whose path it prints first and last.
#
#   scripts/gpu-selfcheck.sh                 # venv in build/gpu-venv, log in build/gpu-selfcheck-<time>.log
#   VENV=/path/to/venv scripts/gpu-selfcheck.sh
#   PYTHON=python3.11 scripts/gpu-selfcheck.sh
#
# Exit status: pytest's (0: every gpu test passed), or 2 when the machine has no usable GPU stack.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/build/gpu-venv}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$ROOT/build"
LOG="$ROOT/build/gpu-selfcheck-$(date +%Y%m%d-%H%M%S).log"
echo "gpu-selfcheck: logging to $LOG"
exec > >(tee -a "$LOG") 2>&1

section() { printf '\n== %s ==\n' "$*"; }

section "machine"
uname -a
if [ -f /etc/nv_tegra_release ]; then
  JETSON=1
  echo "Jetson: $(head -n 1 /etc/nv_tegra_release)"
else
  JETSON=0
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi || true
elif [ "$JETSON" = 0 ]; then
  echo "no nvidia-smi: is the NVIDIA driver installed?"
fi

section "venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  if [ "$JETSON" = 1 ]; then
    # JetPack installs TensorRT's Python bindings system-wide (python3-libnvinfer); pip has no Jetson wheels.
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip
# onnx converts the FP16 variant the tests build; the test suite itself needs the dev extra.
"$PY" -m pip install -q --disable-pip-version-check -e ".[dev]" onnx

if ! "$PY" -c "import tensorrt" 2>/dev/null; then
  if [ "$JETSON" = 1 ]; then
    echo "tensorrt does not import: install JetPack's python3-libnvinfer (sudo apt-get install python3-libnvinfer)"
  else
    # The tensorrt meta-package pulls the wheels for the CUDA major version it finds (tensorrt-cu12, ...).
    "$PY" -m pip install -q --disable-pip-version-check tensorrt || echo "pip install tensorrt failed"
  fi
fi
# Both CUDA bindings where they install, so the gpu tests run once through each.
if ! "$PY" -c "import pycuda.driver" 2>/dev/null; then
  # pycuda (the project's stated choice) compiles against the CUDA toolkit.
  export PATH="$PATH:/usr/local/cuda/bin"
  "$PY" -m pip install -q --disable-pip-version-check pycuda || echo "pip install pycuda failed"
fi
if ! "$PY" -c "import cuda.bindings.runtime" 2>/dev/null && ! "$PY" -c "from cuda import cudart" 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check cuda-python || echo "pip install cuda-python failed"
fi

section "versions"
"$PY" - <<'EOF'
import platform

print("python", platform.python_version())
for module in ("tensorrt", "pycuda", "cuda", "onnxruntime", "numpy"):
    try:
        print(module, getattr(__import__(module), "__version__", "(no __version__)"))
    except Exception as exc:  # report every missing piece, not only the first
        print(module, "does not import:", exc)
from perception.engines.cuda_memory import binding_name, gpus
from perception.engines.tensorrt import tensorrt_unavailable
from perception.trt_build import l4t_release

print("CUDA binding:", binding_name(), "| GPUs:", gpus(), "| L4T:", l4t_release())
print("TensorRT backend:", tensorrt_unavailable() or "available")
EOF

section "pytest -m gpu"
status=0
# Only the files that hold gpu tests: the rest of the suite needs extras (torch, mujoco) a GPU box may lack.
mapfile -t gpu_tests < <(grep -rl --include='test_*.py' 'pytest.mark.gpu' tests)
ran=0
for binding in pycuda cuda-python; do
  export EDGELOOP_CUDA_BINDING="$binding"
  if ! "$PY" -c "from perception.engines.tensorrt import tensorrt_unavailable as t; raise SystemExit(t() is not None)"; then
    echo "-- $binding: skipped, $("$PY" -c "from perception.engines.tensorrt import tensorrt_unavailable as t; print(t())")"
    continue
  fi
  echo "-- through $binding"
  ran=1
  # A private engine cache, so every engine is built (and so timed) from scratch.
  EDGELOOP_ENGINE_CACHE="$(mktemp -d)"
  export EDGELOOP_ENGINE_CACHE
  "$PY" -m pytest -m gpu -v -rs "${gpu_tests[@]}" || status=$?
  rm -rf "$EDGELOOP_ENGINE_CACHE"
done
unset EDGELOOP_CUDA_BINDING
if [ "$ran" = 0 ]; then
  echo "TensorRT cannot run on this machine through either CUDA binding (see above): no gpu test can run"
  status=2
fi

section "result"
echo "exit status $status; log: $LOG"
exit "$status"
