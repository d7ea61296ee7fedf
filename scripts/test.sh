#!/usr/bin/env bash
# Build and run every test. The phases, each named and timed as it runs:
#   1. install the Debian packages the tests need and the machine lacks
#      (scripts/deps.sh, PF_PACKAGES), with apt's own progress
#   2. gcc, warnings as errors (-Wall -Wextra -Werror -pedantic): full suite
#   3. clang, warnings as errors: everything compiles
#   4. gcc with AddressSanitizer + UndefinedBehaviorSanitizer: full suite,
#      halting on the first error
#   5. gcc with ThreadSanitizer: full suite
#   6. the libFuzzer harnesses (clang, ASan + UBSan): each for a few seconds
#      from its seed corpus, plus every committed regression input
#      (scripts/fuzz.sh; one count per harness)
# Every build turns every part on explicitly (PF_BUILD_TESTS=ON,
# PF_WITH_HTTP=ON, PF_WITH_CURL=ON, ...), so a missing dependency fails
# the configure instead of skipping tests. Exits non-zero on any failure;
# the last line is "N passed, N failed", summed over all runs. Logs:
# build/logs/.
# Usage: scripts/test.sh [ctest -R regex]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/deps.sh

filter=${1:-}
jobs=$(nproc)
passed=0
failed=0
log_dir=build/logs
mkdir -p "$log_dir"

# Every optional part on: configuring fails if one cannot be built. The
# ABI check runs in the builds without sanitizers.
all_parts=(-DPF_BUILD_TESTS=ON -DPF_BUILD_EXAMPLES=ON -DPF_BUILD_BENCH=ON
           -DPF_BUILD_TOOLS=ON -DPF_WITH_HTTP=ON -DPF_WITH_CURL=ON
           -DPF_WITH_PYTHON=ON -DPF_WITH_REDIS=ON -DPF_ABI_CHECK=ON)

# Seconds since the given date +%s.
since() { echo $(($(date +%s) - $1)); }

# run_suite NAME BUILD_DIR CC SANITIZE [RUN_TESTS=1]
run_suite() {
    local name=$1 dir=$2 cc=$3 sanitize=$4 run=${5:-1}
    local t
    t=$(date +%s)
    if ! cmake -S . -B "$dir" -DCMAKE_C_COMPILER="$cc" -DPF_WERROR=ON \
           -DPF_SANITIZE="$sanitize" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
           "${all_parts[@]}" >"$log_dir/$name.configure.log" 2>&1; then
        cat "$log_dir/$name.configure.log"
        echo "$name: configure FAILED"
        failed=$((failed + 1))
        return
    fi
    echo "   configured ($(since "$t") s)"
    t=$(date +%s)
    if ! cmake --build "$dir" -j"$jobs" >"$log_dir/$name.build.log" 2>&1; then
        grep -E "error|warning" "$log_dir/$name.build.log" | head -n 40
        echo "$name: build FAILED"
        failed=$((failed + 1))
        return
    fi
    echo "   built ($(since "$t") s)"
    if [ "$run" != 1 ]; then
        echo "   $name: build passed"
        passed=$((passed + 1))
        return
    fi
    t=$(date +%s)
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
    local f n
    f=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
    n=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/')
    if [ "$f" -ne 0 ]; then
        sed -n '/The following tests FAILED/,$p' "$log_dir/$name.ctest.log"
        grep -B2 -A25 -E "FAILED|ERROR: |WARNING: ThreadSanitizer|runtime error" \
            "$log_dir/$name.ctest.log" | head -n 120
    fi
    echo "   tests run ($(since "$t") s): $summary"
    passed=$((passed + n - f))
    failed=$((failed + f))
}

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

# ---- the phases ------------------------------------------------------------
# One function each; the list below gives their order and titles.

phase_packages() {
    local missing
    # shellcheck disable=SC2086
    missing=$(pf_missing_packages $PF_PACKAGES)
    if [ -z "$missing" ]; then
        echo "   all installed"
        return 0
    fi
    # shellcheck disable=SC2086
    pf_install_deps $PF_PACKAGES || {
        echo "installing the packages FAILED: cannot run the tests"
        exit 1
    }
}
phase_gcc() { run_suite gcc build/test-gcc gcc ""; }
phase_clang() { run_suite clang build/test-clang clang "" 0; }
phase_asan() { run_suite asan-ubsan build/test-asan gcc "address,undefined"; }
phase_tsan() { run_suite tsan build/test-tsan gcc "thread"; }
# Every fuzz harness for a short fixed budget (scripts/fuzz.sh prints one
# line per harness and ends with "fuzz: N passed, N failed").
phase_fuzz() {
    local fuzz_seconds=${PF_FUZZ_SECONDS:-5} summary
    scripts/fuzz.sh "$fuzz_seconds" >"$log_dir/fuzz.log" 2>&1
    summary=$(grep -E "^fuzz: [0-9]+ passed, [0-9]+ failed$" \
              "$log_dir/fuzz.log" | tail -n 1)
    grep -v -E "^fuzz: [0-9]+ passed" "$log_dir/fuzz.log" | tail -n 40
    if [ -z "$summary" ]; then
        echo "fuzz: no summary"
        failed=$((failed + 1))
        return
    fi
    passed=$((passed + $(echo "$summary" | sed -E 's/fuzz: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$summary" | sed -E 's/.* ([0-9]+) failed$/\1/')))
    echo "$summary"
}

phases=(
    "installing packages|phase_packages"
    "gcc build + suite|phase_gcc"
    "clang build|phase_clang"
    "asan+ubsan build + suite|phase_asan"
    "tsan build + suite|phase_tsan"
    "fuzzers, ${PF_FUZZ_SECONDS:-5} s each|phase_fuzz"
)

total_start=$(date +%s)
for i in "${!phases[@]}"; do
    title=${phases[$i]%%|*}
    fn=${phases[$i]#*|}
    step="[$((i + 1))/${#phases[@]}] $title"
    echo "== $step ..."
    start=$(date +%s)
    "$fn"
    echo "== $step ($(since "$start") s)"
done

echo "total $(since "$total_start") s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
