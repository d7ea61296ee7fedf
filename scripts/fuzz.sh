#!/usr/bin/env bash
# Build the libFuzzer harnesses of tests/fuzz (clang, AddressSanitizer +
# UndefinedBehaviorSanitizer, in build/fuzz) and run each: first every
# committed regression input (tests/fuzz/regressions/<harness>/), then the
# fuzzer itself for the given number of seconds, starting from a copy of
# the seed corpus (tests/fuzz/corpus/<harness>/; new inputs go to the copy
# in build/fuzz/corpus, never into the tree). Crash inputs are written to
# build/fuzz/artifacts; the reproducer's path is printed.
# Exits non-zero when any harness fails; the last line is
# "fuzz: N passed, N failed", one count per harness.
# Usage: scripts/fuzz.sh [seconds-per-harness] [harness...]
#   harness: procfs, degrade_rule, export_names, config, shm, healthconf,
#            http, redis_reply (default all)
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
pf_install_deps

secs=${1:-60}
shift || true
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 [seconds-per-harness] [harness...]" >&2
                   exit 2 ;;
esac
dir=build/fuzz
log_dir=$dir/logs
mkdir -p "$log_dir" "$dir/artifacts" "$dir/corpus"

echo "== fuzz: building in $dir"
if ! CC=clang cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang \
       -DPF_BUILD_FUZZ=ON -DPF_SANITIZE=address,undefined -DPF_WERROR=ON \
       -DPF_BUILD_TESTS=OFF -DPF_BUILD_EXAMPLES=OFF -DPF_BUILD_BENCH=OFF \
       -DPF_BUILD_TOOLS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       >"$log_dir/configure.log" 2>&1; then
    cat "$log_dir/configure.log"
    echo "fuzz: configure FAILED"
    echo "fuzz: 0 passed, 1 failed"
    exit 1
fi
if ! cmake --build "$dir" -j"$(nproc)" >"$log_dir/build.log" 2>&1; then
    grep -E "error|warning" "$log_dir/build.log" | head -n 40
    echo "fuzz: build FAILED"
    echo "fuzz: 0 passed, 1 failed"
    exit 1
fi

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
    for bin in "$dir"/tests/fuzz/fuzz_*; do
        [ -x "$bin" ] && harnesses+=("$(basename "$bin" | sed 's/^fuzz_//')")
    done
fi

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
passed=0
failed=0

# report NAME LOG: print the tail of a failed run and how to reproduce it.
report() {
    local name=$1 log=$2 bin=$3 artifact
    grep -a -E -A40 "ERROR: |runtime error|fuzz check failed|deadly signal|Timeout|out-of-memory" \
        "$log" | head -n 60
    artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -n 1 |
               sed 's/Test unit written to //')
    if [ -n "$artifact" ]; then
        echo "$name: reproduce with: $bin $artifact"
        echo "$name: input (base64): $(base64 -w0 "$artifact" | head -c 2000)"
    fi
}

for name in "${harnesses[@]}"; do
    bin=$dir/tests/fuzz/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    regress=tests/fuzz/regressions/$name
    log=$log_dir/$name.log
    if [ ! -x "$bin" ]; then
        echo "$name: no such harness ($bin)"
        failed=$((failed + 1))
        continue
    fi
    : >"$log"
    # Every committed crash input must now run clean.
    if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
        if ! "$bin" -artifact_prefix="$dir/artifacts/$name-" \
               "$regress"/* >>"$log" 2>&1; then
            echo "$name: a regression input FAILED"
            report "$name" "$log" "$bin"
            failed=$((failed + 1))
            continue
        fi
    fi
    work=$dir/corpus/$name
    rm -rf "$work"
    mkdir -p "$work"
    cp "$seeds"/* "$work"/
    if "$bin" -max_total_time="$secs" -timeout=60 -print_final_stats=1 \
           -artifact_prefix="$dir/artifacts/$name-" "$work" >>"$log" 2>&1; then
        runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" |
               grep -o "[0-9]*$" | tail -n 1)
        echo "$name: passed (${runs:-?} inputs in ${secs} s)"
        passed=$((passed + 1))
    else
        echo "$name: FAILED"
        report "$name" "$log" "$bin"
        failed=$((failed + 1))
    fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
