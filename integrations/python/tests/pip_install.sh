#!/usr/bin/env bash
# `pip install .` works offline from a checkout: a scratch copy of the
# source tree (without build trees) is installed with
#   pip install --no-index --no-build-isolation .
# into a fresh venv (--system-site-packages, so Debian's setuptools and
# wheel serve the build), then the installed package is imported and used,
# from outside the source tree.
# Usage: pip_install.sh SOURCE_DIR PYTHON3
set -eu
src=$1
py=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
tar -C "$src" --exclude=./build --exclude='./build-*' --exclude=./.git \
    -cf - . | tar -C "$work/src" -xf -
"$py" -m venv --system-site-packages "$work/venv"
(cd "$work/src" &&
 PIP_NO_INDEX=1 "$work/venv/bin/python" -m pip install --no-index \
     --no-build-isolation --disable-pip-version-check -q .)
cd "$work"
"$work/venv/bin/python" - "$work/venv" <<'PY'
import asyncio
import sys

import puffinflow_c
from puffinflow_c.reliability import (Bulkhead, BulkheadConfig,
                                      CircuitBreaker, CircuitBreakerConfig,
                                      CircuitBreakerOpenError,
                                      TimeoutManager, ManualClock)

assert puffinflow_c.__file__.startswith(sys.argv[1]), puffinflow_c.__file__


async def main():
    b = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1))
    try:
        async with b.protect():
            raise ConnectionError("down")
    except ConnectionError:
        pass
    try:
        async with b:
            raise AssertionError("an open breaker let a call through")
    except CircuitBreakerOpenError:
        pass
    bh = Bulkhead(BulkheadConfig(max_concurrent_calls=2))
    async with bh.isolate():
        assert bh.get_metrics()["active_tasks"] == 1
    clock = ManualClock()
    tm = TimeoutManager(clock=clock)
    async with tm.timeout(5):
        assert tm.remaining() == 5
    return b.get_metrics()["state"]


assert asyncio.run(main()) == "open"
print("installed and working:", puffinflow_c.__file__)
PY
