"""Bulkhead, BulkheadConfig, BulkheadFullError, BulkheadRegistry: limits,
FIFO grants, timeouts and cancellations that never leak a slot, and a slot
freed on another thread waking an asyncio waiter."""

import asyncio
import dataclasses
import math
import random
import threading
import tracemalloc

import pytest

from puffinflow_c.reliability import (
    Bulkhead, BulkheadConfig, BulkheadFullError, BulkheadRegistry,
    bulkhead_registry)


def make(**kw):
    return Bulkhead(BulkheadConfig(**kw))


def assert_idle(bh):
    m = bh.get_metrics()
    assert m["active_tasks"] == 0, m
    assert m["queue_size"] == 0, m
    assert m["available_slots"] == m["max_concurrent"], m


async def settle(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


def test_config_is_a_dataclass_with_defaults():
    assert dataclasses.is_dataclass(BulkheadConfig)
    c = BulkheadConfig()
    assert (c.name, c.max_concurrent_calls, c.max_wait_duration,
            c.max_queue_size) == ("default", 10, 30.0, 100)


async def test_peak_concurrency_is_the_limit_with_40_tasks():
    bh = make(max_concurrent_calls=4)
    inside = peak = 0

    async def work():
        nonlocal inside, peak
        async with bh.isolate():
            inside += 1
            peak = max(peak, inside)
            for _ in range(3):
                await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(40)))
    assert peak == 4
    m = bh.get_metrics()
    assert m["accepted"] == 40 and m["peak_in_use"] == 4
    assert_idle(bh)


async def test_grants_are_fifo():
    bh = make(max_concurrent_calls=1)
    assert bh.try_acquire()
    order = []

    async def waiter(i):
        async with bh.isolate():
            order.append(i)
            await asyncio.sleep(0)

    tasks = []
    for i in range(10):
        tasks.append(asyncio.create_task(waiter(i)))
        await settle(1)
        assert bh.get_metrics()["queue_size"] == i + 1
    bh.release()
    await asyncio.gather(*tasks)
    assert order == list(range(10))
    assert_idle(bh)


async def test_cancelled_waiters_leave_no_slot():
    bh = make(max_concurrent_calls=1)
    assert bh.try_acquire()
    got = []

    async def waiter(i):
        async with bh.isolate():
            got.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(6)]
    await settle()
    for i in (0, 2, 3):
        tasks[i].cancel()
    await settle()
    assert bh.get_metrics()["queue_size"] == 3
    bh.release()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    assert got == [1, 4, 5]
    assert [isinstance(r, asyncio.CancelledError) for r in res] == [
        True, False, True, True, False, False]
    assert bh.get_metrics()["cancelled"] == 3
    assert_idle(bh)


async def test_a_waiter_cancelled_after_its_grant_passes_the_slot_on():
    bh = make(max_concurrent_calls=1)
    assert bh.try_acquire()
    got = []

    async def waiter(i):
        async with bh.isolate():
            got.append(i)

    a = asyncio.create_task(waiter("a"))
    b = asyncio.create_task(waiter("b"))
    await settle()
    bh.release()   # granted to a; its wake-up is scheduled, not yet run
    a.cancel()     # ... and a gives up before it runs
    res = await asyncio.gather(a, b, return_exceptions=True)
    assert isinstance(res[0], asyncio.CancelledError)
    assert got == ["b"]
    assert_idle(bh)


async def test_a_timed_out_waiter_leaves_no_slot():
    bh = make(max_concurrent_calls=1, max_wait_duration=0.01)
    assert bh.try_acquire()
    with pytest.raises(BulkheadFullError, match="timed out"):
        async with bh.isolate():
            pytest.fail("entered a full bulkhead")
    m = bh.get_metrics()
    assert m["rejected_timeout"] == 1 and m["queue_size"] == 0
    bh.release()
    assert_idle(bh)
    async with bh.isolate():
        pass


async def test_queue_full_and_no_queue():
    bh = make(max_concurrent_calls=1, max_queue_size=2)
    assert bh.try_acquire()
    tasks = [asyncio.create_task(bh.isolate().__aenter__()) for _ in range(2)]
    await settle()
    with pytest.raises(BulkheadFullError, match="is full"):
        async with bh.isolate():
            pass
    assert bh.get_metrics()["rejected_full"] == 1
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    bh.release()
    assert_idle(bh)
    nq = make(max_concurrent_calls=1, max_queue_size=0)
    async with nq.isolate():
        with pytest.raises(BulkheadFullError):
            async with nq.isolate():
                pass
    assert_idle(nq)


async def test_a_slot_freed_on_another_thread_wakes_a_waiter():
    bh = make(max_concurrent_calls=1)
    assert bh.try_acquire()
    entered = asyncio.Event()

    async def waiter():
        async with bh.isolate():
            entered.set()

    t = asyncio.create_task(waiter())
    await settle()
    assert bh.get_metrics()["queue_size"] == 1
    th = threading.Thread(target=bh.release)
    th.start()
    th.join()
    await asyncio.wait_for(t, 30)  # a guard against a hang, not a measure
    assert entered.is_set()
    assert_idle(bh)


def test_two_event_loops_on_two_threads_share_a_bulkhead():
    bh = make(max_concurrent_calls=2, max_queue_size=1000)
    inside = peak = 0
    lock = threading.Lock()

    async def work():
        nonlocal inside, peak
        async with bh.isolate():
            with lock:
                inside += 1
                peak = max(peak, inside)
            await asyncio.sleep(0.0005)
            with lock:
                inside -= 1

    async def many():
        await asyncio.gather(*(work() for _ in range(200)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 2
    assert bh.get_metrics()["accepted"] == 400
    assert_idle(bh)


async def test_stress_random_cancellations_never_leak():
    rng = random.Random(7)
    bh = make(max_concurrent_calls=3, max_queue_size=50)
    inside = peak = 0
    outcome = {"ok": 0, "full": 0, "cancelled": 0}

    async def work():
        nonlocal inside, peak
        try:
            async with bh.isolate():
                inside += 1
                peak = max(peak, inside)
                try:
                    await asyncio.sleep(0)
                finally:
                    inside -= 1
            outcome["ok"] += 1
        except BulkheadFullError:
            outcome["full"] += 1

    tasks = []
    for _ in range(500):
        tasks.append(asyncio.create_task(work()))
        if rng.random() < 0.3:
            await asyncio.sleep(0)
        if rng.random() < 0.2:
            rng.choice(tasks).cancel()
    res = await asyncio.gather(*tasks, return_exceptions=True)
    outcome["cancelled"] = sum(isinstance(r, asyncio.CancelledError)
                               for r in res)
    assert sum(outcome.values()) == 500
    assert peak <= 3
    assert_idle(bh)
    m = bh.get_metrics()
    assert m["rejected_full"] == outcome["full"]


async def test_async_with_bulkhead_itself():
    bh = make(max_concurrent_calls=2)

    async def work():
        async with bh:
            await asyncio.sleep(0)

    await asyncio.gather(*(work() for _ in range(10)))
    assert bh.get_metrics()["accepted"] == 10
    assert_idle(bh)


async def test_metrics_keys():
    bh = make(name="io", max_concurrent_calls=3)
    async with bh.isolate():
        m = bh.get_metrics()
    for k in ("name", "max_concurrent", "active_tasks", "queue_size",
              "available_slots"):
        assert k in m
    assert (m["name"], m["max_concurrent"], m["active_tasks"],
            m["available_slots"]) == ("io", 3, 1, 2)


def test_no_running_loop_leaves_no_ticket():
    bh = make(max_concurrent_calls=1)
    assert bh.try_acquire()
    with pytest.raises(RuntimeError):
        bh.isolate().__aenter__()
    assert bh.get_metrics()["queue_size"] == 0
    bh.release()
    assert_idle(bh)


def test_registry():
    r = BulkheadRegistry()
    a = r.get_or_create("cpu")
    assert r.get_or_create("cpu") is a and a.config.name == "cpu"
    r.get_or_create("io", BulkheadConfig(name="io", max_concurrent_calls=20))
    assert r.get_all_metrics()["io"]["max_concurrent"] == 20
    assert isinstance(bulkhead_registry, BulkheadRegistry)
    with pytest.raises(TypeError):
        r.get_or_create(1)


@pytest.mark.parametrize("field,value,exc", [
    ("max_concurrent_calls", 0, ValueError),
    ("max_concurrent_calls", -3, ValueError),
    ("max_concurrent_calls", 2**31, ValueError),
    ("max_concurrent_calls", "4", TypeError),
    ("max_concurrent_calls", None, TypeError),
    ("max_concurrent_calls", 4.0, TypeError),
    ("max_wait_duration", -1, ValueError),
    ("max_wait_duration", math.nan, ValueError),
    ("max_wait_duration", None, TypeError),
    ("max_queue_size", -1, ValueError),
    ("max_queue_size", "x", TypeError),
    ("name", None, TypeError),
])
def test_bad_config(field, value, exc):
    with pytest.raises(exc):
        make(**{field: value})


def test_bad_arguments():
    with pytest.raises(TypeError):
        Bulkhead({"max_concurrent_calls": 3})
    assert Bulkhead().config == BulkheadConfig()
    assert make(max_wait_duration=math.inf)


async def test_no_leak_over_100000_calls():
    bh = make(max_concurrent_calls=1)
    for _ in range(1000):
        async with bh.isolate():
            pass
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(100_000):
        async with bh.isolate():
            pass
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 64 * 1024
    assert_idle(bh)


async def test_one_loop_timer_serves_every_limited_wait():
    # FIFO waits with one max_wait_duration run out in queue order: one
    # timer of the loop, armed for the oldest, serves them all.
    bh = make(max_concurrent_calls=1, max_wait_duration=60)
    assert bh.try_acquire()
    loop = asyncio.get_running_loop()
    got = []

    async def wait(tag):
        async with bh.isolate():
            got.append(tag)

    tasks = [asyncio.ensure_future(wait(t)) for t in "abcde"]
    while bh.get_metrics()["queue_size"] < 5:
        await asyncio.sleep(0)
    ours = [h for h in loop._scheduled if not h.cancelled()
            and type(getattr(h._callback, "__self__", None)).__name__
            == "_Expiry"]
    assert len(ours) == 1
    bh.release()
    await asyncio.gather(*tasks)
    assert got == list("abcde")
    assert_idle(bh)


async def test_waits_that_run_out_leave_in_queue_order():
    bh = make(max_concurrent_calls=1, max_wait_duration=0.01)
    assert bh.try_acquire()
    out = []

    async def wait(tag):
        try:
            async with bh.isolate():
                out.append(("in", tag))
        except BulkheadFullError:
            out.append(("timed out", tag))

    await asyncio.gather(*(wait(t) for t in "abc"))
    assert out == [("timed out", "a"), ("timed out", "b"),
                   ("timed out", "c")]
    assert bh.get_metrics()["rejected_timeout"] == 3
    bh.release()
    assert_idle(bh)
