#!/usr/bin/env bash
# Installs everything labelemb needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# the real Fashion-MNIST and a C++ compiler (Debian packages), the CPU build of torch 2.13.0,
# and this project.
#   scripts/setup.sh          the package
#   scripts/setup.sh --dev    plus the test tools, Hugging Face Transformers (the [hf] extra)
#                             and Debian's fortunes (the text data its tests and example use),
#                             and the installed transformers version's own common model tests
#                             (from its source package, into ~/.cache/labelemb/transformers-V/)
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

# Transformers' own common model tests (tests/test_hf_common.py runs them on our model): the
# installed version's source package has tests/ (the wheel does not); unpacked once.
if [ -n "$extras" ]; then
  version=$("$PY" -c "import transformers; print(transformers.__version__)")
  suite="$HOME/.cache/labelemb/transformers-$version"
  if [ ! -f "$suite/tests/test_modeling_common.py" ]; then
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-binary :all: --no-deps "transformers==$version" -d "$tmp"
    tar -xzf "$tmp"/transformers-*.tar.gz -C "$tmp"
    # upstream's tests/ is a package (test_configuration_common imports its __init__.py, empty
    # there); the source package leaves that file out
    touch "$tmp/transformers-$version/tests/__init__.py"
    mkdir -p "$suite" && rm -rf "$suite/tests"
    mv "$tmp/transformers-$version/tests" "$suite/tests"
    rm -rf "$tmp"
  fi
fi
