#!/usr/bin/env bash
# One-time set-up on a fresh machine: the Fashion-MNIST files (Debian's package) and npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e /usr/share/datasets/fashion-mnist ] && [ -z "${FASHION_MNIST_DIR:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq dataset-fashion-mnist
  else
    echo "setup: no apt-get here; set FASHION_MNIST_DIR to a folder with the Fashion-MNIST IDX files" >&2
  fi
fi
npm ci --no-audit --no-fund
