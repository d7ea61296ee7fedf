#!/usr/bin/env bash
# pf run, driven as a user drives it: retries, timeouts that leave nothing
# running, exit codes, signal forwarding, a breaker shared by separate
# invocations, a bulkhead and a rate limit shared by concurrent ones, and
# usage errors.
# Retry delays, the breaker's recovery and the rate limit run on the test
# clock (PF_TEST_CLOCK, honoured by pf_test_hooks, the tests' build of pf, only): a
# file holding the time in ns, moved at once by pf's waits, which pf
# appends to FILE.sleeps; the test moves it between invocations. Timeouts
# and bulkhead waits are about real processes: short real-clock waits,
# and only what happened is asserted, never how long it took.
set -u
PF=$1          # pf with the test hooks (PF_TEST_CLOCK)
PF_PLAIN=${2:-} # pf as installed: must ignore PF_TEST_CLOCK
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
state="$work/state"
mkdir "$state"
# shellcheck source=tests/cli/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"

# The test clock: set_clock NS, and sleeps (what pf waited, one a line).
# The file holds "pf-test-clock NS"; anything else stops pf (125).
clock="$work/clock"
set_clock() {
    echo "pf-test-clock $1" >"$clock"
    rm -f "$clock.sleeps"
}
sleeps() {
    if [ -f "$clock.sleeps" ]; then tr '\n' ' ' <"$clock.sleeps"; fi
}
T0=1000000000000 # 1000 s: the clock's start (0 is "never" to a breaker)


# ---- exit codes ---------------------------------------------------------
expect 0 "true passes" -- run -- true
expect 7 "exit status passes through" -- run -- sh -c 'exit 7'
expect 137 "killed by a signal: 128 + signal" -- run -- sh -c 'kill -9 $$'
expect 127 "not found" -- run -- "$work/no-such-command"
expect 127 "not found in PATH" -- run -- pf-no-such-command-xyz
printf 'not a program\n' >"$work/noexec"
chmod 644 "$work/noexec"
expect 126 "not executable" -- run -- "$work/noexec"
expect 126 "a directory" -- run -- "$work"
expect 124 "--timeout" -- run --timeout 200ms -- sleep 30
grep -q "timed out (--timeout)" "$work/err" || fail "timeout message: $(cat "$work/err")"
expect 124 "--deadline" -- run --deadline 200ms -- sleep 30
grep -q "timed out (--deadline)" "$work/err" || fail "deadline message"

echo 12345 >"$work/notaclock"
PF_TEST_CLOCK="$work/notaclock" "$PF" run -- true 2>"$work/err"
[ $? = 125 ] || fail "a PF_TEST_CLOCK file without the marker did not stop pf"
grep -q "does not hold 'pf-test-clock NS'" "$work/err" || fail "test clock message: $(cat "$work/err")"

# The installed pf has no test hooks: the variable changes nothing.
if [ -n "$PF_PLAIN" ]; then
    PF_TEST_CLOCK="$work/notaclock" "$PF_PLAIN" run -- true 2>"$work/err"
    [ $? = 0 ] || fail "the installed pf read PF_TEST_CLOCK: $(cat "$work/err")"
    echo "pf-test-clock 0" >"$work/plainclock"
    PF_TEST_CLOCK="$work/plainclock" "$PF_PLAIN" run --retries 1 \
        --backoff 10ms -- false 2>"$work/err"
    [ $? = 1 ] || fail "the installed pf: retried false did not exit 1"
    [ -e "$work/plainclock.sleeps" ] &&
        fail "the installed pf waited on the test clock"
    [ "$(cat "$work/plainclock")" = "pf-test-clock 0" ] ||
        fail "the installed pf moved the test clock"
fi

# ---- stdio passes through ----------------------------------------------
out=$(printf 'in\n' | "$PF" run -- sh -c 'cat; echo err >&2' 2>"$work/err2")
[ "$out" = "in" ] || fail "stdin/stdout: got '$out'"
[ "$(cat "$work/err2")" = "err" ] || fail "stderr: got '$(cat "$work/err2")'"

# ---- retries, their delays on the test clock -----------------------------
count="$work/count"
rm -f "$count"
set_clock $T0
TC=1 expect 3 "retries exhausted" -- run --retries 3 --backoff 1s:4s:2 --jitter none \
    -- sh -c "echo x >>'$count'; exit 3"
[ "$(lines "$count")" = 4 ] || fail "--retries 3: $(lines "$count") attempts, want 4"
[ "$(sleeps)" = "1.000000 2.000000 4.000000 " ] || fail "delays 1s:4s:2: $(sleeps)"
[ "$(cat "$clock")" = "pf-test-clock $((T0 + 7000000000))" ] || fail "the clock moved to $(cat "$clock")"

set_clock $T0
TC=1 expect 1 "delays stop growing at MAX" -- run --retries 5 --backoff 500ms:2s:3 \
    --jitter none -- false
[ "$(sleeps)" = "0.500000 1.500000 2.000000 2.000000 2.000000 " ] || fail "capped delays: $(sleeps)"

set_clock $T0
TC=1 expect 1 "full jitter" -- run --retries 6 --backoff 1s:8s:2 --jitter full -- false
echo "$(sleeps)" | awk '{ n = split($0, d, " "); if (n != 6) exit 1;
    for (i = 1; i <= n; i++) { cap = 2 ^ (i - 1); if (cap > 8) cap = 8;
        if (d[i] < 0 || d[i] > cap) exit 1 } }' || fail "full jitter delays: $(sleeps)"

rm -f "$count"
set_clock $T0
TC=1 expect 0 "success on the third attempt" -- run --retries 5 --backoff 2s \
    --jitter equal -- sh -c "echo x >>'$count'; [ \$(wc -l <'$count') -ge 3 ]"
[ "$(lines "$count")" = 3 ] || fail "success on 3: $(lines "$count") attempts"
echo "$(sleeps)" | awk '{ if (split($0, d, " ") != 2) exit 1;
    if (d[1] < 1 || d[1] > 2 || d[2] < 2 || d[2] > 4) exit 1 }' \
    || fail "equal jitter on 2s, then 4s: $(sleeps)"

rm -f "$count"
set_clock $T0
TC=1 expect 1 "--deadline leaves no time for the next delay" -- run --retries 100 \
    --backoff 1s:1m:2 --jitter none --deadline 10s -- sh -c "echo x >>'$count'; exit 1"
[ "$(sleeps)" = "1.000000 2.000000 4.000000 " ] || fail "delays within --deadline: $(sleeps)"
[ "$(lines "$count")" = 4 ] || fail "--deadline 10s: $(lines "$count") attempts, want 4"
grep -q "no time left" "$work/err" || fail "deadline message: $(cat "$work/err")"

rm -f "$count"
expect 3 "--retry-on excludes 3" -- run --retries 3 --backoff 10ms --retry-on 1,4-9 \
    -- sh -c "echo x >>'$count'; exit 3"
[ "$(lines "$count")" = 1 ] || fail "--retry-on: $(lines "$count") attempts, want 1"

rm -f "$count"
expect 3 "--no-retry-on 3" -- run --retries 3 --backoff 10ms --no-retry-on 3 \
    -- sh -c "echo x >>'$count'; exit 3"
[ "$(lines "$count")" = 1 ] || fail "--no-retry-on: $(lines "$count") attempts"

rm -f "$count"
expect 124 "timeouts are retried (status 124)" -- run --retries 2 --backoff 10ms \
    --timeout 300ms --kill-after 100ms -- sh -c "echo x >>'$count'; sleep 30"
[ "$(lines "$count")" = 3 ] || fail "retried timeouts: $(lines "$count") attempts"

rm -f "$count"
expect 124 "--deadline ends the retries" -- run --retries 1000 --backoff 10ms \
    --jitter none --deadline 300ms --kill-after 100ms -- sh -c "echo x >>'$count'; sleep 30"
[ "$(lines "$count")" = 1 ] || fail "deadline: $(lines "$count") attempts"

# ---- a timeout leaves nothing running -----------------------------------
# running PID: it exists and is not a zombie (a killed grandchild is
# reaped by init, which may take its time: a zombie runs nothing).
running() {
    local st
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}
gone() { # no pid in file $1 runs (allowing 2 s for the last signals)
    local pid i
    for pid in $(cat "$1"); do
        for i in $(seq 40); do
            running "$pid" || break
            sleep 0.05
        done
        running "$pid" && fail "pid $pid still running: $(tr '\0' ' ' </proc/$pid/cmdline)"
    done
}
pids="$work/pids"
rm -f "$pids"
expect 124 "timeout with children" -- run --timeout 500ms --kill-after 200ms -- \
    sh -c "sleep 30 & echo \$! >>'$pids'; sleep 31 & echo \$! >>'$pids'; echo \$\$ >>'$pids'; wait"
[ "$(lines "$pids")" = 3 ] || fail "children not started"
gone "$pids"

rm -f "$pids"
expect 124 "a child ignoring SIGTERM gets SIGKILL" -- run --timeout 200ms \
    --kill-after 200ms -- sh -c "trap '' TERM; echo \$\$ >>'$pids'; sleep 32 & echo \$! >>'$pids'; wait; wait; wait"
gone "$pids"

# ---- signals sent to pf reach the command's group ------------------------
for sig in TERM INT HUP; do
    ready="$work/ready.$sig"
    got="$work/got.$sig"
    "$PF" run --kill-after 100ms -- sh -c "trap 'echo $sig >\"$got\"; exit 42' $sig; touch '$ready'; sleep 30 & wait" \
        2>/dev/null &
    pfpid=$!
    for i in $(seq 100); do [ -f "$ready" ] && break; sleep 0.05; done
    kill -s "$sig" "$pfpid"
    wait "$pfpid"
    st=$?
    [ "$st" = 42 ] || fail "SIG$sig forwarded: pf exited $st, want 42"
    [ "$(cat "$got" 2>/dev/null)" = "$sig" ] || fail "SIG$sig not seen by the command"
done

# a signal while pf waits for a token: 128 + S, the command never runs,
# and the reserved token is given back (the next one is due in 100 s, not
# 200 s)
"$PF" run --rate sigw --per-second 0.01 --state-dir "$state" -- true
"$PF" run -v --rate sigw --per-second 0.01 --max-wait 5m --state-dir "$state" \
    -- sh -c "touch '$work/sigw.ran'" 2>"$work/sigw.err" &
pfpid=$!
for i in $(seq 100); do grep -q "waiting" "$work/sigw.err" && break; sleep 0.05; done
kill -TERM "$pfpid"
wait "$pfpid"
st=$?
[ "$st" = 143 ] || fail "SIGTERM while waiting for a token: pf exited $st, want 143"
[ -e "$work/sigw.ran" ] && fail "the command ran after SIGTERM"
"$PF" limiter show sigw --state-dir "$state" >"$work/out"
awk '/next token in/ { exit !($4 > 0 && $4 <= 100) }' "$work/out" ||
    fail "the token was not given back: $(cat "$work/out")"
"$PF" limiter reset sigw --state-dir "$state" >/dev/null

# ---- a breaker shared by separate invocations, on the test clock --------
br=(--breaker tb --state-dir "$state" --failure-threshold 2 --recovery-timeout 30s)
rm -f "$count"
set_clock $T0
TC=1 expect 1 "breaker failure 1" -- run "${br[@]}" -- sh -c "echo x >>'$count'; exit 1"
TC=1 expect 1 "breaker failure 2" -- run "${br[@]}" -- sh -c "echo x >>'$count'; exit 1"
TC=1 expect 120 "breaker open" -- run "${br[@]}" -- sh -c "echo x >>'$count'; exit 0"
grep -q "breaker tb is open" "$work/err" || fail "open message: $(cat "$work/err")"
[ "$(lines "$count")" = 2 ] || fail "the open breaker ran the command"
TC=1 expect 9 "fallback while open" -- run "${br[@]}" --fallback 'echo fallback; exit 9' -- true
[ "$(cat "$work/out")" = fallback ] || fail "fallback output: $(cat "$work/out")"
TC=1 expect 125 "other settings for the same breaker" -- run --breaker tb \
    --state-dir "$state" --failure-threshold 3 -- true
grep -q -- "--breaker tb" "$work/err" || fail "settings message"
set_clock $((T0 + 29999000000))
TC=1 expect 120 "still open 1 ms before --recovery-timeout" -- run "${br[@]}" \
    -- sh -c "echo x >>'$count'"
set_clock $((T0 + 30000000000))
TC=1 expect 0 "breaker recovered after --recovery-timeout" -- run "${br[@]}" \
    -- sh -c "echo x >>'$count'"
TC=1 expect 0 "breaker closed" -- run "${br[@]}" -- sh -c "echo x >>'$count'"
[ "$(lines "$count")" = 4 ] || fail "after recovery: $(lines "$count") runs, want 4"
TC=1 expect 0 "breaker show on the test clock" -- breaker show tb --state-dir "$state"
grep -q "state *closed" "$work/out" || fail "tb after recovery: $(cat "$work/out")"

# ---- a rate limit shared by separate and concurrent invocations ----------
rl=(--rate api --per-second 1 --burst 2 --state-dir "$state")
set_clock $T0
TC=1 expect 0 "token 1 of the burst" -- run "${rl[@]}" -- true
TC=1 expect 0 "token 2 of the burst" -- run "${rl[@]}" -- true
rm -f "$count"
TC=1 expect 122 "no token: not run" -- run "${rl[@]}" -- sh -c "echo x >>'$count'"
grep -q "rate api: no token within --max-wait" "$work/err" || fail "rate message: $(cat "$work/err")"
[ "$(lines "$count")" = 0 ] || fail "a rate-limited command ran"
TC=1 expect 0 "--max-wait waits for the next token" -- run "${rl[@]}" --max-wait 5s -- true
[ "$(sleeps)" = "1.000000 " ] || fail "waited for a token: $(sleeps)"
TC=1 expect 122 "--max-wait shorter than the wait" -- run "${rl[@]}" --max-wait 500ms -- true
TC=1 expect 122 "--deadline shorter than the wait" -- run "${rl[@]}" --max-wait 1m \
    --deadline 500ms -- true
grep -q "within --deadline" "$work/err" || fail "rate/deadline message: $(cat "$work/err")"
set_clock $((T0 + 10000000000))
TC=1 expect 0 "the bucket refilled" -- run "${rl[@]}" -- true
TC=1 expect 125 "other settings for the same limiter" -- run --rate api \
    --per-second 2 --state-dir "$state" -- true
grep -q -- "--rate api" "$work/err" || fail "limiter settings message"

# every attempt takes a token: a retry waits for its delay (100ms, 200ms),
# then for the rest of the second until the next token
set_clock $T0
TC=1 expect 1 "retries wait for tokens" -- run --rate slow --per-second 1 --burst 1 \
    --max-wait 10s --state-dir "$state" --retries 2 --backoff 100ms --jitter none -- false
[ "$(sleeps)" = "0.100000 0.900000 0.200000 0.800000 " ] || fail "retry + token waits: $(sleeps)"
set_clock $((T0 + 10000000000))
TC=1 expect 1 "a retry with no token in time stops the run" -- run --rate slow \
    --per-second 1 --burst 1 --state-dir "$state" --retries 2 --backoff 100ms -- false
grep -q "no further attempt" "$work/err" || fail "retry rate message: $(cat "$work/err")"

# an open breaker gives the attempt's token back: two runs stopped by it
# in a row are 120 both, never 122
set_clock $T0
both=(--breaker rb --failure-threshold 1 --recovery-timeout 1h --rate rb
    --per-second 1 --burst 1 --state-dir "$state")
TC=1 expect 1 "trip rb" -- run "${both[@]}" -- false
set_clock $((T0 + 1000000000))
TC=1 expect 120 "rb open: the token is given back" -- run "${both[@]}" -- true
TC=1 expect 120 "rb still open, not rate limited" -- run "${both[@]}" -- true

# 8 processes at once against a bucket of 3 that does not refill meanwhile
# (time stands still on the test clock): exactly 3 run
set_clock $T0
: >"$work/rate.log"
pids_pf=""
for i in $(seq 8); do
    PF_TEST_CLOCK="$clock" "$PF" run --rate burst3 --per-second 0.001 --burst 3 \
        --state-dir "$state" -- sh -c "echo $i >>'$work/rate.log'" 2>/dev/null &
    pids_pf="$pids_pf $!"
done
ok=0
limited=0
for p in $pids_pf; do
    wait "$p"
    case $? in
        0) ok=$((ok + 1)) ;;
        122) limited=$((limited + 1)) ;;
        *) fail "rate run $p: unexpected status" ;;
    esac
done
[ "$ok" = 3 ] && [ "$limited" = 5 ] || fail "burst 3 across 8 processes: $ok ran, $limited limited"
[ "$(lines "$work/rate.log")" = 3 ] || fail "burst 3: $(lines "$work/rate.log") commands ran"

# ---- a bulkhead of 2 shared by 8 concurrent invocations -----------------
cnt="$work/inside"
log="$work/inside.log"
echo 0 >"$cnt"
body="flock '$cnt.lock' sh -c 'c=\$((\$(cat \"$cnt\") + 1)); echo \$c >\"$cnt\"; echo \$c >>\"$log\"'
sleep 0.1
flock '$cnt.lock' sh -c 'echo \$((\$(cat \"$cnt\") - 1)) >\"$cnt\"'"
pids_pf=""
for i in $(seq 8); do
    "$PF" run --bulkhead nightly --max-concurrent 2 --max-wait 20s \
        --state-dir "$state" -- sh -c "$body" &
    pids_pf="$pids_pf $!"
done
for p in $pids_pf; do
    wait "$p" || fail "bulkhead run $p exited $?"
done
[ "$(lines "$log")" = 8 ] || fail "bulkhead: $(lines "$log") of 8 ran"
max=$(sort -n "$log" | tail -1)
[ "$max" -le 2 ] || fail "bulkhead of 2: $max inside at once"
[ "$(cat "$cnt")" = 0 ] || fail "bulkhead count ends at $(cat "$cnt")"

# without --max-wait a full bulkhead refuses at once
"$PF" run --bulkhead small --max-concurrent 1 --state-dir "$state" --kill-after 100ms -- \
    sh -c "touch '$work/in'; sleep 30" &
holder=$!
for i in $(seq 100); do [ -f "$work/in" ] && break; sleep 0.05; done
expect 121 "bulkhead full" -- run --bulkhead small --max-concurrent 1 \
    --state-dir "$state" -- true
grep -q "bulkhead small is full" "$work/err" || fail "full message"
expect 121 "bulkhead full after --max-wait" -- run --bulkhead small \
    --max-concurrent 1 --max-wait 100ms --state-dir "$state" -- true
# pf bulkhead show/list count the slots every live process holds
expect 0 "bulkhead show while held" -- bulkhead show small --state-dir "$state"
grep -q "in use *1 of 1$" "$work/out" || fail "show held: $(cat "$work/out")"
expect 0 "bulkhead list while held" -- bulkhead list --state-dir "$state"
grep -q "^small  1 of 1 in use$" "$work/out" || fail "list held: $(cat "$work/out")"
kill -TERM "$holder"
wait "$holder"
expect 0 "bulkhead show after the holder" -- bulkhead show small --state-dir "$state"
grep -q "in use *0 of 1$" "$work/out" || fail "show after: $(cat "$work/out")"
# a holder killed with SIGKILL leaves its lease word behind: not counted
rm -f "$work/in"
"$PF" run --bulkhead small --max-concurrent 1 --state-dir "$state" -- \
    sh -c "echo \$\$ >'$work/in'; exec sleep 30" &
holder=$!
for i in $(seq 100); do [ -s "$work/in" ] && break; sleep 0.05; done
kill -KILL "$holder"
wait "$holder"
kill -KILL "$(cat "$work/in")"
expect 0 "bulkhead show after a killed holder" -- bulkhead show small --state-dir "$state"
grep -q "in use *0 of 1$" "$work/out" || fail "show dead holder: $(cat "$work/out")"

# ---- pf breaker|bulkhead|limiter list|show|reset --------------------------
sd=(--state-dir "$state")
set_clock $((T0 + 10000000000))
TC=1 expect 0 "limiter list" -- limiter list "${sd[@]}"
[ "$(sort "$work/out" | tr '\n' ' ')" = "api burst3 rb slow " ] || fail "limiter list: $(cat "$work/out")"
TC=1 expect 0 "limiter show" -- limiter show api "${sd[@]}"
grep -q "per second *1$" "$work/out" || fail "limiter show rate: $(cat "$work/out")"
grep -q "burst *2$" "$work/out" || fail "limiter show burst: $(cat "$work/out")"
grep -q "tokens now *1$" "$work/out" || fail "limiter show tokens: $(cat "$work/out")"
TC=1 expect 0 "limiter reset" -- limiter reset api "${sd[@]}"
[ -e "$state/puffinflow-limiter.api.shm" ] && fail "limiter reset left the segment"
[ -e "$state/pf-limiter.api.conf" ] && fail "limiter reset left the settings"
TC=1 expect 1 "show a reset limiter" -- limiter show api "${sd[@]}"
TC=1 expect 0 "a new rate after reset" -- run --rate api --per-second 2 "${sd[@]}" -- true
expect 0 "breaker list" -- breaker list "${sd[@]}"
[ "$(sort "$work/out" | tr '\n' ' ')" = "rb tb " ] || fail "breaker list: $(cat "$work/out")"
expect 0 "bulkhead list" -- bulkhead list "${sd[@]}"
[ "$(sort "$work/out" | tr '\n' ' ')" = "nightly  0 of 2 in use small  0 of 1 in use " ] || fail "bulkhead list: $(cat "$work/out")"
ob=(--breaker op --state-dir "$state" --failure-threshold 1 --recovery-timeout 1h)
expect 1 "trip breaker op" -- run "${ob[@]}" -- false
expect 0 "breaker show" -- breaker show op "${sd[@]}"
grep -q "state *open" "$work/out" || fail "show open: $(cat "$work/out")"
grep -q "recovery timeout *3600 s" "$work/out" || fail "show settings"
expect 120 "op is open" -- run "${ob[@]}" -- true
expect 0 "breaker reset" -- breaker reset op "${sd[@]}"
expect 0 "breaker show after reset" -- breaker show op "${sd[@]}"
grep -q "state *closed" "$work/out" || fail "show after reset: $(cat "$work/out")"
expect 0 "op runs after reset" -- run "${ob[@]}" -- true
expect 0 "breaker reset --forget" -- breaker reset op --forget "${sd[@]}"
[ -e "$state/puffinflow-breaker.op.shm" ] && fail "--forget left the segment"
expect 1 "show a forgotten breaker" -- breaker show op "${sd[@]}"
expect 0 "bulkhead show" -- bulkhead show small "${sd[@]}"
grep -q "max concurrent *1" "$work/out" || fail "bulkhead show: $(cat "$work/out")"
expect 0 "bulkhead reset" -- bulkhead reset small "${sd[@]}"
expect 0 "bulkhead list after reset" -- bulkhead list "${sd[@]}"
[ "$(cat "$work/out")" = "nightly  0 of 2 in use" ] || fail "after reset: $(cat "$work/out")"
expect 0 "a new limit after reset" -- run --bulkhead small --max-concurrent 4 "${sd[@]}" -- true

# ---- usage errors: status 2, naming the option and the value -------------
bad "--retries: bad value 'x'" run --retries x -- true
bad "--retries: bad value '-1'" run --retries -1 -- true
bad "--backoff: bad value '1q'" run --backoff 1q -- true
bad "--backoff: bad value '2s:1s'" run --backoff 2s:1s -- true
bad "--backoff: bad value '1s:2s:0.5'" run --backoff 1s:2s:0.5 -- true
bad "--backoff: bad value '1:2:3:4'" run --backoff 1:2:3:4 -- true
bad "--jitter: bad value 'some'" run --jitter some -- true
bad "--retry-on: bad value '1,x'" run --retry-on 1,x -- true
bad "--retry-on: bad value '300'" run --retry-on 300 -- true
bad "--no-retry-on: bad value '5-2'" run --no-retry-on 5-2 -- true
bad "--timeout: bad value '2x'" run --timeout 2x -- true
bad "--timeout: bad value '-1s'" run --timeout -1s -- true
bad "--timeout: bad value 'nan'" run --timeout nan -- true
bad "--deadline: bad value ''" run --deadline= -- true
bad "--kill-after: bad value 'soon'" run --kill-after soon -- true
bad "--breaker: bad value 'a/b'" run --breaker a/b -- true
bad "--breaker: bad value '.x'" run --breaker .x -- true
bad "--failure-threshold: bad value '0'" run --breaker b --failure-threshold 0 -- true
bad "--success-threshold: bad value 'z'" run --breaker b --success-threshold z -- true
bad "--recovery-timeout: bad value '1y'" run --breaker b --recovery-timeout 1y -- true
bad "--max-concurrent: bad value '0'" run --bulkhead b --max-concurrent 0 -- true
bad "--max-concurrent: bad value '5000'" run --bulkhead b --max-concurrent 5000 -- true
bad "--max-wait: bad value 'x'" run --bulkhead b --max-concurrent 1 --max-wait x -- true
bad "needs --max-concurrent" run --bulkhead b -- true
bad "--max-concurrent needs --bulkhead" run --max-concurrent 2 -- true
bad "--max-wait needs --bulkhead NAME or --rate NAME" run --max-wait 1s -- true
bad "--rate: bad value 'a/b'" run --rate a/b --per-second 1 -- true
bad "--per-second: bad value '0'" run --rate r --per-second 0 -- true
bad "--per-second: bad value 'fast'" run --rate r --per-second fast -- true
bad "--per-second: bad value 'inf'" run --rate r --per-second inf -- true
bad "--per-second: bad value '2e9'" run --rate r --per-second 2e9 -- true
bad "--burst: bad value '0'" run --rate r --per-second 1 --burst 0 -- true
bad "--burst: bad value '1.5'" run --rate r --per-second 1 --burst 1.5 -- true
bad "needs --per-second" run --rate r -- true
bad "--per-second 1e-06 with --burst 1000000: bad values together" run --rate r \
    --per-second 0.000001 --burst 1000000 --state-dir "$state" -- true
bad "--per-second and --burst need --rate" run --burst 3 -- true
bad "--timeout: bad value ' 1s'" run --timeout " 1s" -- true
bad "--timeout: bad value '+1s'" run --timeout +1s -- true
bad "--timeout: bad value '1e99h'" run --timeout 1e99h -- true
bad "--fallback needs --breaker" run --fallback true -- true
bad "--timeout: needs a value" run --timeout
bad "unknown option '--bogus'" run --bogus 1 -- true
bad "no command" run --retries 1
bad "no command" run --
bad "after '--'" run true
bad "unknown command 'nope'" nope
bad "needs a NAME" breaker show
bad "takes no NAME" bulkhead list x
bad "unknown action 'frob'" breaker frob
bad "NAME: bad value 'a/b'" breaker show a/b
bad "--forget goes with reset" breaker show x --forget
bad "unknown option '--bogus'" bulkhead list --bogus
bad "unknown action 'frob'" limiter frob
bad "NAME: bad value '..x'" limiter show ..x
"$PF" run --help >/dev/null || fail "pf run --help"
"$PF" run --help | grep -q -- "--per-second" || fail "pf run --help lacks --rate"

if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "pf run: all checks passed"
