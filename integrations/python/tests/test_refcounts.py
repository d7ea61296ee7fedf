"""Reference counts balanced: each hot path run 100,000 times leaves no
Python memory behind (tracemalloc: a leaked object per call would be
megabytes) and no reference to the objects it uses (sys.getrefcount before
and after). Under a debug interpreter, sys.gettotalrefcount is checked
too."""

import asyncio
import gc
import sys
import tracemalloc

import pytest

from puffinflow_c.reliability import (Bulkhead, BulkheadConfig,
                                      BulkheadFullError, CircuitBreaker,
                                      CircuitBreakerConfig,
                                      CircuitBreakerOpenError,
                                      GracefulDegradation, ManualClock,
                                      ResourceLeakDetector, TimeoutManager,
                                      exponential_backoff)

N = 100_000
# Slack for the interpreter's own caches (free lists, the loop's
# bookkeeping): far below one object per call (N * >= 16 bytes).
SLACK = 256 * 1024


def leak_check(run, *watched):
    """run(n) makes n calls of a hot path: warm it up, then measure."""
    run(1000)
    gc.collect()
    refs = [sys.getrefcount(o) for o in watched]
    total = getattr(sys, "gettotalrefcount", None)
    before_total = total() if total else 0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(N)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < SLACK, "%d bytes left behind by %d calls" % (grown, N)
    assert [sys.getrefcount(o) for o in watched] == refs
    if total:
        assert total() - before_total < 1000


def in_loop(coro_fn):
    def run(n):
        asyncio.run(coro_fn(n))
    return run


def test_protect_success_failure_and_rejection():
    cfg = CircuitBreakerConfig(failure_threshold=N * 10,
                               expected_exception=ConnectionError)
    b = CircuitBreaker(cfg)
    err = ConnectionError("down")  # raised afresh (a reused exception
    # would grow its traceback)

    async def calls(n):
        for i in range(n):
            try:
                async with b.protect():
                    if i & 1:
                        raise err.with_traceback(None)
            except ConnectionError:
                pass
        for _ in range(n // 10):
            async with b:
                pass

    leak_check(in_loop(calls), b, cfg, err, ConnectionError)

    opened = CircuitBreaker(CircuitBreakerConfig())
    opened.force_open()

    async def rejected(n):
        for _ in range(n):
            try:
                async with opened.protect():
                    pass
            except CircuitBreakerOpenError:
                pass

    leak_check(in_loop(rejected), opened, CircuitBreakerOpenError)


def test_call_with_fallback():
    b = CircuitBreaker(CircuitBreakerConfig(fallback_function=lambda: 0))
    b.force_open()

    async def work():
        return 1

    async def calls(n):
        for _ in range(n):
            await b.call(work)

    leak_check(in_loop(calls), b, work)


def test_isolate_uncontended_and_full():
    bh = Bulkhead(BulkheadConfig(max_concurrent_calls=1, max_queue_size=0))

    async def calls(n):
        for _ in range(n):
            async with bh.isolate():
                try:
                    async with bh.isolate():   # full: nobody may wait
                        pass
                except BulkheadFullError:
                    pass

    leak_check(in_loop(calls), bh, BulkheadFullError)


def test_isolate_waiting_through_a_future():
    bh = Bulkhead(BulkheadConfig(max_concurrent_calls=1))

    async def worker(n):
        for _ in range(n):
            async with bh.isolate():
                await asyncio.sleep(0)

    async def calls(n):
        # Two tasks share one slot: each call of one waits for the other.
        await asyncio.gather(worker(n // 2), worker(n - n // 2))

    leak_check(in_loop(calls), bh)
    assert bh.get_metrics()["active_tasks"] == 0


def test_timeout_scopes():
    clock = ManualClock()
    tm = TimeoutManager(clock=clock)

    async def calls(n):
        for _ in range(n):
            async with tm.timeout(30):
                pass

    leak_check(in_loop(calls), tm, clock)
    assert clock.pending_timers() == 0


def test_backoff_leak_tracking_and_degradation():
    def backoff(n):
        for i in range(n):
            exponential_backoff(i % 20, base_delay=0.1, max_delay=5.0)

    leak_check(backoff)

    d = ResourceLeakDetector(clock=ManualClock())
    res = {"cpu": 1.0}

    def track(n):
        for i in range(n):
            d.track_allocation("state", "agent", res)
            d.track_release("state", "agent")

    leak_check(track, d, res)

    g = GracefulDegradation(rules=["cpu > 90 -> minimal"], min_dwell=0)

    def evaluate(n):
        for i in range(n):
            g.evaluate(cpu_usage=95.0 if i & 1 else 10.0, memory_usage=1.0)
            g.mode

    leak_check(evaluate, g)


@pytest.mark.parametrize("bad", [None, "x", -1, float("nan"), 1.5, True])
def test_bad_input_does_not_leak(bad):
    def calls(n):
        for _ in range(n // 100):
            for fn in (lambda: CircuitBreaker(
                           CircuitBreakerConfig(failure_threshold=bad)),
                       lambda: Bulkhead(
                           BulkheadConfig(max_concurrent_calls=bad)),
                       lambda: exponential_backoff(bad),
                       lambda: TimeoutManager().timeout(bad)):
                try:
                    fn()
                except (TypeError, ValueError):
                    pass

    leak_check(calls)


class _SelfSampling(ResourceLeakDetector):
    """A detector whose sample function is a bound method of itself."""

    def __init__(self):
        super().__init__(clock=ManualClock(), sample=self._sample)

    def _sample(self):
        return {"rss_bytes": 1, "open_fds": 1}


class _SelfSourced(GracefulDegradation):
    """A manager whose source is a bound method of itself, watching a
    breaker that refers back to it."""

    def __init__(self):
        super().__init__(rules=["cpu > 90 -> minimal"], min_dwell=0,
                         clock=ManualClock(), source=self._source)
        b = CircuitBreaker(CircuitBreakerConfig(name="watched"))
        b.manager = self
        self.add_breaker(b)

    def _source(self):
        return (10.0, 1.0)


@pytest.mark.parametrize("cls", [_SelfSampling, _SelfSourced])
def test_cycles_through_sample_and_source_are_collected(cls):
    # A bound method has no tp_clear: the cycle object -> method -> object
    # is broken only by the object's own tp_clear dropping its function.
    def alive():
        return sum(1 for o in gc.get_objects() if type(o) is cls)

    gc.collect()
    assert alive() == 0
    for _ in range(10):
        o = cls()
        if cls is _SelfSampling:
            assert o.check()["sample"]["rss_bytes"] == 1
        else:
            asyncio.run(o.update())
        del o
    gc.collect()
    assert alive() == 0
