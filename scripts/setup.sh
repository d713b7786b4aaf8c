#!/usr/bin/env bash
# Installs everything labelemb needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# the real Fashion-MNIST (Debian package), the CPU build of torch 2.13.0, and this project.
#   scripts/setup.sh          the package
#   scripts/setup.sh --dev    plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq dataset-fashion-mnist
fi
# torch first and pinned: the project's loose `torch>=2.1` is then already satisfied, so pip
# never pulls a newer build with gigabytes of CUDA packages.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".${extras}"
