#!/usr/bin/env bash
# test.sh -- the whole test suite, as CI runs it:
#   1. setup (packages, default model; skipped when present)
#   2. layer check (no include goes up a layer)
#   3. Release build + all CTest tests
#   4. AddressSanitizer + UndefinedBehaviorSanitizer build + all CTest tests
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check_layers.sh

echo "== release build"
bash scripts/build.sh build
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== ASan + UBSan build"
bash scripts/build.sh build-asan -DLONGKV_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  LONGKV_TEST_QUICK=1 ctest --test-dir build-asan --output-on-failure -j"$(nproc)"
