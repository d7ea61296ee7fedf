# Sourced by the scripts in this folder: installs, with apt-get, whatever
# Debian package the build and the tests need and the machine lacks.
PF_PACKAGES="cmake make gcc clang pkg-config libcmocka-dev binutils
             libmicrohttpd-dev libcurl4-openssl-dev curl prometheus
             libclang-rt-14-dev"
# prometheus brings promtool, which the HTTP tests use to check /metrics.
# libclang-rt-14-dev holds libFuzzer (clang only recommends it), for the
# fuzz harnesses of scripts/fuzz.sh.

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
