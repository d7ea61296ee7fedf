"""HealthChecker, HealthCheck and GracefulDegradation.

A HealthChecker's checks are coroutine functions (or plain functions) run
concurrently as tasks of the caller's event loop, each bounded by its
timeout on the checker's clock; the report's overall status is the worst
status of the critical checks, a failing non-critical check making it
degraded at most (the C library's rule, include/puffinflow/health.h).
GracefulDegradation is the library's degradation manager
(include/puffinflow/degrade.h): rules map CPU and memory usage, external
service availability and the program's gauges to modes."""

import asyncio
import enum
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import _clock, _core

__all__ = ["HealthStatus", "HealthCheck", "HealthReport", "HealthChecker",
           "HealthCheckFailedError", "SystemHealth", "GracefulDegradation"]


class HealthStatus(str, enum.Enum):
    """A check's status; the members compare equal to their strings."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def _status_arg(status) -> str:
    if isinstance(status, HealthStatus):
        return status.value
    if not isinstance(status, str):
        raise TypeError("status must be a str or HealthStatus, not %s"
                        % type(status).__name__)
    if status not in _RANK:
        raise ValueError("status must be 'healthy', 'degraded' or "
                         "'unhealthy', not %r" % status)
    return status


@dataclass
class HealthCheck:
    """What a check returns: HealthCheck(name, status, message).

    status is "healthy", "degraded" or "unhealthy" (or a HealthStatus).
    The checker fills duration, critical and timed_out in the report."""

    name: str
    status: str
    message: str = ""
    details: Dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    timestamp: float = field(default_factory=time.time)
    critical: bool = True
    timed_out: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError("name must be a str, not %s"
                            % type(self.name).__name__)
        self.status = _status_arg(self.status)
        if not isinstance(self.message, str):
            raise TypeError("message must be a str")

    def is_healthy(self) -> bool:
        """True unless unhealthy (a degraded dependency still serves)."""
        return self.status != "unhealthy"


class HealthCheckFailedError(Exception):
    """Raised by code that refuses to go on when health checks fail."""


@dataclass
class HealthReport:
    """The result of check_all(): status (the overall one), checks by
    name, failed_checks (names of the unhealthy ones, critical or not),
    degraded_checks, duration (seconds on the checker's clock) and
    timestamp (time.time())."""

    status: str
    checks: Dict[str, HealthCheck]
    failed_checks: List[str]
    degraded_checks: List[str]
    duration: float
    timestamp: float

    def is_healthy(self) -> bool:
        """True unless the overall status is unhealthy."""
        return self.status != "unhealthy"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "status": self.status,
            "healthy": self.is_healthy(),
            "duration": self.duration,
            "timestamp": self.timestamp,
            "checks": {n: {"status": c.status, "message": c.message,
                           "critical": c.critical, "duration": c.duration,
                           "timed_out": c.timed_out}
                       for n, c in self.checks.items()},
            "failed_checks": list(self.failed_checks),
        }


class _Registration:
    __slots__ = ("name", "fn", "timeout", "critical", "runs", "failures",
                 "timeouts", "last")

    def __init__(self, name, fn, timeout, critical):
        self.name = name
        self.fn = fn
        self.timeout = timeout
        self.critical = critical
        self.runs = self.failures = self.timeouts = 0
        self.last = None


class HealthChecker:
    """HealthChecker(name="health", *, default_timeout=5.0, clock=None)

    add_check(name, check, *, timeout=None, critical=True) registers
    check, a callable taking no arguments that returns (or, as a coroutine
    function, resolves to) a HealthCheck, a status string, a bool or None
    (healthy). An exception makes it unhealthy with the exception as its
    message; running past its timeout cancels it and makes it unhealthy
    ("timed out after N s"). `await check_all()` runs every check at once
    and returns a HealthReport."""

    def __init__(self, name: str = "health", *,
                 default_timeout: float = 5.0,
                 clock: Optional[_clock.ManualClock] = None):
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        self.name = name
        self.default_timeout = _clock.seconds_arg(
            default_timeout, "default_timeout", positive=True)
        self.clock = _clock.check_clock(clock)
        self._checks: Dict[str, _Registration] = {}
        self.last_report: Optional[HealthReport] = None
        self._reports = 0

    def add_check(self, name: str, check: Callable[[], Any], *,
                  timeout: Optional[float] = None,
                  critical: bool = True) -> None:
        if not isinstance(name, str):
            raise TypeError("name must be a str, not %s"
                            % type(name).__name__)
        if not name:
            raise ValueError("name must not be empty")
        if not callable(check):
            raise TypeError("check must be callable")
        if name in self._checks:
            raise ValueError("a check called %r exists already" % name)
        if not isinstance(critical, bool):
            raise TypeError("critical must be a bool")
        t = (self.default_timeout if timeout is None else
             _clock.seconds_arg(timeout, "timeout", positive=True))
        self._checks[name] = _Registration(name, check, t, critical)

    def remove_check(self, name: str) -> bool:
        """Remove the check called name; False when there is none."""
        return self._checks.pop(name, None) is not None

    @property
    def checks(self) -> List[str]:
        return list(self._checks)

    @property
    def status(self) -> str:
        """The overall status of the last report ("healthy" before any)."""
        return self.last_report.status if self.last_report else "healthy"

    def _now(self):
        return _clock.now(self.clock)

    @staticmethod
    def _result(reg, value) -> HealthCheck:
        if isinstance(value, HealthCheck):
            return value
        if value is None or value is True:
            return HealthCheck(reg.name, "healthy")
        if value is False:
            return HealthCheck(reg.name, "unhealthy", "check returned False")
        if isinstance(value, (str, HealthStatus)):
            return HealthCheck(reg.name, _status_arg(value))
        return HealthCheck(reg.name, "unhealthy",
                           "check returned %s, not a HealthCheck"
                           % type(value).__name__)

    async def _invoke(self, reg):
        value = reg.fn()
        if inspect.isawaitable(value):
            value = await value
        return value

    async def _run(self, reg) -> HealthCheck:
        start = self._now()
        task = asyncio.ensure_future(self._invoke(reg))
        expired = False

        def expire():
            nonlocal expired
            expired = True
            task.cancel()

        timer = _clock.call_later(self.clock, reg.timeout, expire)
        try:
            try:
                r = self._result(reg, await task)
            except asyncio.CancelledError:
                if not expired:
                    raise
                r = HealthCheck(reg.name, "unhealthy",
                                "timed out after %g s" % reg.timeout,
                                timed_out=True)
                reg.timeouts += 1
            except Exception as e:  # a failing check is unhealthy
                r = HealthCheck(reg.name, "unhealthy",
                                "check failed: %s: %s"
                                % (type(e).__name__, e))
        finally:
            timer.cancel()
        # Reported under the name it was added with.
        r = HealthCheck(reg.name, r.status, r.message, dict(r.details),
                        self._now() - start, r.timestamp, reg.critical,
                        r.timed_out)
        reg.runs += 1
        if r.status == "unhealthy":
            reg.failures += 1
        reg.last = r
        return r

    def _report(self, results, start) -> HealthReport:
        overall = 0
        for r in results:
            rank = _RANK[r.status]
            if not r.critical:
                rank = min(rank, 1)
            overall = max(overall, rank)
        status = ("healthy", "degraded", "unhealthy")[overall]
        report = HealthReport(
            status=status,
            checks={r.name: r for r in results},
            failed_checks=[r.name for r in results
                           if r.status == "unhealthy"],
            degraded_checks=[r.name for r in results
                             if r.status == "degraded"],
            duration=self._now() - start,
            timestamp=time.time())
        self._reports += 1
        return report

    async def check_all(self) -> HealthReport:
        """Run every check at once; the report of all of them."""
        start = self._now()
        regs = list(self._checks.values())
        results = await asyncio.gather(*(self._run(r) for r in regs))
        self.last_report = self._report(results, start)
        return self.last_report

    async def check(self, name: str) -> HealthCheck:
        """Run the one check called name (KeyError when there is none)."""
        reg = self._checks.get(name)
        if reg is None:
            raise KeyError(name)
        return await self._run(reg)

    def get_metrics(self) -> Dict[str, Any]:
        return {"name": self.name, "status": self.status,
                "checks": len(self._checks), "reports": self._reports,
                "runs": sum(r.runs for r in self._checks.values()),
                "failures": sum(r.failures for r in self._checks.values()),
                "timeouts": sum(r.timeouts for r in self._checks.values())}

    def __repr__(self):
        return "HealthChecker(%r, checks=%d)" % (self.name, len(self._checks))


# ---- graceful degradation -------------------------------------------------


@dataclass
class SystemHealth:
    """The signals degradation rules look at (the reference's
    system_health): CPU and memory usage in percent (NaN when unknown) and
    whether external services are available."""

    cpu_usage: float
    memory_usage: float
    external_services_available: bool = True
    timestamp: float = 0.0


class GracefulDegradation(_core._Degrade):
    """GracefulDegradation(modes=None, rules=(), *, name="degradation",
    min_dwell=30.0, min_dwell_degrade=0.0, clock=None, source=None)

    Picks one of modes (normal first, most degraded last; default "full",
    "reduced", "minimal", "offline") from the system's health by rules
    written as text ("cpu > 90 -> minimal", "memory >= 85 hysteresis 5 ->
    reduced", "external_down -> offline", or a gauge: "queue > 1000 ->
    reduced"); when several fire the most degraded wins. min_dwell keeps a
    mode that long before recovering (min_dwell_degrade before degrading
    further). `await check_system_health()` samples CPU, memory (cgroup
    aware) and the registered breakers and health checkers without
    changing the mode; `await update()` samples and applies the rules;
    evaluate() applies them to given figures. source: a function returning
    (cpu_usage, memory_usage[, external_services_available]) instead of
    the /proc sampler."""

    def __init__(self, modes: Optional[Sequence[str]] = None,
                 rules: Sequence[str] = (), *, name: str = "degradation",
                 min_dwell: float = 30.0, min_dwell_degrade: float = 0.0,
                 clock: Optional[_clock.ManualClock] = None,
                 source: Optional[Callable[[], tuple]] = None):
        if modes is not None:
            if isinstance(modes, str):
                raise TypeError("modes must be a sequence of str")
            modes = tuple(modes)
        if isinstance(rules, str):
            raise TypeError("rules must be a sequence of str")
        super().__init__(name, modes, min_dwell, min_dwell_degrade,
                         _clock.check_clock(clock), source)
        self.name = name
        self._checkers: List[HealthChecker] = []
        self._listeners: List[Callable[[str, str], Any]] = []
        for r in rules:
            self.add_rule(r)

    @property
    def mode(self) -> str:
        """The current mode (one atomic load in C)."""
        return self._mode()

    @property
    def mode_index(self) -> int:
        """0 for the normal mode, then in order of degradation."""
        return self._mode_index()

    @property
    def modes(self) -> tuple:
        return self._modes()

    def is_degraded(self) -> bool:
        return self._mode_index() != 0

    def add_breaker(self, breaker) -> None:
        """External services count as unavailable while breaker is open."""
        self._add_breaker(breaker)

    def add_health_checker(self, checker: HealthChecker) -> None:
        """... and while checker's last report is unhealthy."""
        if not isinstance(checker, HealthChecker):
            raise TypeError("expected a HealthChecker")
        self._checkers.append(checker)

    def on_change(self, callback: Callable[[str, str], Any]) -> None:
        """callback(old_mode, new_mode) after each mode change made through
        this object."""
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._listeners.append(callback)

    def _changed(self, old):
        new = self._mode()
        if new != old:
            for cb in list(self._listeners):
                cb(old, new)
        return new

    def _sample_health(self) -> SystemHealth:
        cpu, mem, ext, at = self._sample()
        if any(c.status == "unhealthy" for c in self._checkers):
            ext = False
        return SystemHealth(cpu, mem, ext, at)

    async def check_system_health(self) -> SystemHealth:
        """The signals now, mode unchanged."""
        return self._sample_health()

    async def update(self) -> str:
        """Sample, apply the rules; the mode afterwards."""
        return self.evaluate(self._sample_health())

    def evaluate(self, health: Optional[SystemHealth] = None, *,
                 cpu_usage: Optional[float] = None,
                 memory_usage: Optional[float] = None,
                 external_services_available: bool = True) -> str:
        """Apply the rules to health (or to the figures given; None =
        unknown, which no rule fires on); the mode afterwards."""
        if health is not None:
            if not isinstance(health, SystemHealth):
                raise TypeError("health must be a SystemHealth")
            cpu_usage = health.cpu_usage
            memory_usage = health.memory_usage
            external_services_available = health.external_services_available
        figs = []
        for n, v in (("cpu_usage", cpu_usage), ("memory_usage", memory_usage)):
            if v is None:
                figs.append(math.nan)
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError("%s must be a number or None" % n)
            else:
                figs.append(float(v))
        old = self._mode()
        self._evaluate(figs[0], figs[1], bool(external_services_available))
        return self._changed(old)

    def override(self, mode: str) -> None:
        """Pin mode until clear_override() (ValueError for an unknown
        mode)."""
        old = self._mode()
        self._override(mode)
        self._changed(old)

    def clear_override(self) -> bool:
        """Let the rules decide again; False when nothing was pinned."""
        old = self._mode()
        r = self._clear_override()
        self._changed(old)
        return r

    def get_metrics(self) -> Dict[str, Any]:
        m = self._raw_metrics()
        cpu, mem, ext, at = m.pop("last")
        m["last"] = SystemHealth(cpu, mem, ext, at)
        return m

    def __repr__(self):
        return "GracefulDegradation(%r, mode=%r)" % (self.name, self.mode)
