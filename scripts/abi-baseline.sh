#!/usr/bin/env bash
# Write the ABI baseline of the current version, abi/libpuffinflow-MAJOR.MINOR.abi,
# from a plain gcc build of the shared library (libabigail's abidw reads its
# debug information and the public headers). Run it on purpose only: after
# a deliberate ABI change with a version bump (see CHANGELOG.md), or to take
# a release's compatible additions into the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build/abi
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPF_BUILD_TESTS=OFF \
      -DPF_BUILD_EXAMPLES=OFF -DPF_BUILD_BENCH=OFF -DPF_BUILD_TOOLS=OFF \
      -DCMAKE_C_COMPILER=gcc >/dev/null
cmake --build "$dir" -j"$(nproc)" --target puffinflow >/dev/null
major=$(sed -n 's/^#define PF_VERSION_MAJOR \([0-9]*\).*/\1/p' include/puffinflow/version.h)
minor=$(sed -n 's/^#define PF_VERSION_MINOR \([0-9]*\).*/\1/p' include/puffinflow/version.h)
mkdir -p abi
out="abi/libpuffinflow-$major.$minor.abi"
abidw --headers-dir include/puffinflow --no-corpus-path --no-show-locs \
      --no-comp-dir-path "$dir/libpuffinflow.so" >"$out"
echo "wrote $out"
