#!/usr/bin/env bash
# Installs the native engines swipebot needs into a local virtual environment (.venv by default):
#   - ONNX Runtime (the `onnxruntime` wheel, or `onnxruntime-gpu` with --gpu) for the daemon and `swipebot score`;
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
    -h|--help) sed -n '2,8p' "$0"; echo "usage: $0 [--gpu] [--no-train] [--dev]"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
pkgs=("$ort_pkg==$ORT_VERSION")
[ "$train" = 1 ] && pkgs+=("torch==$TORCH_VERSION")
[ "$dev" = 1 ] && pkgs+=("onnx" "numpy" "pillow")
"${pip[@]}" install "${pkgs[@]}"
# Only the sample photos are used, so none of scikit-image's own dependencies are needed.
[ "$dev" = 1 ] && "${pip[@]}" install --no-deps scikit-image

# The ONNX Runtime wheel ships only a versioned library name; point a stable link at it.
capi=$("$venv/bin/python" - <<'PY'
import os, onnxruntime
print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))
PY
)
lib=$(ls "$capi"/libonnxruntime.so.* | head -n 1)
mkdir -p "$venv/lib/swipebot"
ln -sf "$lib" "$venv/lib/swipebot/libonnxruntime.so"
echo "ONNX Runtime: $venv/lib/swipebot/libonnxruntime.so -> $lib"
[ "$train" = 1 ] && echo "libtorch: $("$venv/bin/python" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
