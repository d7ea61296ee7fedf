"""Every constructor and method that takes arguments, fed values of every
wrong kind (None, strings, negatives, NaN, infinities, floats for ints,
bools, containers, arbitrary objects) in each position: the call either
works or raises TypeError / ValueError (KeyError for an unknown name) —
never anything else, never a crash of the interpreter."""

import asyncio
import inspect
import math

import pytest

from puffinflow_c.reliability import (Bulkhead, BulkheadConfig,
                                      CircuitBreaker, CircuitBreakerConfig,
                                      GracefulDegradation, HealthCheck,
                                      HealthChecker, ManualClock,
                                      ResourceLeakDetector, TimeoutManager,
                                      exponential_backoff)

BAD = [None, "x", "", -1, -0.5, math.nan, math.inf, -math.inf, 1.5, True,
       0, 2 ** 70, [], {}, (), object(), b"x", "a\x00b"]
OK = (TypeError, ValueError, KeyError)


def attempt(fn, *args, **kw):
    try:
        r = fn(*args, **kw)
        if inspect.isawaitable(r):
            asyncio.run(asyncio.wait_for(_await(r), 5))
    except OK:
        pass


async def _await(r):
    return await r


def sweep(fn, good_args, **kw):
    """Each position of good_args replaced by each bad value in turn."""
    for i in range(len(good_args)):
        for bad in BAD:
            args = list(good_args)
            args[i] = bad
            attempt(fn, *args, **kw)


def kw_sweep(fn, names, **fixed):
    for name in names:
        for bad in BAD:
            attempt(fn, **dict(fixed, **{name: bad}))


def test_constructors():
    kw_sweep(lambda **k: CircuitBreaker(CircuitBreakerConfig(**k)),
             ["failure_threshold", "recovery_timeout", "success_threshold",
              "timeout", "name", "expected_exception", "fallback_function",
              "half_open_max_calls"])
    kw_sweep(lambda **k: Bulkhead(BulkheadConfig(**k)),
             ["name", "max_concurrent_calls", "max_wait_duration",
              "max_queue_size", "max_concurrent", "timeout"])
    kw_sweep(ResourceLeakDetector,
             ["leak_threshold_seconds", "check_interval", "memory_threshold",
              "file_handle_threshold", "connection_threshold", "name",
              "leak_history", "clock", "sample"])
    kw_sweep(GracefulDegradation,
             ["modes", "rules", "name", "min_dwell", "min_dwell_degrade",
              "clock", "source"])
    kw_sweep(HealthChecker, ["name", "default_timeout", "clock"])
    kw_sweep(TimeoutManager, ["name", "clock"])
    sweep(HealthCheck, ["n", "healthy", "m"])
    for bad in BAD:
        attempt(CircuitBreaker, bad)
        attempt(Bulkhead, bad)


def test_methods():
    clock = ManualClock()
    sweep(clock.advance, [1.0])
    sweep(exponential_backoff, [1, 0.1, 5.0, 2.0, True, 7])
    b = CircuitBreaker(CircuitBreakerConfig(), clock=clock)
    sweep(b.call, [lambda: 1])
    d = ResourceLeakDetector(clock=clock)
    sweep(d.track_allocation, ["s", "a", {"cpu": 1}])
    sweep(d.track_release, ["s", "a"])
    g = GracefulDegradation(clock=clock)
    sweep(g.add_rule, ["cpu > 90 -> reduced"])
    sweep(g.set_gauge, ["q", 1.0])
    sweep(g.override, ["reduced"])
    sweep(g.add_breaker, [b])
    kw_sweep(g.evaluate, ["cpu_usage", "memory_usage"])
    hc = HealthChecker(clock=clock)
    sweep(hc.add_check, ["c", lambda: True])
    kw_sweep(hc.add_check, ["timeout", "critical"], name="k",
             check=lambda: True)
    sweep(hc.check, ["c"])
    tm = TimeoutManager(clock=clock)
    sweep(tm.timeout, [1.0])
    sweep(tm.deadline, [1.0])
