#!/usr/bin/env bash
# Build the library and the pf tool, then run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pf_install_deps
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF \
      -DPF_BUILD_EXAMPLES=OFF -DPF_BUILD_BENCH=OFF >/dev/null
cmake --build build/demo -j"$(nproc)" --target pf >/dev/null
exec build/demo/tools/pf/pf demo "$@"
