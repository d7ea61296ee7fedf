# shellcheck shell=bash
# Sourced by the scripts in this folder: installs, with apt-get, the Debian
# packages a script needs and the machine lacks, showing apt's own progress
# (a line per package fetched, unpacked and set up).
#
# Nothing here installs or starts a server: the exposition format is checked
# with the Prometheus project's Python parser, not the prometheus package
# (a web UI and a service enabled on install).

# scripts/demo.sh and scripts/bench.sh: a C compiler (gcc, and libc6-dev:
# the C library's headers and start files, which gcc only recommends),
# cmake, make.
# shellcheck disable=SC2034 # used by the scripts that source this
PF_DEMO_PACKAGES="gcc libc6-dev make cmake"

# scripts/test.sh: everything the whole suite needs. One package a line,
# with what needs it.
PF_PACKAGES="
    gcc libc6-dev make cmake
    clang
    pkg-config
    libcmocka-dev
    binutils
    abigail-tools
    libmicrohttpd-dev
    libcurl4-openssl-dev
    python3
    python3-prometheus-client
    locales
    libclang-rt-14-dev
    libuv1-dev
    python3-dev
    python3-pytest
    python3-pytest-asyncio
    python3-pip
    python3-setuptools
    python3-wheel
    python3-venv
    libhiredis-dev
    redis-tools
"
# clang: the second compiler the suite is built with.
# pkg-config: finds libmicrohttpd and libcurl; the install test uses it.
# libcmocka-dev: the test framework.
# binutils: nm (tests/check_exports.sh) and objdump (tests/install/run.sh).
# abigail-tools: abidiff, the ABI check against abi/ (tests/check_abi.sh).
# libmicrohttpd-dev: the HTTP endpoint (integrations/http).
# libcurl4-openssl-dev: the HTTP client (integrations/curl); the HTTP
#   endpoint's tests are its client too.
# python3, python3-prometheus-client: tests/prom_parse.py, run with
#   /usr/bin/python3, checks the metrics tests' exposition text.
# libclang-rt-14-dev: libFuzzer, which clang only recommends, for the fuzz
#   harnesses (scripts/fuzz.sh, the last phase of scripts/test.sh).
# libuv1-dev: tests/test_executor_embed.c drives an embedded executor from a
#   real libuv loop.
# python3-dev, python3-pytest, python3-pytest-asyncio: the Python extension
#   (integrations/python) is built against /usr/bin/python3's headers and
#   its tests run with that interpreter's pytest.
# python3-pip, python3-setuptools, python3-wheel, python3-venv: `pip install
#   .` of the extension offline (pyproject.toml, setup.py), and its test
#   (python_pip_install), which installs into a scratch venv.
# libhiredis-dev: the Redis-backed store (integrations/redis) speaks to Redis
#   through hiredis's asynchronous API.
# redis-tools: brings the real redis-server binary (as redis-check-rdb,
#   which runs as the server when exec'd under the name redis-server) that
#   the Redis store's tests start on loopback, without the redis-server
#   package's system service.
# locales: localedef, with which tests/test_locale.c builds a
#   comma-decimal locale (de_DE) to check that numbers ignore the locale.

# The packages among $@ that are not installed, on one line.
pf_missing_packages() {
    local p
    local missing=""
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
                grep -q "ok installed"; then
            missing="$missing $p"
        fi
    done
    echo "${missing# }"
}

# pf_install_deps [PACKAGE...]: install those of the packages (default:
# $PF_PACKAGES) that are missing. Quiet when none is.
pf_install_deps() {
    local missing
    # shellcheck disable=SC2086,SC2048 # package names, one word each
    missing=$(pf_missing_packages ${*:-$PF_PACKAGES})
    [ -n "$missing" ] || return 0
    echo "installing Debian packages: $missing"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update || return 1
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y \
        --no-install-recommends $missing
}
