# Sourced by the project's scripts: points the build at the virtual environment made by scripts/setup.sh,
# so tch links the libtorch of the `torch` wheel and ONNX Runtime is found without configuration.
_swipebot_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV=${SWIPEBOT_VENV:-$_swipebot_root/.venv}
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK=${LIBTORCH_BYPASS_VERSION_CHECK:-0}
