#!/usr/bin/env bash
# Checks the GPU install on a machine without a GPU (CI runs it as a job of its own, after the test
# command has built the binaries). `scripts/setup.sh --gpu` goes into a virtual environment of its own,
# first with --no-train, then with `train`'s torch added; after each:
#   - setup.sh exits 0;
#   - ONNX Runtime's provider libraries are linked where swipebot loads ONNX Runtime from;
#   - every library the CUDA provider needs resolves from the wheels, except the NVIDIA driver's
#     libcuda.so.1 (checked with ldd, and by swipebot itself);
#   - `swipebot score --device cuda` scores on the CPU and says exactly that the NVIDIA driver is
#     missing, `swipebot --version` says the same, and with runtime.require_gpu `check-config` stops
#     (exit 78) saying it too;
#   - each CUDA library is installed once, and adding torch changes none of them.
# Usage: scripts/check-gpu-setup.sh   (GPU_VENV=DIR to choose the environment; default .work/gpu-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GPU_VENV:-$PWD/.work/gpu-venv}
work=$PWD/.work/gpu-check
swipebot=$PWD/target/debug/swipebot
train=$PWD/target/debug/train
fail() { echo "check-gpu-setup: FAIL: $*" >&2; exit 1; }
[ -x "$swipebot" ] && [ -x "$train" ] || fail "build first (scripts/test.sh or cargo build --workspace)"

rm -rf "$work" && mkdir -p "$work"
# A small real model, and a photo to score.
"$swipebot" demo-data --out "$work" --per-class 6 --profiles 1 >/dev/null
("$train" --data "$work/dataset" --out "$work/model.onnx" --input-size 64 --grayscale \
  --epochs 1 --batch-size 4 >/dev/null 2>&1) || fail "could not train the small model"
photo=$(find "$work/dataset/like" -type f | head -n 1)

check() {
  local label=$1 lib=$venv/lib/swipebot site
  for f in libonnxruntime.so libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    [ -e "$lib/$f" ] || fail "$label: $lib/$f is missing"
  done
  site=$("$venv/bin/python" -c 'import os, onnxruntime; print(os.path.dirname(os.path.dirname(onnxruntime.__file__)))')
  local missing
  missing=$(LD_LIBRARY_PATH="$site/nvidia/cu13/lib:$site/nvidia/cudnn/lib" ldd "$lib/libonnxruntime_providers_cuda.so" \
    | awk '/not found/ {print $1}' | tr '\n' ' ')
  [ "$missing" = "libcuda.so.1 " ] || fail "$label: the CUDA provider's unresolved libraries are '$missing', expected only libcuda.so.1"
  [ -e "$site/nvidia/cudnn/lib/libcudnn.so.9" ] || fail "$label: cuDNN 9 is not installed"

  local out
  out=$("$swipebot" score --device cuda --ort-library "$lib/libonnxruntime.so" --model "$work/model.onnx" "$photo" 2>&1) \
    || fail "$label: score --device cuda failed: $out"
  echo "$out" | grep -q "the NVIDIA driver is missing: libcuda.so.1 cannot be loaded" \
    || fail "$label: score --device cuda did not say the driver is missing: $out"
  echo "$out" | grep -q "every CUDA library the provider needs was found" || fail "$label: $out"
  echo "$out" | grep -qP "^\Q$photo\E\t[0-9.]+\t(like|pass)$" || fail "$label: the photo was not scored on the CPU: $out"

  out=$(ORT_DYLIB_PATH="$lib/libonnxruntime.so" "$swipebot" --version)
  echo "$out" | grep -q "^cuda: not usable.*the NVIDIA driver is missing" \
    || fail "$label: --version did not say the driver is missing: $out"

  cat > "$work/gpu.toml" <<TOML
[model]
path = "$work/model.onnx"
[runtime]
library = "$lib/libonnxruntime.so"
device = "cuda"
require_gpu = true
[source]
replay_dir = "$work/profiles"
[state]
dir = "$work/state"
TOML
  local rc=0
  out=$("$swipebot" check-config --config "$work/gpu.toml" 2>&1) || rc=$?
  [ "$rc" = 78 ] || fail "$label: check-config with require_gpu exited $rc: $out"
  echo "$out" | grep -q "runtime.require_gpu" && echo "$out" | grep -q "NVIDIA driver is missing" \
    || fail "$label: check-config did not name the key and the driver: $out"

  local dupes
  dupes=$("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | grep -i '^nvidia-' | cut -d= -f1 | sort | uniq -d)
  [ -z "$dupes" ] || fail "$label: installed twice: $dupes"
  echo "check-gpu-setup: $label: ok"
}

SWIPEBOT_VENV=$venv scripts/setup.sh --gpu --no-train >/dev/null 2>"$work/setup.log" \
  || { cat "$work/setup.log" >&2; fail "setup.sh --gpu --no-train exited non-zero"; }
check "--gpu --no-train"
cuda_wheels() { "$venv/bin/python" -m pip list --format=freeze 2>/dev/null | grep -iE '^nvidia-(cublas|cuda-runtime|curand|cudnn-cu13)=' ; }
before=$(cuda_wheels)
SWIPEBOT_VENV=$venv scripts/setup.sh --gpu >/dev/null 2>"$work/setup.log" \
  || { cat "$work/setup.log" >&2; fail "setup.sh --gpu exited non-zero"; }
check "--gpu"
[ "$(cuda_wheels)" = "$before" ] || fail "adding train changed the CUDA wheels: before: $before; after: $(cuda_wheels)"
echo "check-gpu-setup: ok (CUDA wheels: $(echo $before))"
