#!/usr/bin/env bash
# The GPU run of issue 19 (see benchmarks/device_run.py and benchmarks/README.md):
#   benchmarks/device_run.sh [--out DIR] [--stages install,tests,benchmarks,cmnist] [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
exec "$PYTHON" benchmarks/device_run.py "$@"
