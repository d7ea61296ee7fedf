#!/usr/bin/env bash
# pf run, driven as a user drives it: retries, timeouts that leave nothing
# running, exit codes, signal forwarding, a breaker shared by separate
# invocations, a bulkhead shared by concurrent ones, and usage errors.
# Times are short real-clock waits; only orders are asserted, not durations.
set -u
PF=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
state="$work/state"
mkdir "$state"
fails=0

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# expect STATUS DESCRIPTION -- pf ARGS...: runs pf, checks its status.
expect() {
    local want=$1 what=$2
    shift 3
    "$PF" "$@" >"$work/out" 2>"$work/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        fail "$what: status $got, want $want; stderr: $(cat "$work/err")"
    fi
}

lines() {
    if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}

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

# ---- stdio passes through ----------------------------------------------
out=$(printf 'in\n' | "$PF" run -- sh -c 'cat; echo err >&2' 2>"$work/err2")
[ "$out" = "in" ] || fail "stdin/stdout: got '$out'"
[ "$(cat "$work/err2")" = "err" ] || fail "stderr: got '$(cat "$work/err2")'"

# ---- retries ------------------------------------------------------------
count="$work/count"
rm -f "$count"
expect 3 "retries exhausted" -- run --retries 3 --backoff 10ms --jitter none \
    -- sh -c "echo x >>'$count'; exit 3"
[ "$(lines "$count")" = 4 ] || fail "--retries 3: $(lines "$count") attempts, want 4"

rm -f "$count"
expect 0 "success on the third attempt" -- run --retries 5 --backoff 10ms:20ms:2 \
    --jitter full -- sh -c "echo x >>'$count'; [ \$(wc -l <'$count') -ge 3 ]"
[ "$(lines "$count")" = 3 ] || fail "success on 3: $(lines "$count") attempts"

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
    --timeout 100ms --kill-after 100ms -- sh -c "echo x >>'$count'; sleep 30"
[ "$(lines "$count")" = 3 ] || fail "retried timeouts: $(lines "$count") attempts"

rm -f "$count"
expect 124 "--deadline ends the retries" -- run --retries 1000 --backoff 10ms \
    --jitter none --deadline 300ms --kill-after 100ms -- sh -c "echo x >>'$count'; sleep 30"
[ "$(lines "$count")" = 1 ] || fail "deadline: $(lines "$count") attempts"

# ---- a timeout leaves nothing running -----------------------------------
gone() { # every pid in file $1 has left /proc (allowing 2 s for reaping)
    local pid i
    for pid in $(cat "$1"); do
        for i in $(seq 40); do
            [ -d "/proc/$pid" ] || break
            sleep 0.05
        done
        [ -d "/proc/$pid" ] && fail "pid $pid still running: $(cat /proc/$pid/cmdline | tr '\0' ' ')"
    done
}
pids="$work/pids"
rm -f "$pids"
expect 124 "timeout with children" -- run --timeout 300ms --kill-after 200ms -- \
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

# ---- a breaker shared by separate invocations ---------------------------
br=(--breaker tb --state-dir "$state" --failure-threshold 2 --recovery-timeout 1500ms)
rm -f "$count"
expect 1 "breaker failure 1" -- run "${br[@]}" -- sh -c "echo x >>'$count'; exit 1"
expect 1 "breaker failure 2" -- run "${br[@]}" -- sh -c "echo x >>'$count'; exit 1"
expect 120 "breaker open" -- run "${br[@]}" -- sh -c "echo x >>'$count'; exit 0"
grep -q "breaker tb is open" "$work/err" || fail "open message: $(cat "$work/err")"
[ "$(lines "$count")" = 2 ] || fail "the open breaker ran the command"
expect 9 "fallback while open" -- run "${br[@]}" --fallback 'echo fallback; exit 9' -- true
[ "$(cat "$work/out")" = fallback ] || fail "fallback output: $(cat "$work/out")"
expect 125 "other settings for the same breaker" -- run --breaker tb \
    --state-dir "$state" --failure-threshold 3 -- true
grep -q -- "--breaker tb" "$work/err" || fail "settings message"
sleep 1.6
expect 0 "breaker recovered after --recovery-timeout" -- run "${br[@]}" \
    -- sh -c "echo x >>'$count'"
expect 0 "breaker closed" -- run "${br[@]}" -- sh -c "echo x >>'$count'"
[ "$(lines "$count")" = 4 ] || fail "after recovery: $(lines "$count") runs, want 4"

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
"$PF" run --bulkhead small --max-concurrent 1 --state-dir "$state" -- \
    sh -c "touch '$work/in'; sleep 30" &
holder=$!
for i in $(seq 100); do [ -f "$work/in" ] && break; sleep 0.05; done
expect 121 "bulkhead full" -- run --bulkhead small --max-concurrent 1 \
    --state-dir "$state" -- true
grep -q "bulkhead small is full" "$work/err" || fail "full message"
expect 121 "bulkhead full after --max-wait" -- run --bulkhead small \
    --max-concurrent 1 --max-wait 100ms --state-dir "$state" -- true
kill -TERM "$holder"
wait "$holder"

# ---- pf breaker|bulkhead list|show|reset ---------------------------------
sd=(--state-dir "$state")
expect 0 "breaker list" -- breaker list "${sd[@]}"
[ "$(cat "$work/out")" = tb ] || fail "breaker list: $(cat "$work/out")"
expect 0 "bulkhead list" -- bulkhead list "${sd[@]}"
[ "$(sort "$work/out" | tr '\n' ' ')" = "nightly small " ] || fail "bulkhead list: $(cat "$work/out")"
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
[ "$(cat "$work/out")" = nightly ] || fail "after reset: $(cat "$work/out")"
expect 0 "a new limit after reset" -- run --bulkhead small --max-concurrent 4 "${sd[@]}" -- true

# ---- usage errors: status 2, naming the option and the value -------------
bad() { # VALUE-TO-FIND ARGS...
    local needle=$1
    shift
    "$PF" "$@" >/dev/null 2>"$work/err"
    local st=$?
    [ "$st" = 2 ] || fail "pf $*: status $st, want 2"
    grep -q -- "$needle" "$work/err" || fail "pf $*: message lacks '$needle': $(cat "$work/err")"
}
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
bad "need --bulkhead" run --max-concurrent 2 -- true
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
"$PF" run --help >/dev/null || fail "pf run --help"

if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "pf run: all checks passed"
