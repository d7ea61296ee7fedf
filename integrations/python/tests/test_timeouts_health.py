"""TimeoutManager, DeadlineExceededError, HealthChecker, HealthCheck, on a
ManualClock: timers fire inside clock.advance(), nothing sleeps."""

import asyncio
import math

import pytest

from puffinflow_c.reliability import (DeadlineExceededError, HealthCheck,
                                      HealthChecker, HealthReport,
                                      HealthStatus, TimeoutManager)


async def until(cond):
    # Let the loop run until cond() holds (the tasks under test set their
    # timers); bounded, so a bug fails instead of hanging.
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_deadline_exceeded_is_an_asyncio_timeout():
    assert issubclass(DeadlineExceededError, asyncio.TimeoutError)
    assert issubclass(DeadlineExceededError, TimeoutError)


async def test_timeout_expires_on_the_clock(clock):
    tm = TimeoutManager(clock=clock)
    reached = asyncio.Event()

    async def work():
        async with tm.timeout(30) as scope:
            assert tm.remaining() == 30 and tm.depth() == 1
            reached.set()
            await asyncio.Event().wait()
        return scope

    t = asyncio.ensure_future(work())
    await reached.wait()
    clock.advance(29.999)
    await asyncio.sleep(0)
    assert not t.done()
    clock.advance(0.001)
    with pytest.raises(DeadlineExceededError, match="30 s"):
        await t
    m = tm.get_metrics()
    assert (m["entered"], m["left"], m["timed_out"], m["active"]) == \
        (1, 1, 1, 0)


async def test_work_in_time_is_untouched(clock):
    tm = TimeoutManager(clock=clock)
    async with tm.timeout(5):
        clock.advance(4)
        await asyncio.sleep(0)
    assert clock.pending_timers() == 0  # the timer went with the scope
    assert tm.get_metrics()["timed_out"] == 0
    assert tm.remaining() == math.inf and tm.depth() == 0


async def test_scopes_nest_and_the_outer_limit_wins(clock):
    tm = TimeoutManager(clock=clock)
    reached = asyncio.Event()
    seen = {}

    async def work():
        async with tm.timeout(10):
            try:
                async with tm.timeout(100):   # bounded by the outer 10 s
                    seen["inner"] = tm.remaining()
                    seen["depth"] = tm.depth()
                    reached.set()
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen["inner_saw"] = "cancelled"
                raise

    t = asyncio.ensure_future(work())
    await reached.wait()
    assert seen == {"inner": 10, "depth": 2}
    assert clock.pending_timers() == 1    # only the earliest limit's timer
    clock.advance(10)
    with pytest.raises(DeadlineExceededError):
        await t
    assert seen["inner_saw"] == "cancelled"  # passes through, raised once


async def test_inner_earlier_limit_raises_in_the_inner_scope(clock):
    tm = TimeoutManager(clock=clock)
    reached = asyncio.Event()
    out = []

    async def work():
        async with tm.timeout(100):
            try:
                async with tm.timeout(1):
                    reached.set()
                    await asyncio.Event().wait()
            except DeadlineExceededError:
                out.append(tm.remaining())
            await asyncio.sleep(0)   # the task is not left cancelled
            out.append("went on")

    t = asyncio.ensure_future(work())
    await reached.wait()
    clock.advance(1)
    await t
    assert out == [99, "went on"]


async def test_entering_after_the_deadline_raises_at_once(clock):
    tm = TimeoutManager(clock=clock)
    with pytest.raises(DeadlineExceededError):
        async with tm.timeout(0):
            pytest.fail("body ran")
    async with tm.deadline(clock.now() + 5):
        assert tm.current_deadline() == clock.now() + 5
        clock.advance(5)
        with pytest.raises(DeadlineExceededError):
            tm.check()
        with pytest.raises(DeadlineExceededError, match="enclosing"):
            async with tm.timeout(1):
                pass
    assert tm.get_metrics()["deadline_exceeded"] == 2


async def test_a_child_task_inherits_the_deadline(clock):
    tm = TimeoutManager(clock=clock)
    async with tm.timeout(7):
        child = asyncio.ensure_future(asyncio.sleep(0, result=None))

        async def child_remaining():
            return tm.remaining()

        assert await asyncio.ensure_future(child_remaining()) == 7
        await child


async def test_an_outside_cancellation_stays_a_cancellation(clock):
    tm = TimeoutManager(clock=clock)
    reached = asyncio.Event()

    async def work():
        async with tm.timeout(30):
            reached.set()
            await asyncio.Event().wait()

    t = asyncio.ensure_future(work())
    await reached.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert tm.get_metrics()["timed_out"] == 0


async def test_timeout_bad_input(clock):
    tm = TimeoutManager(clock=clock)
    for bad in (None, "30", True, [1]):
        with pytest.raises(TypeError):
            tm.timeout(bad)
    for bad in (-1, math.nan):
        with pytest.raises(ValueError):
            tm.timeout(bad)
    with pytest.raises(TypeError):
        tm.deadline(None)
    with pytest.raises(ValueError):
        tm.deadline(math.nan)
    with pytest.raises(TypeError):
        TimeoutManager(clock=object())
    with pytest.raises(TypeError):
        TimeoutManager(name=3)
    s = tm.timeout(1)
    async with s:
        pass
    with pytest.raises(RuntimeError):
        async with s:   # one entry per scope
            pass


# ---- health ---------------------------------------------------------------


def test_health_check_record():
    c = HealthCheck(name="db", status="healthy", message="ok")
    assert (c.name, c.status, c.message, c.critical) == ("db", "healthy",
                                                         "ok", True)
    assert c.is_healthy()
    assert HealthCheck("x", HealthStatus.DEGRADED).status == "degraded"
    assert HealthStatus.UNHEALTHY == "unhealthy"
    with pytest.raises(ValueError):
        HealthCheck("x", "fine")
    with pytest.raises(TypeError):
        HealthCheck(None, "healthy")
    with pytest.raises(TypeError):
        HealthCheck("x", None)


async def test_checks_run_concurrently_with_their_timeouts(clock):
    hc = HealthChecker(clock=clock)
    gate = asyncio.Event()
    running = set()
    peak = {"n": 0}

    def make(name, status, hang=False):
        async def check():
            running.add(name)
            peak["n"] = max(peak["n"], len(running))
            if hang:
                await asyncio.Event().wait()
            await gate.wait()
            running.discard(name)
            return HealthCheck(name=name, status=status, message=name)
        return check

    hc.add_check("a", make("a", "healthy"))
    hc.add_check("b", make("b", "degraded"))
    hc.add_check("slow", make("slow", "healthy", hang=True), timeout=2)
    t = asyncio.ensure_future(hc.check_all())
    await until(lambda: len(running) == 3)   # all three started at once
    gate.set()
    await until(lambda: running == {"slow"})
    assert not t.done()
    clock.advance(2)
    report = await t
    assert isinstance(report, HealthReport)
    assert peak["n"] == 3
    assert report.status == "unhealthy" and not report.is_healthy()
    assert report.failed_checks == ["slow"]
    assert report.degraded_checks == ["b"]
    slow = report.checks["slow"]
    assert slow.timed_out and slow.duration == 2
    assert slow.message == "timed out after 2 s"
    assert hc.status == "unhealthy"
    assert hc.get_metrics()["timeouts"] == 1


async def test_non_critical_failure_degrades_at_most(clock):
    hc = HealthChecker(clock=clock)
    hc.add_check("core", lambda: "healthy")
    hc.add_check("cache", lambda: False, critical=False)
    r = await hc.check_all()
    assert r.status == "degraded" and r.is_healthy()
    assert r.failed_checks == ["cache"]
    assert r.checks["cache"].critical is False


async def test_check_results_of_every_kind(clock):
    hc = HealthChecker(clock=clock)

    async def boom():
        raise RuntimeError("no route")

    hc.add_check("exc", boom)
    hc.add_check("none", lambda: None)
    hc.add_check("true", lambda: True)
    hc.add_check("str", lambda: "degraded")
    hc.add_check("junk", lambda: 42)
    hc.add_check("renamed", lambda: HealthCheck("other", "healthy"))
    r = await hc.check_all()
    st = {n: c.status for n, c in r.checks.items()}
    assert st == {"exc": "unhealthy", "none": "healthy", "true": "healthy",
                  "str": "degraded", "junk": "unhealthy",
                  "renamed": "healthy"}
    assert "RuntimeError: no route" in r.checks["exc"].message
    assert r.to_dict()["checks"]["str"]["status"] == "degraded"
    one = await hc.check("str")
    assert one.status == "degraded"
    with pytest.raises(KeyError):
        await hc.check("nope")
    assert hc.remove_check("junk") and not hc.remove_check("junk")
    assert (await HealthChecker(clock=clock).check_all()).status == "healthy"


async def test_a_cancelled_check_all_cancels_its_checks(clock):
    hc = HealthChecker(clock=clock)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hc.add_check("hang", hang)
    t = asyncio.ensure_future(hc.check_all())
    await started.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert cancelled.is_set() and clock.pending_timers() == 0


def test_health_checker_bad_input(clock):
    hc = HealthChecker(clock=clock)
    with pytest.raises(TypeError):
        hc.add_check(None, lambda: None)
    with pytest.raises(ValueError):
        hc.add_check("", lambda: None)
    with pytest.raises(TypeError):
        hc.add_check("x", "not callable")
    for bad in (0, -1, math.nan):
        with pytest.raises(ValueError):
            hc.add_check("x", lambda: None, timeout=bad)
    with pytest.raises(TypeError):
        hc.add_check("x", lambda: None, timeout="5")
    with pytest.raises(TypeError):
        hc.add_check("x", lambda: None, critical=None)
    hc.add_check("x", lambda: None)
    with pytest.raises(ValueError):
        hc.add_check("x", lambda: None)
    with pytest.raises(ValueError):
        HealthChecker(default_timeout=-1)
    with pytest.raises(TypeError):
        HealthChecker(default_timeout=None)


# ---- on the system clock (the event loop's timers) ----------------------


async def test_timeout_and_health_timeouts_on_the_system_clock():
    # No ManualClock: the limits are timers of the running loop. Short
    # limits; only the outcome is checked, never how long it took.
    tm = TimeoutManager()
    with pytest.raises(DeadlineExceededError):
        async with tm.timeout(0.01):
            await asyncio.Event().wait()
    assert tm.get_metrics()["timed_out"] == 1
    async with tm.timeout(60):
        assert 0 < tm.remaining() <= 60
    hc = HealthChecker(default_timeout=0.01)

    async def hang():
        await asyncio.Event().wait()

    hc.add_check("hang", hang)
    hc.add_check("ok", lambda: True, timeout=60)
    r = await hc.check_all()
    assert r.checks["hang"].timed_out and r.checks["ok"].status == "healthy"
    assert r.status == "unhealthy"
