#!/usr/bin/env bash
# pf health, pf watch and the help of every command, driven as a user
# drives them. pf health runs against real servers on loopback (a TCP and
# HTTP server in Python) and real commands; only what happened is
# asserted, never how long it took.
set -u
PF=$1
work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=tests/cli/cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"

json_ok() { # FILE: one JSON document (or, with lines, one a line)
    /usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]):
    json.loads(l)' "$1"
}

# ---- help and version ----------------------------------------------------
for args in "-h" "--help" "help" "run --help" "run -h" "health --help" \
    "watch --help" "watch -h" "breaker --help" "bulkhead --help" \
    "limiter --help" "demo --help" "version --help"; do
    # shellcheck disable=SC2086
    expect 0 "pf $args" -- $args
    [ -s "$work/out" ] || fail "pf $args: no usage on stdout"
    [ -s "$work/err" ] && fail "pf $args: stderr: $(cat "$work/err")"
done
for args in "-V" "--version" "version"; do
    expect 0 "pf $args" -- $args
    grep -qE '^puffinflow [0-9]+\.[0-9]+\.[0-9]+' "$work/out" || fail "pf $args: $(cat "$work/out")"
done
expect 2 "pf with no command" --
grep -q "usage: pf" "$work/err" || fail "pf alone: no usage on stderr"
bad "unknown command 'frob'" frob
bad "unexpected 'x'" version x

# ---- the man page and the docs page know every option ----------------------
src=${2:-}
if [ -n "$src" ]; then
    for cmd in run health watch breaker; do
        for opt in $("$PF" $cmd --help | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
            grep -qF -- "$(echo "$opt" | sed 's/-/\\-/g')" "$src/docs/pf.1" ||
                fail "docs/pf.1 lacks pf $cmd $opt"
            grep -qF -- "$opt" "$src/docs/pf.md" || fail "docs/pf.md lacks pf $cmd $opt"
        done
    done
    if command -v groff >/dev/null; then
        warn=$(groff -man -Tutf8 -ww "$src/docs/pf.1" 2>&1 >/dev/null)
        [ -z "$warn" ] || fail "groff warns on docs/pf.1: $warn"
    fi
fi

# ---- pf watch --------------------------------------------------------------
bad "PID: bad value 'notapid'" watch notapid
bad "PID: bad value '-5'" watch -5
bad "PID: bad value '12x'" watch 12x
bad "PID: bad value '0'" watch 0
bad "PID: bad value '99999999999'" watch 99999999999
bad "--interval: bad value '1e-300' (at least 1ms)" watch self --interval 1e-300
bad "--interval: bad value 'x'" watch self --interval x
bad "--interval: bad value '2parsecs'" watch self --interval 2parsecs
bad "--interval: bad value '-1'" watch self --interval=-1
bad "--interval: needs a value" watch self --interval
bad "--count: bad value '0'" watch self --count 0
bad "--count: bad value 'x'" watch self --count x
bad "--count: bad value '1.5'" watch self --count 1.5
bad "unknown option '--bogus'" watch self --bogus
bad "unexpected '2'" watch 1 2
bad "a PID (1) or a command, not both" watch 1 -- true
bad "no command after '--'" watch --
bad "what to watch?" watch --json

expect 0 "watch self --json" -- watch self --json --count 3 --interval 10ms
[ "$(wc -l <"$work/out")" = 3 ] || fail "watch --json: $(wc -l <"$work/out") lines, want 3"
json_ok "$work/out" || fail "watch --json is not JSON: $(cat "$work/out")"
grep -q '"open_fds":' "$work/out" || fail "watch --json fields: $(head -1 "$work/out")"
expect 0 "watch self, text" -- watch self --count 2 --interval=10ms
grep -q "watching pid self" "$work/out" || fail "watch text: $(cat "$work/out")"
[ "$(grep -c 'fds' "$work/out")" = 2 ] || fail "watch text samples: $(cat "$work/out")"

expect 5 "watch -- CMD exits with its status" -- watch --interval 10ms -- sh -c 'sleep 0.05; exit 5'
grep -q "exited (status 5)" "$work/out" || fail "watch CMD exit: $(cat "$work/out")"
expect 0 "watch --json -- CMD" -- watch --json --interval 10ms -- sh -c 'sleep 0.05'
json_ok "$work/out" || fail "watch --json CMD is not JSON: $(cat "$work/out")"
tail -1 "$work/out" | grep -q '"exited":[0-9]*,"status":0' || fail "watch --json exit line: $(tail -1 "$work/out")"
expect 0 "watch --count with a command waits for it" -- watch --count 1 --interval 10ms \
    -- sh -c "sleep 0.1; touch '$work/watched'"
[ -f "$work/watched" ] || fail "watch --count returned before its command ended"
expect 127 "watch -- a command not found" -- watch -- pf-no-such-command-xyz
expect 1 "watch a pid that does not exist" -- watch 2147483646 --count 1
grep -q "no such process" "$work/err" || fail "watch missing pid: $(cat "$work/err")"

# ---- pf health: servers on loopback ------------------------------------------
# A server answering /ok 200, /fail 503, /slow after 5 s; and a port
# that was free a moment ago (refused).
/usr/bin/python3 - "$work/ports" <<'EOF' &
import http.server, socket, socketserver, sys, threading, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(5)
        code = 200 if self.path in ("/ok", "/slow") else 503
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
free = socket.socket()
free.bind(("127.0.0.1", 0))
closed = free.getsockname()[1]
free.close()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d %d\n" % (srv.server_address[1], closed))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
EOF
server_pid=$!
for i in $(seq 100); do [ -f "$work/ports" ] && break; sleep 0.05; done
read -r port closed <"$work/ports" || fail "the loopback server did not start"

conf="$work/health.conf"
have_http=1
printf 'http probe http://127.0.0.1:%s/ok\n' "$port" >"$conf"
"$PF" health "$conf" >/dev/null 2>"$work/err"
if grep -q "need libcurl" "$work/err"; then
    have_http=0
    grep -q "$conf:1: http checks need libcurl" "$work/err" || fail "no-curl message: $(cat "$work/err")"
fi

cat >"$conf" <<EOF
# every check passes
tcp     server  timeout=2s tags=ready,live  127.0.0.1:$port
command true    tags=live                   true
command quoted  sh -c "test \\"\$0\" = sh"
EOF
[ $have_http = 1 ] && echo "http web timeout=2s tags=ready http://127.0.0.1:$port/ok" >>"$conf"
expect 0 "healthy" -- health "$conf"
head -1 "$work/out" | grep -q "^healthy: " || fail "healthy report: $(cat "$work/out")"
grep -q "server .*tcp .*healthy" "$work/out" || fail "tcp line: $(cat "$work/out")"
expect 0 "healthy --json" -- health "$conf" --json
json_ok "$work/out" || fail "health --json is not JSON: $(cat "$work/out")"
grep -q '"status":"healthy"' "$work/out" || fail "--json status: $(cat "$work/out")"
expect 0 "--tag live" -- health --tag live "$conf" --json
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(sorted(d["checks"]) != ["server","true"])' \
    "$work/out" || fail "--tag live ran: $(cat "$work/out")"
bad "--tag: bad value 'nope' (no check in" health "$conf" --tag nope

cat >"$conf" <<EOF
tcp     server  127.0.0.1:$port
command plugin  degraded-exit=1 sh -c "exit 1"
command extra   critical=no false
EOF
expect 1 "degraded" -- health "$conf"
head -1 "$work/out" | grep -q "^degraded: " || fail "degraded report: $(cat "$work/out")"
grep -q "extra .*unhealthy.*(not critical)" "$work/out" || fail "not critical: $(cat "$work/out")"

pids="$work/pids"
cat >"$conf" <<EOF
tcp     refused  timeout=1s 127.0.0.1:$closed
command sleeper  timeout=300ms sh -c "trap '' TERM; sleep 30 & echo \$! >>'$pids'; echo \$\$ >>'$pids'; wait; wait"
command fine     true
EOF
[ $have_http = 1 ] && cat >>"$conf" <<EOF
http    error    http://127.0.0.1:$port/fail
http    slow     timeout=300ms http://127.0.0.1:$port/slow
http    nobody   timeout=1s http://127.0.0.1:$closed/
EOF
expect 2 "unhealthy" -- health "$conf"
head -1 "$work/out" | grep -q "^unhealthy: " || fail "unhealthy report: $(cat "$work/out")"
grep -q "refused .*unhealthy" "$work/out" || fail "refused: $(cat "$work/out")"
grep -q "sleeper .*unhealthy.*timed out" "$work/out" || fail "sleeper: $(cat "$work/out")"
grep -q "fine .*healthy" "$work/out" || fail "fine: $(cat "$work/out")"
if [ $have_http = 1 ]; then
    grep -q "error .*unhealthy.*HTTP 503" "$work/out" || fail "http 503: $(cat "$work/out")"
    grep -q "slow .*unhealthy" "$work/out" || fail "http slow: $(cat "$work/out")"
    grep -q "nobody .*unhealthy" "$work/out" || fail "http refused: $(cat "$work/out")"
fi
[ "$(wc -l <"$pids")" = 2 ] || fail "the sleeper did not start its child"
# (a killed grandchild is reaped by init, maybe a moment later: a zombie
# is not running)
for pid in $(cat "$pids"); do
    st=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && fail "pid $pid still running ($st) after pf health"
done
expect 2 "unhealthy --json" -- health "$conf" --json
json_ok "$work/out" || fail "unhealthy --json is not JSON: $(cat "$work/out")"

# ---- pf health: the config file is untrusted input ----------------------------
# cfg_bad NEEDLE TEXT: the file holding TEXT is refused (2), naming NEEDLE.
cfg_bad() {
    printf '%b' "$2" >"$conf"
    bad "$conf:$1" health "$conf"
}
cfg_bad "1: unknown check kind 'ping'" 'ping a host\n'
cfg_bad "3: tcp: bad target 'host' (HOST:PORT" '# c\n\ntcp a host\n'
cfg_bad "1: tcp: bad target 'h:0' (the port must be 1..65535)" 'tcp a h:0\n'
cfg_bad "1: tcp: bad target 'h:99999'" 'tcp a h:99999\n'
cfg_bad "1: tcp: bad target '::1:80'" 'tcp a ::1:80\n'
cfg_bad "2: check 'a' is already on line 1" 'command a true\ncommand a true\n'
cfg_bad "1: timeout: bad value 'soon'" 'command a timeout=soon true\n'
cfg_bad "1: timeout: bad value '0' (more than 0)" 'command a timeout=0 true\n'
cfg_bad "1: critical: bad value 'maybe' (yes or no)" 'command a critical=maybe true\n'
cfg_bad "1: tags: bad value 'a,,b'" 'command a tags=a,,b true\n'
cfg_bad "1: degraded-exit: bad value '256'" 'command a degraded-exit=256 true\n'
cfg_bad "1: degraded-exit: only for command checks" 'tcp a degraded-exit=1 h:1\n'
cfg_bad "1: unknown option 'retries'" 'command a retries=3 true\n'
cfg_bad "1: command a: no target" 'command a timeout=1s\n'
cfg_bad "1: tcp: needs a NAME and a target" 'tcp\n'
cfg_bad "1: bad check name 'a/b'" 'command a/b true\n'
cfg_bad "1: tcp a: one target, then nothing" 'tcp a h:1 h:2\n'
cfg_bad "1: a quote opened at column 16 is not closed" 'command a echo "x\n'
cfg_bad "1: column 18: only" 'command a echo "x\\y"\n'
cfg_bad "1: column 17: a quote inside a word" 'command a echo x"y"\n'
cfg_bad "2: a NUL byte" 'command a true\ncommand b \0true\n'
cfg_bad "1: longer than 4096 bytes" "command a $(head -c 5000 /dev/zero | tr '\0' x)\n"
cfg_bad " no checks" '# nothing\n\n'
if [ $have_http = 1 ]; then
    cfg_bad "1: http: bad URL 'ftp://h/'" 'http a ftp://h/\n'
fi
bad "$work/none.conf: No such file" health "$work/none.conf"
bad "no FILE" health
bad "unexpected 'b'" health a b
bad "unknown option '--bogus'" health --bogus x
bad "--tag: needs a value" health x --tag

if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "pf health, watch, help: all checks passed"
