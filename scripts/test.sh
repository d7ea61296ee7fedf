#!/usr/bin/env bash
# Build and run every test, four ways, then the fuzzers:
#   1. gcc, warnings as errors (-Wall -Wextra -Werror -pedantic): full suite
#   2. clang, warnings as errors: everything compiles
#   3. gcc with AddressSanitizer + UndefinedBehaviorSanitizer: full suite,
#      halting on the first error
#   4. gcc with ThreadSanitizer: full suite
#   5. the libFuzzer harnesses (clang, ASan + UBSan): each for a few seconds
#      from its seed corpus, plus every committed regression input
#      (scripts/fuzz.sh; one count per harness)
# Installs missing packages first. Exits non-zero on any failure; the last
# line is "N passed, N failed", summed over all runs.
# Usage: scripts/test.sh [ctest -R regex]
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pf_install_deps

filter=${1:-}
jobs=$(nproc)
passed=0
failed=0
log_dir=build/logs
mkdir -p "$log_dir"

# run_suite NAME BUILD_DIR CC SANITIZE [RUN_TESTS=1]
run_suite() {
    local name=$1 dir=$2 cc=$3 sanitize=$4 run=${5:-1}
    echo "== $name"
    if ! cmake -S . -B "$dir" -DCMAKE_C_COMPILER="$cc" -DPF_WERROR=ON \
           -DPF_SANITIZE="$sanitize" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
           >"$log_dir/$name.configure.log" 2>&1; then
        cat "$log_dir/$name.configure.log"
        echo "$name: configure FAILED"
        failed=$((failed + 1))
        return
    fi
    if ! cmake --build "$dir" -j"$jobs" >"$log_dir/$name.build.log" 2>&1; then
        grep -E "error|warning" "$log_dir/$name.build.log" | head -n 40
        echo "$name: build FAILED"
        failed=$((failed + 1))
        return
    fi
    if [ "$run" != 1 ]; then
        echo "$name: build passed"
        passed=$((passed + 1))
        return
    fi
    local args=(--test-dir "$dir" --output-on-failure -j"$jobs")
    [ -n "$filter" ] && args+=(-R "$filter")
    ctest "${args[@]}" >"$log_dir/$name.ctest.log" 2>&1
    local summary
    summary=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" \
              "$log_dir/$name.ctest.log" | tail -n 1)
    if [ -z "$summary" ]; then
        tail -n 40 "$log_dir/$name.ctest.log"
        echo "$name: ctest gave no summary"
        failed=$((failed + 1))
        return
    fi
    local f t
    f=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    t=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/')
    if [ "$f" -ne 0 ]; then
        sed -n '/The following tests FAILED/,$p' "$log_dir/$name.ctest.log"
        grep -B2 -A25 -E "FAILED|ERROR: |WARNING: ThreadSanitizer|runtime error" \
            "$log_dir/$name.ctest.log" | head -n 120
    fi
    echo "$name: $summary"
    passed=$((passed + t - f))
    failed=$((failed + f))
}

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

run_suite gcc build/test-gcc gcc ""
run_suite clang build/test-clang clang "" 0
run_suite asan-ubsan build/test-asan gcc "address,undefined"
run_suite tsan build/test-tsan gcc "thread"

# Every fuzz harness for a short fixed budget (scripts/fuzz.sh prints one
# line per harness and ends with "fuzz: N passed, N failed").
fuzz_seconds=5
echo "== fuzz (${fuzz_seconds} s per harness)"
scripts/fuzz.sh "$fuzz_seconds" >"$log_dir/fuzz.log" 2>&1
fuzz_summary=$(grep -E "^fuzz: [0-9]+ passed, [0-9]+ failed$" \
               "$log_dir/fuzz.log" | tail -n 1)
grep -v -E "^fuzz: [0-9]+ passed" "$log_dir/fuzz.log"
if [ -z "$fuzz_summary" ]; then
    echo "fuzz: no summary"
    failed=$((failed + 1))
else
    passed=$((passed + $(echo "$fuzz_summary" | sed -E 's/fuzz: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$fuzz_summary" | sed -E 's/.* ([0-9]+) failed$/\1/')))
    echo "$fuzz_summary"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
