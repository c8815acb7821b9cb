#!/usr/bin/env bash
# Runs the whole test suite: build with warnings as errors (installing what is
# missing), then every test (unit, integration, slow) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh -DVKV_WERROR=ON "$@"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j2
