#!/usr/bin/env bash
# One-time set-up on a fresh machine: the Fashion-MNIST files (Debian's package), the build and
# X packages the native 'gl' package (gpu.js headlessgl mode) needs, and npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages for: the data set; building gl from source (node-gyp: python3, make, g++; GL, X
# headers); running it headless (Xvfb + Mesa's software rasterizer, llvmpipe).
# mesa-utils: glxinfo, with which npm run bench:gpu says whether the display renders on a GPU.
GL_PACKAGES="python3 make g++ pkg-config libxi-dev libgl1-mesa-dev mesa-common-dev libglu1-mesa-dev libglew-dev xvfb xauth libgl1-mesa-dri mesa-utils"
# Independent references and peers for tests and benchmarks: the NIR reference package needs h5py
# and numpy; PyTorch (with the OpenMP OpenBLAS, see bench/README.md) is a benchmark peer; Debian's
# chromium runs the browser tests (driven by puppeteer-core, no browser download).
PEER_PACKAGES="python3-h5py python3-numpy python3-torch libopenblas0-openmp chromium"
if command -v apt-get >/dev/null 2>&1; then
  missing=""
  if [ ! -e /usr/share/datasets/fashion-mnist ] && [ -z "${FASHION_MNIST_DIR:-}" ]; then missing="dataset-fashion-mnist"; fi
  for p in $GL_PACKAGES $PEER_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
  fi
elif [ ! -e /usr/share/datasets/fashion-mnist ] && [ -z "${FASHION_MNIST_DIR:-}" ]; then
  echo "setup: no apt-get here; set FASHION_MNIST_DIR to a folder with the Fashion-MNIST IDX files" >&2
fi
# node-gyp builds gl against the local Node headers when they are installed (no header download).
if [ -z "${npm_config_nodedir:-}" ] && [ -e /usr/include/node/node.h ] && [ "$(npm config get nodedir 2>/dev/null || echo undefined)" = "undefined" ]; then
  export npm_config_nodedir=/usr
fi
# gl is an optionalDependency whose install script (package.json allowScripts) builds it from
# source when no prebuilt binary can be fetched: a few minutes. If it fails, npm carries on and the
# gpujs tests skip (or fail under SPIKETRACE_REQUIRE_GPU=1, as in .ci/run).
npm ci --no-audit --no-fund
