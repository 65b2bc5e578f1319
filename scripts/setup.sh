#!/usr/bin/env bash
# Installs the native engines swipebot needs into a local virtual environment (.venv by default):
#   - ONNX Runtime (the `onnxruntime` wheel, or `onnxruntime-gpu` with --gpu) for the daemon and `swipebot score`;
#     with --gpu also the CUDA 13 and cuDNN 9 wheels its CUDA provider links (cudart, cuBLAS, cuRAND, cuDNN),
#     resolved together with `torch` in one install so that each is there once, in the version torch wants;
#   - libtorch (the `torch` wheel) for `train`, unless --no-train;
#   - with --dev: what the tests and benchmarks use besides: `onnx` (the official model checker),
#     numpy and Pillow (the Python baseline of the benchmark), and scikit-image's bundled sample photos.
# Everything comes from PyPI: nothing is downloaded from anywhere else.
set -euo pipefail

ORT_VERSION=1.31.1
TORCH_VERSION=2.13.0
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${SWIPEBOT_VENV:-$here/.venv}
ort_pkg=onnxruntime
train=1
dev=0
for arg in "$@"; do
  case "$arg" in
    --gpu) ort_pkg=onnxruntime-gpu ;;
    --no-train) train=0 ;;
    --dev) dev=1 ;;
    -h|--help) sed -n '2,10p' "$0"; echo "usage: $0 [--gpu] [--no-train] [--dev]"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# `onnxruntime` and `onnxruntime-gpu` install the same files: switching from one to the other removes
# both first, or uninstalling the old one would delete files of the new one.
other=onnxruntime-gpu
[ "$ort_pkg" = onnxruntime-gpu ] && other=onnxruntime
if "${pip[@]}" show "$other" >/dev/null 2>&1; then
  "${pip[@]}" uninstall -y onnxruntime onnxruntime-gpu
fi
if [ "$ort_pkg" = onnxruntime-gpu ]; then
  # The wheel's `cuda` and `cudnn` extras, plus cuBLAS, which its CUDA provider links but no extra names.
  pkgs=("onnxruntime-gpu[cuda,cudnn]==$ORT_VERSION" "nvidia-cublas~=13.0")
else
  pkgs=("$ort_pkg==$ORT_VERSION")
fi
[ "$train" = 1 ] && pkgs+=("torch==$TORCH_VERSION")
[ "$dev" = 1 ] && pkgs+=("onnx" "numpy" "pillow")
constraints=()
[ "$ort_pkg" = onnxruntime-gpu ] && constraints=(-c "$here/scripts/cuda-wheels.txt")
"${pip[@]}" install "${constraints[@]}" "${pkgs[@]}"
# Only the sample photos are used, so none of scikit-image's own dependencies are needed.
[ "$dev" = 1 ] && "${pip[@]}" install --no-deps scikit-image

# The ONNX Runtime wheel ships only a versioned library name; point a stable link at it.
capi=$("$venv/bin/python" - <<'PY'
import os, onnxruntime
print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))
PY
)
lib=$(ls "$capi"/libonnxruntime.so.* | head -n 1)
# ONNX Runtime looks for its provider libraries (the CUDA one, and the shared part every provider needs)
# next to the path it was loaded from, which is this link: link them here too, and drop stale ones.
mkdir -p "$venv/lib/swipebot"
rm -f "$venv/lib/swipebot"/libonnxruntime_providers_*.so
ln -sf "$lib" "$venv/lib/swipebot/libonnxruntime.so"
for provider in "$capi"/libonnxruntime_providers_*.so; do
  [ -e "$provider" ] && ln -sf "$provider" "$venv/lib/swipebot/$(basename "$provider")"
done
echo "ONNX Runtime: $venv/lib/swipebot/libonnxruntime.so -> $lib"
if [ "$train" = 1 ]; then
  echo "libtorch: $("$venv/bin/python" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
fi
