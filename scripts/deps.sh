# Sourced by the scripts in this folder: installs, with apt-get, whatever
# Debian package the build and the tests need and the machine lacks.
PF_PACKAGES="cmake make gcc clang pkg-config libcmocka-dev binutils abigail-tools
             libmicrohttpd-dev libcurl4-openssl-dev curl prometheus
             locales libuv1-dev"
# prometheus brings promtool, which the HTTP tests use to check /metrics.
# abigail-tools brings abidw/abidiff for the ABI check (tests/check_abi.sh).
# locales brings localedef, with which tests/test_locale.c builds a
# comma-decimal locale (de_DE) to check that numbers ignore the locale.
# libuv1-dev: tests/test_executor_embed.c drives an embedded executor from
# a real libuv loop.

pf_install_deps() {
    local missing=""
    local p
    for p in $PF_PACKAGES; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
            missing="$missing $p"
        fi
    done
    if [ -n "$missing" ]; then
        echo "installing:$missing"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}
