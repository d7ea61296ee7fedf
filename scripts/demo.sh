#!/usr/bin/env bash
# Build the library and the pf tool (build/demo), then run the demo:
#   scripts/demo.sh [pf demo options: --scene NAME, --list]
# Installs only what that needs when it is missing: a C compiler and its C
# library headers, cmake and make (scripts/deps.sh, PF_DEMO_PACKAGES).
# Nothing for the tests. Not libcurl or libmicrohttpd either: only the
# "http" scene uses them (built when both dev packages are present, else it
# is skipped with a message saying which to install), and they would pull
# in TLS and HTTP/2 libraries for one optional scene.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
# shellcheck disable=SC2086
pf_install_deps $PF_DEMO_PACKAGES

build=build/demo
log=build/demo.log
mkdir -p build
echo "building the pf tool in $build (log: $log) ..."
start=$(date +%s)
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
           -DPF_BUILD_TOOLS=ON -DPF_BUILD_TESTS=OFF -DPF_BUILD_EXAMPLES=OFF \
           -DPF_BUILD_BENCH=OFF -DPF_WITH_HTTP=OFF &&
       cmake --build "$build" -j"$(nproc)" --target pf; } >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "demo.sh: the build failed (full log: $log)"
    exit 1
fi
echo "built in $(($(date +%s) - start)) s"
exec "$build/tools/pf/pf" demo "$@"
