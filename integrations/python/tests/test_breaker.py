"""CircuitBreaker, CircuitBreakerConfig, CircuitState, the errors, the
registry and exponential_backoff: every option, on a manual clock."""

import asyncio
import dataclasses
import gc
import math
import tracemalloc

import pytest

from puffinflow_c.reliability import (
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerError,
    CircuitBreakerOpenError, CircuitBreakerRegistry, CircuitState,
    ManualClock, circuit_registry, exponential_backoff)


class Boom(ConnectionError):
    pass


async def fail(b, exc=ConnectionError):
    with pytest.raises(exc):
        async with b.protect():
            raise exc("down")


async def ok(b):
    async with b.protect():
        pass


def make(clock, **kw):
    return CircuitBreaker(CircuitBreakerConfig(**kw), clock=clock)


def test_config_is_a_dataclass_with_the_originals_defaults():
    assert dataclasses.is_dataclass(CircuitBreakerConfig)
    c = CircuitBreakerConfig()
    assert (c.failure_threshold, c.recovery_timeout, c.success_threshold,
            c.timeout, c.name) == (5, 60.0, 3, 30.0, "default")
    assert c.expected_exception is Exception
    assert c.fallback_function is None
    assert c.half_open_max_calls == 0
    assert [f.name for f in dataclasses.fields(c)][:5] == [
        "failure_threshold", "recovery_timeout", "success_threshold",
        "timeout", "name"]


def test_states_and_errors():
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]
    assert issubclass(CircuitBreakerOpenError, CircuitBreakerError)
    assert issubclass(CircuitBreakerError, Exception)


async def test_opens_after_failure_threshold_and_rejects(clock):
    b = make(clock, failure_threshold=3, name="api")
    for _ in range(2):
        await fail(b)
    assert b.state is CircuitState.CLOSED
    assert b.get_metrics()["failure_count"] == 2
    await fail(b)
    assert b.state is CircuitState.OPEN
    with pytest.raises(CircuitBreakerOpenError, match="'api' is OPEN"):
        async with b.protect():
            pytest.fail("ran while open")
    m = b.get_metrics()
    assert m["rejected"] == 1 and m["failures"] == 3


async def test_a_success_resets_the_failure_count(clock):
    b = make(clock, failure_threshold=2)
    await fail(b)
    await ok(b)
    await fail(b)
    assert b.state is CircuitState.CLOSED


async def test_recovery_timeout_then_success_threshold_closes(clock):
    b = make(clock, failure_threshold=1, recovery_timeout=30,
             success_threshold=2)
    await fail(b)
    clock.advance(29.9)
    assert b.state is CircuitState.OPEN
    clock.advance(0.2)
    assert b.state is CircuitState.HALF_OPEN
    await ok(b)
    assert b.state is CircuitState.HALF_OPEN
    assert b.get_metrics()["success_count"] == 1
    await ok(b)
    assert b.state is CircuitState.CLOSED


async def test_a_half_open_failure_reopens(clock):
    b = make(clock, failure_threshold=1, recovery_timeout=1)
    await fail(b)
    clock.advance(1)
    await fail(b)
    assert b.state is CircuitState.OPEN
    assert b.get_metrics()["times_opened"] == 2


async def test_half_open_max_calls_caps_trials(clock):
    b = make(clock, failure_threshold=1, recovery_timeout=1,
             success_threshold=3, half_open_max_calls=1)
    await fail(b)
    clock.advance(1)
    async with b.protect():
        with pytest.raises(CircuitBreakerOpenError, match="HALF_OPEN"):
            async with b.protect():
                pass
    # default cap = success_threshold
    b2 = make(clock, failure_threshold=1, recovery_timeout=1,
              success_threshold=2)
    await fail(b2)
    clock.advance(1)
    async with b2.protect():
        async with b2.protect():
            with pytest.raises(CircuitBreakerOpenError):
                async with b2.protect():
                    pass


async def test_a_cancelled_trial_is_not_counted(clock):
    b = make(clock, failure_threshold=1, recovery_timeout=1,
             success_threshold=1, half_open_max_calls=1)
    await fail(b)
    clock.advance(1)
    started = asyncio.Event()

    async def trial():
        async with b.protect():
            started.set()
            await asyncio.sleep(3600)

    t = asyncio.create_task(trial())
    await started.wait()
    assert b.get_metrics()["half_open_in_flight"] == 1
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    m = b.get_metrics()
    assert b.state is CircuitState.HALF_OPEN
    assert m["half_open_in_flight"] == 0 and m["failures"] == 1
    await ok(b)  # the place came back
    assert b.state is CircuitState.CLOSED


async def test_a_cancelled_closed_call_is_not_counted(clock):
    b = make(clock, failure_threshold=1)
    with pytest.raises(asyncio.CancelledError):
        async with b.protect():
            raise asyncio.CancelledError()
    assert b.state is CircuitState.CLOSED
    assert b.get_metrics()["calls"] == 0


async def test_timeout_counts_a_slow_call_as_a_failure(clock):
    b = make(clock, failure_threshold=1, timeout=2)
    async with b.protect():
        clock.advance(2.5)
    m = b.get_metrics()
    assert m["timeouts"] == 1
    assert b.state is CircuitState.OPEN


async def test_expected_exception_tuple_and_unexpected_ones(clock):
    b = make(clock, failure_threshold=1,
             expected_exception=(ConnectionError, TimeoutError))
    await fail(b, KeyError)  # not expected: propagates, not counted
    assert b.state is CircuitState.CLOSED
    assert b.get_metrics()["ignored"] == 1
    await fail(b, Boom)      # a subclass of an expected one counts
    assert b.state is CircuitState.OPEN


async def test_call_sync_async_args_and_fallback(clock):
    def fallback(*a, **kw):
        return ("fallback", a, kw)

    b = make(clock, failure_threshold=1, expected_exception=ConnectionError,
             fallback_function=fallback)

    async def aget(x, y=0):
        return x + y

    assert await b.call(aget, 1, y=2) == 3
    assert await b.call(lambda: "sync") == "sync"

    def down(x):
        raise ConnectionError(x)

    assert await b.call(down, 7) == ("fallback", (7,), {})
    assert b.state is CircuitState.OPEN
    assert await b.call(aget, 5) == ("fallback", (5,), {})
    with pytest.raises(KeyError):  # not expected: no fallback
        await make(clock, fallback_function=fallback,
                   expected_exception=ConnectionError).call(
            lambda: {}["missing"])
    plain = make(clock, failure_threshold=1)
    with pytest.raises(ConnectionError):
        await plain.call(down, 1)
    with pytest.raises(CircuitBreakerOpenError):
        await plain.call(aget, 1)
    with pytest.raises(TypeError):
        await plain.call(42)


async def test_force_open_and_force_close_sync_or_awaited(clock):
    b = make(clock)
    b.force_open()
    assert b.state is CircuitState.OPEN
    clock.advance(10_000)
    with pytest.raises(CircuitBreakerOpenError):
        await ok(b)
    await b.force_close()
    assert b.state is CircuitState.CLOSED
    await b.force_open()
    assert b.get_metrics()["forced_open"] is True
    b.force_close()
    await ok(b)


async def test_metrics_keys(clock):
    b = make(clock, name="m")
    await fail(b)
    m = b.get_metrics()
    for k in ("name", "state", "failure_count", "success_count",
              "last_failure_time"):
        assert k in m
    assert m["name"] == "m" and m["state"] == "closed"
    assert m["failure_count"] == 1
    assert m["last_failure_time"] == clock.now()


async def test_async_with_breaker_itself_is_per_task(clock):
    b = make(clock, failure_threshold=100)
    gate = asyncio.Event()

    async def worker(i):
        async with b:
            await gate.wait()
            if i % 2:
                raise ConnectionError()

    tasks = [asyncio.create_task(worker(i)) for i in range(10)]
    await asyncio.sleep(0)
    gate.set()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, ConnectionError) for r in res) == 5
    m = b.get_metrics()
    assert m["successes"] == 5 and m["failures"] == 5
    with pytest.raises(RuntimeError):
        await b.__aexit__(None, None, None)


async def test_protect_context_is_single_use(clock):
    b = make(clock)
    cm = b.protect()
    async with cm:
        pass
    with pytest.raises(RuntimeError):
        await cm.__aexit__(None, None, None)


def test_registry():
    r = CircuitBreakerRegistry()
    a = r.get_or_create("db")
    assert r.get_or_create("db") is a
    assert a.config.name == "db"
    c = r.get_or_create("x", CircuitBreakerConfig(name="x",
                                                  failure_threshold=9))
    assert c.config.failure_threshold == 9
    assert set(r.get_all_metrics()) == {"db", "x"}
    assert isinstance(circuit_registry, CircuitBreakerRegistry)
    with pytest.raises(TypeError):
        r.get_or_create(None)


@pytest.mark.parametrize("field,value,exc", [
    ("failure_threshold", 0, ValueError),
    ("failure_threshold", -1, ValueError),
    ("failure_threshold", 2**40, ValueError),
    ("failure_threshold", "5", TypeError),
    ("failure_threshold", None, TypeError),
    ("failure_threshold", 5.0, TypeError),
    ("failure_threshold", True, TypeError),
    ("success_threshold", 0, ValueError),
    ("recovery_timeout", -1, ValueError),
    ("recovery_timeout", math.nan, ValueError),
    ("recovery_timeout", None, TypeError),
    ("recovery_timeout", "60", TypeError),
    ("timeout", -0.5, ValueError),
    ("timeout", math.nan, ValueError),
    ("timeout", [], TypeError),
    ("name", None, TypeError),
    ("name", "", ValueError),
    ("name", 3, TypeError),
    ("expected_exception", "ConnectionError", TypeError),
    ("expected_exception", (ValueError, 3), TypeError),
    ("expected_exception", None, TypeError),
    ("fallback_function", 3, TypeError),
    ("half_open_max_calls", -1, ValueError),
])
def test_bad_config(field, value, exc):
    with pytest.raises(exc):
        CircuitBreaker(CircuitBreakerConfig(**{field: value}))


def test_bad_arguments():
    with pytest.raises(TypeError):
        CircuitBreaker({"failure_threshold": 3})
    with pytest.raises(TypeError):
        CircuitBreaker(CircuitBreakerConfig(), clock=object())
    assert CircuitBreaker().config == CircuitBreakerConfig()
    assert CircuitBreaker(CircuitBreakerConfig(timeout=math.inf))


def test_exponential_backoff():
    assert exponential_backoff(0, jitter=False) == 1.0
    assert exponential_backoff(3, jitter=False) == 8.0
    assert exponential_backoff(30, jitter=False) == 60.0
    assert exponential_backoff(2, base_delay=0.5, multiplier=3,
                               max_delay=100, jitter=False) == 4.5
    for a in range(10):
        d = exponential_backoff(a, seed=a)
        full = min(60.0, 2.0 ** a)
        assert full / 2 <= d <= full
        assert exponential_backoff(a, seed=a) == d
    for bad, exc in [((-1,), ValueError), (("1",), TypeError),
                     ((None,), TypeError), ((1, -1.0), ValueError),
                     ((1, math.nan), ValueError), ((1, 1, 60, 0.5), ValueError),
                     ((1, 10, 5), ValueError)]:
        with pytest.raises(exc):
            exponential_backoff(*bad)
    with pytest.raises(TypeError):
        exponential_backoff(1, seed="x")


async def test_no_leak_over_100000_calls():
    b = CircuitBreaker(CircuitBreakerConfig(failure_threshold=10**6))
    for _ in range(1000):  # warm up caches and free lists
        async with b.protect():
            pass
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(100_000):
        try:
            async with b.protect():
                if i % 3 == 0:
                    raise ConnectionError()
        except ConnectionError:
            pass
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 64 * 1024
    assert b.get_metrics()["calls"] == 101_000


class _Kept(CircuitBreaker):
    pass


def test_a_breaker_holding_its_own_protect_is_collected():
    # breaker -> its dict -> protect() context -> breaker: a cycle the
    # collector sees only when the context takes part in GC.
    def alive():
        return sum(1 for o in gc.get_objects() if type(o) is _Kept)

    gc.collect()
    assert alive() == 0
    for _ in range(10):
        b = _Kept(CircuitBreakerConfig(name="kept"))
        b.p = b.protect()
        del b
    gc.collect()
    assert alive() == 0


async def test_an_abandoned_trial_in_a_garbage_cycle_gives_its_slot_back(
        clock):
    b = make(clock, failure_threshold=1, recovery_timeout=1,
             success_threshold=3, half_open_max_calls=1)
    await fail(b)
    clock.advance(1)
    p = b.protect()
    await p.__aenter__()  # the one trial, never exited
    with pytest.raises(CircuitBreakerOpenError, match="HALF_OPEN"):
        await ok(b)
    cycle = [p]
    cycle.append(cycle)
    del p, cycle
    gc.collect()
    await ok(b)  # the slot came back, uncounted
    assert b.state.value == "half_open"
