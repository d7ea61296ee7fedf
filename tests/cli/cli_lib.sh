# shellcheck shell=bash
# What the pf command-line tests share; sourced by tests/cli/test_pf_*.sh
# after they set PF (the pf binary) and work (a scratch folder). Each
# check that fails says why and counts in fails; the test exits with it.
# shellcheck disable=SC2154 # PF, work and clock: set by the test
fails=0

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# expect STATUS DESCRIPTION -- pf ARGS...: runs pf, checks its status;
# its output is in $work/out and $work/err. With TC=1 in the environment,
# pf runs on the test clock in $clock.
expect() {
    local want=$1 what=$2
    shift 3
    if [ "${TC:-0}" = 1 ]; then
        PF_TEST_CLOCK="$clock" "$PF" "$@" >"$work/out" 2>"$work/err"
    else
        "$PF" "$@" >"$work/out" 2>"$work/err"
    fi
    local got=$?
    if [ "$got" != "$want" ]; then
        fail "$what: status $got, want $want; stderr: $(cat "$work/err")"
    fi
}

# bad NEEDLE ARGS...: pf ARGS exits 2, and stderr holds NEEDLE (as is).
bad() {
    local needle=$1
    shift
    "$PF" "$@" >/dev/null 2>"$work/err"
    local st=$?
    [ "$st" = 2 ] || fail "pf $*: status $st, want 2"
    grep -qF -- "$needle" "$work/err" || fail "pf $*: message lacks '$needle': $(cat "$work/err")"
}

# lines FILE: how many lines it has (0 when it does not exist).
lines() {
    if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi
}
