#!/usr/bin/env bash
# Build (optimised, no sanitizers, with libcurl) and run the HTTP client's
# benchmarks (BENCHMARKS.md, "HTTP and subprocess providers" and "Agents
# calling HTTP"). Usage:
#   scripts/bench_http.sh          bench_curl, then bench_curl_agents
#   scripts/bench_http.sh perf     syscall counts of one bench_curl 10000
#                                  run (needs perf and tracepoint access)
#   scripts/bench_http.sh admit    N = 10,000 agent runs (no bulkhead) and
#                                  bare transfers with max_transfers 0,
#                                  1,024, 2,048 and 4,096, interleaved
#   scripts/bench_http.sh patterns instructions per call of the runtime's
#                                  part (callgrind, needs valgrind): agent
#                                  state with no pattern vs breaker +
#                                  bulkhead + retry + timeout
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF \
      -DPF_BUILD_EXAMPLES=OFF -DPF_BUILD_BENCH=ON -DPF_WITH_CURL=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_curl bench_curl_agents \
      >/dev/null
curl_b="$build"/integrations/curl/bench_curl
agents_b="$build"/integrations/curl/bench_curl_agents

case "${1:-}" in
"")
    "$curl_b"
    echo
    "$agents_b"
    ;;
perf)
    BENCH_NO_FLOOR=1 perf stat -e \
'syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex,'\
'syscalls:sys_enter_timerfd_settime,syscalls:sys_enter_epoll_pwait2,'\
'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_connect,'\
'context-switches,task-clock' "$curl_b" 10000
    ;;
admit)
    for round in 1 2 3; do
        for m in 0 1024 2048 4096; do
            echo "# round $round, max_transfers $m"
            BENCH_MAX_TRANSFERS=$m BENCH_PARTS=1 "$agents_b" 10000 |
                grep '^10000' | head -1
            BENCH_MAX_TRANSFERS=$m BENCH_NO_FLOOR=1 "$curl_b" 10000 |
                grep '^10000'
        done
    done
    ;;
patterns)
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    # Inclusive instructions of the runtime's worker tasks for one batch
    # of n runs (the client process: the lowest pid; the server is its
    # forked child).
    # With what=total, all of the client's instructions instead.
    incl() {
        local kind=$1 n=$2 what=${3:-tasks} f pat
        BENCH_ONE=$kind valgrind --tool=callgrind \
            --callgrind-out-file="$out/cg.$kind.$n.%p" "$agents_b" "$n" \
            >/dev/null 2>&1
        f=$(find "$out" -name "cg.$kind.$n.*" |
            awk -F. '{print $NF, $0}' | sort -n | head -1 | cut -d' ' -f2)
        pat='\?\?\?:activation_task_fn '
        [ "$what" = total ] && pat='PROGRAM TOTALS'
        callgrind_annotate --inclusive=yes --threshold=100 "$f" |
            awk -v p="$pat" '$0 ~ p {gsub(",", "", $1); print $1; exit}'
        rm -f "$out"/cg."$kind"."$n".*
    }
    echo "# instructions per call in the runtime's worker tasks (the state's"
    echo "# scheduling and patterns, and pf_ctx_curl handing the transfer to"
    echo "# the client), (batch of 400 - batch of 100) / 300"
    for kind in none all; do
        a=$(incl "$kind" 100)
        b=$(incl "$kind" 400)
        echo "$kind: $(( (b - a) / 300 ))"
    done
    a=$(incl bare 100 total)
    b=$(incl bare 400 total)
    echo "# all of the client's instructions per call, bare pf_curl_start"
    echo "bare (total): $(( (b - a) / 300 ))"
    ;;
*)
    echo "usage: $0 [perf|admit|patterns]" >&2
    exit 2
    ;;
esac
