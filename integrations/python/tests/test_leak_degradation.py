"""ResourceLeakDetector (the original's methods and records) and
GracefulDegradation, on the library's detector and degradation manager,
driven by a ManualClock and injected figures."""

import asyncio
import dataclasses
import math

import pytest

from puffinflow_c.reliability import (CircuitBreaker, CircuitBreakerConfig,
                                      GracefulDegradation, HealthChecker,
                                      ResourceAllocation, ResourceLeak,
                                      ResourceLeakDetector, SystemHealth,
                                      leak_detector)


def test_leak_records_are_the_originals_dataclasses():
    leak = ResourceLeak(state_name="s", agent_name="a",
                        resources={"cpu": 1.0}, allocated_at=1.0,
                        held_for_seconds=400.0, leak_threshold_seconds=300.0)
    assert dataclasses.asdict(leak)["resources"] == {"cpu": 1.0}
    a = ResourceAllocation("s", "a", {"gpu": 1}, 2.0)
    assert (a.state_name, a.agent_name, a.allocated_at) == ("s", "a", 2.0)


def test_defaults_as_the_original():
    d = ResourceLeakDetector()
    assert d.leak_threshold == 300.0
    assert d.allocations == {} and d.detected_leaks == []
    assert d._max_leaks_history == 100
    assert isinstance(leak_detector, ResourceLeakDetector)


def test_tracking_and_detection(clock):
    d = ResourceLeakDetector(leak_threshold_seconds=300, clock=clock)
    res = {"cpu": 2.0, "memory": 1024, "custom": 7}
    d.track_allocation("state1", "agent1", res)
    res["cpu"] = 99  # copied
    assert d.allocations["agent1:state1"].resources["cpu"] == 2.0
    d.track_allocation("state2", "agent1", {})
    clock.advance(299)
    assert d.detect_leaks() == []
    clock.advance(2)
    leaks = d.detect_leaks()
    assert [(l.agent_name, l.state_name) for l in leaks] == \
        [("agent1", "state1"), ("agent1", "state2")]
    assert leaks[0].resources == {"cpu": 2.0, "memory": 1024, "custom": 7}
    assert leaks[0].held_for_seconds == 301
    assert leaks[0].leak_threshold_seconds == 300
    d.detect_leaks()                       # no duplicate in the history
    assert len(d.detected_leaks) == 2
    m = d.get_metrics()
    assert (m["total_allocations"], m["current_leaks"],
            m["total_detected_leaks"], m["leak_threshold_seconds"],
            m["oldest_allocation_age"], m["leaks_by_agent"]) == \
        (2, 2, 2, 300.0, 301.0, {"agent1": 2})
    d.track_release("state1", "agent1")
    d.track_release("state1", "agent1")    # nothing held: a no-op
    assert list(d.allocations) == ["agent1:state2"]
    assert d.detected_leaks[0].resources["memory"] == 1024  # kept
    d.clear_leak_history()
    assert d.detected_leaks == []
    d.track_release("state2", "agent1")
    m = d.get_metrics()
    assert m["total_allocations"] == 0 and m["oldest_allocation_age"] is None


def test_a_second_allocation_restarts_the_clock(clock):
    d = ResourceLeakDetector(leak_threshold_seconds=10, clock=clock)
    d.track_allocation("s", "a", {"cpu": 1})
    clock.advance(8)
    d.track_allocation("s", "a", {"cpu": 2})
    clock.advance(8)
    assert d.detect_leaks() == []
    assert d.allocations["a:s"].resources == {"cpu": 2}


def test_process_thresholds_from_injected_samples(clock):
    fig = {"rss_bytes": 100, "memory_limit_bytes": 1000, "open_fds": 10,
           "tcp": 1, "udp": 0}
    d = ResourceLeakDetector(clock=clock, memory_threshold=0.5,
                             file_handle_threshold=20,
                             connection_threshold=3, sample=lambda: fig)
    r = d.check()
    assert not any(r["alerting"].values())
    assert r["sample"]["memory_fraction"] == pytest.approx(0.1)
    fig.update(rss_bytes=600, open_fds=25, tcp=3, udp=1)
    r = d.check()
    assert r["alerting"]["memory"] and r["alerting"]["file_handles"]
    assert r["alerting"]["connections"]
    assert r["sample"]["connections"] == 4
    with pytest.raises(RuntimeError):
        d.start_monitoring()   # a sample function is for check()

    def bad():
        raise OSError("no /proc")
    with pytest.raises(OSError):
        ResourceLeakDetector(sample=bad).check()
    with pytest.raises(TypeError):
        ResourceLeakDetector(sample=lambda: [1]).check()


async def test_monitoring_starts_and_stops():
    d = ResourceLeakDetector(check_interval=3600)
    d.start_monitoring()
    d.start_monitoring()   # a no-op, as the original
    assert d.is_monitoring()
    await d.stop_monitoring()
    assert not d.is_monitoring()
    d.stop_monitoring()    # not monitoring: nothing happens


def test_leak_detector_bad_input():
    for kw in ({"leak_threshold_seconds": -1}, {"check_interval": 0},
               {"memory_threshold": 1.5}, {"memory_threshold": math.nan},
               {"file_handle_threshold": 0}, {"connection_threshold": -1}):
        with pytest.raises(ValueError):
            ResourceLeakDetector(**kw)
    for kw in ({"leak_threshold_seconds": None}, {"check_interval": "60"},
               {"file_handle_threshold": 1.5}, {"name": None},
               {"clock": 1}, {"sample": 3}):
        with pytest.raises(TypeError):
            ResourceLeakDetector(**kw)
    d = ResourceLeakDetector()
    with pytest.raises(TypeError):
        d.track_allocation("s", "a", None)
    with pytest.raises(TypeError):
        d.track_allocation(None, "a", {})
    with pytest.raises(TypeError):
        d.track_allocation("s", "a", {"cpu": "2"})
    with pytest.raises(ValueError):
        d.track_allocation("s", "a", {"cpu": -1})
    with pytest.raises(ValueError):
        d.track_allocation("s", "a", {"memory": math.nan})
    with pytest.raises(TypeError):
        d.track_release("s", None)
    assert d.allocations == {}


# ---- graceful degradation -------------------------------------------------


async def test_rules_pick_the_most_degraded_mode(clock):
    fig = {"v": (10.0, 20.0)}
    g = GracefulDegradation(rules=["cpu > 90 -> minimal",
                                   "memory >= 85 -> reduced",
                                   "external_down -> offline"],
                            min_dwell=30, clock=clock,
                            source=lambda: fig["v"])
    changes = []
    g.on_change(lambda old, new: changes.append((old, new)))
    assert g.modes == ("full", "reduced", "minimal", "offline")
    assert await g.update() == "full" and not g.is_degraded()
    fig["v"] = (95.0, 90.0)
    assert await g.update() == "minimal" and g.mode_index == 2
    h = await g.check_system_health()
    assert isinstance(h, SystemHealth) and h.cpu_usage == 95.0
    fig["v"] = (10.0, 20.0)
    assert await g.update() == "minimal"   # dwell: kept 30 s
    clock.advance(30)
    assert await g.update() == "full"
    assert changes == [("full", "minimal"), ("minimal", "full")]
    assert g.evaluate(cpu_usage=None, memory_usage=None,
                      external_services_available=False) == "offline"
    m = g.get_metrics()
    assert m["transitions"] == 3 and m["mode"] == "offline"


async def test_breakers_checkers_overrides_and_gauges(clock):
    g = GracefulDegradation(("normal", "degraded"),
                            ["external_down -> degraded",
                             "queue > 100 -> degraded"],
                            min_dwell=0, clock=clock,
                            source=lambda: (1.0, 1.0))
    cb = CircuitBreaker(CircuitBreakerConfig(failure_threshold=1),
                        clock=clock)
    g.add_breaker(cb)
    assert await g.update() == "normal"
    cb.force_open()
    h = await g.check_system_health()
    assert h.external_services_available is False
    assert await g.update() == "degraded"
    cb.force_close()
    assert await g.update() == "normal"
    hc = HealthChecker(clock=clock)
    hc.add_check("db", lambda: "unhealthy")
    await hc.check_all()
    g.add_health_checker(hc)
    assert await g.update() == "degraded"
    hc.remove_check("db")
    await hc.check_all()
    assert await g.update() == "normal"
    g.set_gauge("queue", 500)
    assert await g.update() == "degraded"
    g.set_gauge("queue", 5)
    g.override("degraded")
    assert await g.update() == "degraded"
    assert g.clear_override() and not g.clear_override()
    assert g.mode == "normal"


def test_degradation_bad_input():
    with pytest.raises(ValueError):
        GracefulDegradation(rules=["cpu >> 90 -> reduced"])
    with pytest.raises(ValueError):
        GracefulDegradation(rules=["cpu > 90 -> nowhere"])
    with pytest.raises(TypeError):
        GracefulDegradation(rules="cpu > 90 -> reduced")
    with pytest.raises(TypeError):
        GracefulDegradation(rules=[3])
    with pytest.raises(ValueError):
        GracefulDegradation(modes=("a", "a"))
    with pytest.raises(TypeError):
        GracefulDegradation(modes=("a", None))
    with pytest.raises(TypeError):
        GracefulDegradation(modes="ab")
    with pytest.raises(ValueError):
        GracefulDegradation(min_dwell=-1)
    with pytest.raises(TypeError):
        GracefulDegradation(min_dwell=None)
    with pytest.raises(TypeError):
        GracefulDegradation(source=5)
    g = GracefulDegradation(source=lambda: "x")
    with pytest.raises(TypeError):
        asyncio.run(g.update())
    g = GracefulDegradation()
    with pytest.raises(ValueError):
        g.override("nope")
    with pytest.raises(TypeError):
        g.override(None)
    with pytest.raises(TypeError):
        g.evaluate(cpu_usage="high")
    with pytest.raises(TypeError):
        g.evaluate("health")
    with pytest.raises(TypeError):
        g.add_breaker(object())
    with pytest.raises(TypeError):
        g.add_health_checker(object())
    with pytest.raises(ValueError):
        g.set_gauge("", 1)
    with pytest.raises(ValueError):
        g.set_gauge("q", math.nan)
    with pytest.raises(TypeError):
        g.set_gauge("q", None)
