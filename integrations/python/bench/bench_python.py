"""Per-call cost of puffinflow_c's protect() and isolate(), and an
agent-style workload: 1,000 concurrent tasks through a bulkhead of 10.
Printed only, never asserted.

    PYTHONPATH=build/dev/integrations/python/pkg \\
        /usr/bin/python3 integrations/python/bench/bench_python.py
"""

import asyncio
import time

from puffinflow_c.reliability import (Bulkhead, BulkheadConfig,
                                      CircuitBreaker, CircuitBreakerConfig)

N = 200_000


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


async def contended(tasks, limit):
    bh = Bulkhead(BulkheadConfig(max_concurrent_calls=limit,
                                 max_queue_size=tasks))

    async def work():
        async with bh.isolate():
            await asyncio.sleep(0)

    t = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return time.perf_counter() - t


def best(fn, *a, rounds=5):
    return min(asyncio.run(fn(*a)) for _ in range(rounds))


def main():
    b = CircuitBreaker(CircuitBreakerConfig())
    bh = Bulkhead(BulkheadConfig())
    base = best(empty_loop, N)
    rows = [
        ("protect() (async with breaker.protect())", best(protect_loop, b, N)),
        ("async with breaker", best(breaker_self_loop, b, N)),
        ("isolate() uncontended", best(isolate_loop, bh, N)),
    ]
    print("per call, best of 5 rounds of %d, loop overhead subtracted" % N)
    for name, t in rows:
        print("  %-44s %7.3f us" % (name, (t - base) / N * 1e6))
    w = min(asyncio.run(contended(1000, 10)) for _ in range(5))
    print("  %-44s %7.2f ms (%.2f us per task)"
          % ("1,000 tasks through a bulkhead of 10", w * 1e3, w / 1000 * 1e6))


if __name__ == "__main__":
    main()
