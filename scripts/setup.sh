#!/usr/bin/env bash
# Installs everything labelemb needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# the real Fashion-MNIST and a C++ compiler (Debian packages), the CPU build of torch 2.13.0,
# and this project.
#   scripts/setup.sh          the package
#   scripts/setup.sh --dev    plus the test tools, Hugging Face Transformers (the [hf] extra)
#                             and Debian's fortunes (the text data its tests and example use)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev,hf]"

# Debian packages: the real Fashion-MNIST, and the C++ compiler that torch.compile's CPU
# backend (inductor) builds its kernels with; labelemb itself has no native code.
packages=""
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || packages="dataset-fashion-mnist"
command -v g++ >/dev/null 2>&1 || packages="$packages g++"
# fortunes: the real text for `labelemb data prepare fortunes` (the --dev tests use it).
[ -n "$extras" ] && [ ! -f /usr/share/games/fortunes/computers ] && packages="$packages fortunes"
# English and Spanish Bibles (SWORD modules): `labelemb data prepare bible-en-es` reads them.
[ -f /usr/share/sword/mods.d/spaRV1909eb.conf ] || packages="$packages sword-text-kjv sword-text-sparv"
if [ -n "$packages" ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq $packages
fi
# torch first and pinned: the project's loose `torch>=2.1` is then already satisfied, so pip
# never pulls a newer build with gigabytes of CUDA packages.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".${extras}"
