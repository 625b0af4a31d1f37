#!/usr/bin/env bash
# Installs what dynrl needs to build and test. Idempotent: quiet when everything is already present.
# Usage: scripts/install-deps.sh [--python] [--torch]
#   --python  also makes .venv with numpy, h5py, matplotlib (plots, fixture and benchmark scripts)
#   --torch   also installs PyTorch, transformers, tokenizers, TRL and datasets into .venv (only the side-by-side
#             and parity reference scripts in bench/reference need them)
set -euo pipefail

pkgs=(cmake make gcc g++ pkg-config libopenblas-dev libopenblas-openmp-dev libhdf5-dev hdf5-tools libopenmpi-dev openmpi-bin
      libyaml-dev libjansson-dev libpcre2-dev libutf8proc-dev libgtest-dev
      # the fuzz preset (scripts/fuzz.sh): clang, its libFuzzer and sanitizer runtimes, OpenMP for clang, symbolizer
      clang libclang-rt-14-dev libomp-dev llvm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

want_python=0
want_torch=0
for arg in "$@"; do
  case "$arg" in
    --python) want_python=1 ;;
    --torch) want_python=1; want_torch=1 ;;
    *) echo "install-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done
if [ "$want_python" = 1 ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  [ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
  pip=("$root/.venv/bin/python" -m pip install -q --disable-pip-version-check)
  "$root/.venv/bin/python" -c "import numpy, h5py, matplotlib" 2>/dev/null || "${pip[@]}" numpy h5py matplotlib
  if [ "$want_torch" = 1 ]; then
    "$root/.venv/bin/python" -c "import torch, transformers, tokenizers, trl, datasets" 2>/dev/null ||
      "${pip[@]}" torch transformers tokenizers trl datasets safetensors
  fi
fi
