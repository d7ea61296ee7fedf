#!/usr/bin/env bash
# Build (optimised, no sanitizers) and run every benchmark in bench/.
# Usage: scripts/bench.sh [name-filter]
#        scripts/bench.sh --neighbour [reps]   the breaker's closed path
#            pinned to CPU 0, alone and beside a busy process on that CPU
#            (bench_breaker --neighbour; see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
# shellcheck disable=SC2086
pf_install_deps $PF_DEMO_PACKAGES
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF \
      -DPF_BUILD_EXAMPLES=OFF -DPF_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
if [ "${1:-}" = --neighbour ]; then
    exec "$build"/bench/bench_breaker --neighbour "${2:-7}"
fi
for b in "$build"/bench/bench_*; do
    [ -x "$b" ] || continue
    case "$(basename "$b")" in *"${1:-}"*) ;; *) continue ;; esac
    "$b"
    echo
done
