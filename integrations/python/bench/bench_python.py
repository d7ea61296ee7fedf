"""Per-call cost of puffinflow_c's protect() and isolate(), and an
agent-style workload: 1,000 concurrent tasks through a bulkhead of 10.
With --original, the same beside the Python original, in the same run.
Printed only, never asserted.

    PYTHONPATH=build/dev/integrations/python/pkg \\
        /usr/bin/python3 integrations/python/bench/bench_python.py \\
        [--original /path/to/puffinflow.git]

--original names a git repository of the original puffinflow (a bare
mirror will do): its circuit_breaker.py and bulkhead.py are read with
`git show HEAD:...` into a temporary directory at run time and loaded on
their own (they need only the standard library). Nothing of the original
is kept.
"""

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

from puffinflow_c.reliability import (Bulkhead, BulkheadConfig,
                                      CircuitBreaker, CircuitBreakerConfig)

N = 200_000
ROUNDS = 5
WORKLOAD_ROUNDS = 30  # the 1,000-task workload is short: more rounds


def load_original(repo, tmp):
    """The original's circuit_breaker and bulkhead modules, from repo."""
    mods = {}
    for name in ("circuit_breaker", "bulkhead"):
        src = subprocess.run(
            ["git", "-C", repo, "show",
             "HEAD:src/puffinflow/core/reliability/%s.py" % name],
            check=True, capture_output=True).stdout
        path = os.path.join(tmp, "orig_%s.py" % name)
        with open(path, "wb") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location("orig_" + name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods


async def empty_loop(n):
    t = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - t


async def protect_loop(b, n):
    t = time.perf_counter()
    for _ in range(n):
        async with b.protect():
            pass
    return time.perf_counter() - t


async def breaker_self_loop(b, n):
    t = time.perf_counter()
    for _ in range(n):
        async with b:
            pass
    return time.perf_counter() - t


async def isolate_loop(bh, n):
    t = time.perf_counter()
    for _ in range(n):
        async with bh.isolate():
            pass
    return time.perf_counter() - t


async def contended(make, tasks):
    bh = make()

    async def work():
        async with bh.isolate():
            await asyncio.sleep(0)

    async def bare():
        await asyncio.sleep(0)

    if bh is None:  # the workload's own cost: the tasks, no bulkhead
        work = bare

    t = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return time.perf_counter() - t


def best(fn, *a, rounds=ROUNDS):
    return min(asyncio.run(fn(*a)) for _ in range(rounds))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--original", metavar="REPO",
                    help="git repository of the original puffinflow")
    ap.add_argument("-n", type=int, default=N, help="calls per round")
    args = ap.parse_args()
    n = args.n

    ours = {
        "breaker": CircuitBreaker(CircuitBreakerConfig()),
        "bulkhead": Bulkhead(BulkheadConfig()),
        "contended": lambda: Bulkhead(BulkheadConfig(
            max_concurrent_calls=10, max_queue_size=1000)),
    }
    theirs = None
    tmp = tempfile.TemporaryDirectory()
    if args.original:
        o = load_original(args.original, tmp.name)
        cb, bh = o["circuit_breaker"], o["bulkhead"]
        theirs = {
            "breaker": cb.CircuitBreaker(cb.CircuitBreakerConfig()),
            "bulkhead": bh.Bulkhead(bh.BulkheadConfig(name="b",
                                                      max_concurrent=10)),
            # Its queue counts the callers inside too: room for all 1,000.
            "contended": lambda: bh.Bulkhead(bh.BulkheadConfig(
                name="c", max_concurrent=10, max_queue_size=1000)),
        }

    base = best(empty_loop, n)

    def per_call(fn, obj):
        return (best(fn, obj, n) - base) / n * 1e6

    def workload(make):
        return min(asyncio.run(contended(make, 1000))
                   for _ in range(WORKLOAD_ROUNDS)) * 1e3

    rows = [
        ("protect() per call (us)", lambda s: per_call(protect_loop,
                                                       s["breaker"])),
        ("async with breaker per call (us)",
         lambda s: per_call(breaker_self_loop, s["breaker"])
         if hasattr(s["breaker"], "__aenter__") else None),
        ("isolate() uncontended per call (us)",
         lambda s: per_call(isolate_loop, s["bulkhead"])),
        ("1,000 tasks through a bulkhead of 10 (ms)",
         lambda s: workload(s["contended"])),
        ("  the same 1,000 tasks, no bulkhead (ms)",
         lambda s: workload(lambda: None)),
    ]
    print("best of %d rounds (the workload: %d); per-call rows: %d calls, "
          "loop overhead subtracted; Python %s"
          % (ROUNDS, WORKLOAD_ROUNDS, n, sys.version.split()[0]))
    print("  %-44s %12s %12s %8s" % ("", "puffinflow_c", "original",
                                    "ratio"))
    for name, measure in rows:
        a = measure(ours)
        b = measure(theirs) if theirs else None
        fmt = lambda v: "%12.3f" % v if v is not None else "%12s" % "-"
        ratio = "%7.1fx" % (b / a) if a and b else "%8s" % "-"
        print("  %-44s %s %s %s" % (name, fmt(a), fmt(b), ratio))
    tmp.cleanup()


if __name__ == "__main__":
    main()
