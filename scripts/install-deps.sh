#!/usr/bin/env bash
# Installs what dynrl needs to build and test. Idempotent: quiet when everything is already present.
# Usage: scripts/install-deps.sh [--python]   (--python also makes .venv with numpy, h5py, matplotlib)
set -euo pipefail

pkgs=(cmake make gcc g++ pkg-config libopenblas-dev libopenblas-openmp-dev libhdf5-dev hdf5-tools libopenmpi-dev openmpi-bin
      libcyaml-dev libyaml-dev libgtest-dev)

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

if [ "${1:-}" = "--python" ]; then
  root=$(cd "$(dirname "$0")/.." && pwd)
  if [ ! -x "$root/.venv/bin/python" ]; then
    python3 -m venv "$root/.venv"
  fi
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check numpy h5py matplotlib
fi
