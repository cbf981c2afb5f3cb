#!/usr/bin/env bash
# physlens vs PyTorch on this machine (see tools/bench/README.md).
#   tools/bench/run.sh [--time-to-accuracy] [--json-out FILE] [compare.py options]
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for this command only: they
# can slow numpy's OpenBLAS (torch itself uses MKL and is unaffected).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 tools/bench/compare.py "$@"
