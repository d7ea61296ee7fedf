"""The reference's reliability API (puffinflow.core.reliability) on the C
library.

The classes keep the original's names, constructor signatures, config
dataclasses (field names and defaults) and exception types; the work is done
by the library's circuit breaker, bulkhead, leak detector and degradation
manager through puffinflow_c._core. HealthChecker and TimeoutManager run on
asyncio (checks as concurrent tasks, scopes per task) with the library's
clock.
Where the behaviour deliberately differs from the original, docs/python.md
says so.
"""

import asyncio
import collections
import contextvars
import enum
import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union

from . import _core
from ._clock import ManualClock
from ._core import exponential_backoff
from .health import (GracefulDegradation, HealthCheck, HealthChecker,
                     HealthCheckFailedError, HealthReport, HealthStatus,
                     SystemHealth)
from .leak_detector import (ResourceAllocation, ResourceLeak,
                            ResourceLeakDetector, leak_detector)
from .timeouts import DeadlineExceededError, TimeoutManager

__all__ = [
    "CircuitState",
    "CircuitBreakerConfig",
    "CircuitBreakerError",
    "CircuitBreakerOpenError",
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "circuit_registry",
    "BulkheadConfig",
    "BulkheadFullError",
    "Bulkhead",
    "BulkheadRegistry",
    "bulkhead_registry",
    "exponential_backoff",
    "ManualClock",
    "ResourceLeak",
    "ResourceAllocation",
    "ResourceLeakDetector",
    "leak_detector",
    "HealthStatus",
    "HealthCheck",
    "HealthReport",
    "HealthChecker",
    "HealthCheckFailedError",
    "SystemHealth",
    "GracefulDegradation",
    "TimeoutManager",
    "DeadlineExceededError",
]


# ---- circuit breaker -------------------------------------------------------


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


ExceptionTypes = Union[Type[BaseException], Tuple[Type[BaseException], ...]]


@dataclass
class CircuitBreakerConfig:
    """A circuit breaker's settings (the original's fields and defaults).

    half_open_max_calls is this library's: trial calls in flight at once
    while half-open (0 = success_threshold)."""

    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    success_threshold: int = 3
    timeout: float = 30.0
    name: str = "default"
    expected_exception: ExceptionTypes = Exception
    fallback_function: Optional[Callable[..., Any]] = None
    half_open_max_calls: int = 0


class CircuitBreakerError(Exception):
    """Base class of the circuit breaker's errors."""


class CircuitBreakerOpenError(CircuitBreakerError):
    """The breaker rejected the call (open, or half-open with its trial
    places taken)."""


async def _maybe_await(value):
    if inspect.isawaitable(value):
        return await value
    return value


# The context managers entered by `async with breaker:` / `async with
# bulkhead:` in the current task, innermost last: a tuple of (owner, cm).
_entered = contextvars.ContextVar("puffinflow_c_entered", default=())


async def _enter_self(owner, cm):
    await cm.__aenter__()
    _entered.set(_entered.get() + ((owner, cm),))


def _pop_self(owner):
    stack = _entered.get()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][0] is owner:
            _entered.set(stack[:i] + stack[i + 1:])
            return stack[i][1]
    raise RuntimeError("__aexit__ without a matching __aenter__ in this task")


class CircuitBreaker(_core._Breaker):
    """CircuitBreaker(config) -- `async with breaker.protect():`,
    `async with breaker:`, `await breaker.call(fn, *args, **kwargs)`.

    clock (keyword only, this library's): a ManualClock for tests."""

    def __init__(self, config: Optional[CircuitBreakerConfig] = None, *,
                 clock: Optional[ManualClock] = None):
        if config is None:
            config = CircuitBreakerConfig()
        if not isinstance(config, CircuitBreakerConfig):
            raise TypeError("config must be a CircuitBreakerConfig, not %s"
                            % type(config).__name__)
        if not isinstance(config.name, str):
            raise TypeError("name must be a str")
        fb = config.fallback_function
        if fb is not None and not callable(fb):
            raise TypeError("fallback_function must be callable or None")
        super().__init__(config.name, config.failure_threshold,
                         config.recovery_timeout, config.success_threshold,
                         config.timeout, config.expected_exception,
                         config.half_open_max_calls, clock)
        self.config = config

    @property
    def state(self) -> CircuitState:
        return CircuitState(self._state_name())

    def get_metrics(self) -> Dict[str, Any]:
        """The original's keys (name, state, failure_count, success_count,
        last_failure_time) and the library's counts."""
        return self._raw_metrics()

    async def call(self, func: Callable[..., Any], *args, **kwargs) -> Any:
        """Run func(*args, **kwargs) (awaited when it returns an awaitable)
        under the breaker. With a fallback_function, a rejected call or a
        failure that counts returns fallback_function(*args, **kwargs)."""
        if not callable(func):
            raise TypeError("func must be callable")
        fb = self.config.fallback_function
        try:
            async with self.protect():
                return await _maybe_await(func(*args, **kwargs))
        except CircuitBreakerOpenError:
            if fb is None:
                raise
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            if fb is None or not isinstance(e, self.config.expected_exception):
                raise
        return await _maybe_await(fb(*args, **kwargs))

    async def __aenter__(self):
        await _enter_self(self, self.protect())

    async def __aexit__(self, et, e, tb):
        return await _pop_self(self).__aexit__(et, e, tb)

    def __repr__(self):
        return "CircuitBreaker(%r, state=%s)" % (self.config.name,
                                                self._state_name())


class CircuitBreakerRegistry:
    """Breakers by name, created on first use."""

    def __init__(self):
        self._breakers: Dict[str, CircuitBreaker] = {}

    def get_or_create(self, name: str,
                      config: Optional[CircuitBreakerConfig] = None
                      ) -> CircuitBreaker:
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        b = self._breakers.get(name)
        if b is None:
            if config is None:
                config = CircuitBreakerConfig(name=name)
            b = self._breakers[name] = CircuitBreaker(config)
        return b

    def get_all_metrics(self) -> Dict[str, Dict[str, Any]]:
        return {n: b.get_metrics() for n, b in self._breakers.items()}


circuit_registry = CircuitBreakerRegistry()


# ---- bulkhead --------------------------------------------------------------


@dataclass
class BulkheadConfig:
    """A bulkhead's settings. max_wait_duration: seconds a caller may wait
    for a slot (0 or inf = no limit); max_queue_size: callers allowed to
    wait at once (0 = nobody waits). max_concurrent and timeout: the
    original source's names of max_concurrent_calls and
    max_wait_duration."""

    name: str = "default"
    max_concurrent_calls: int = 10
    max_wait_duration: float = 30.0
    max_queue_size: int = 100
    # The original source's names for the first two, so configs written
    # for it work unchanged: given, they set max_concurrent_calls /
    # max_wait_duration; not given, they read back the same values.
    max_concurrent: Optional[int] = None
    timeout: Optional[float] = None

    def __post_init__(self):
        if self.max_concurrent is not None:
            self.max_concurrent_calls = self.max_concurrent
        else:
            self.max_concurrent = self.max_concurrent_calls
        if self.timeout is not None:
            self.max_wait_duration = self.timeout
        else:
            self.timeout = self.max_wait_duration


class BulkheadFullError(Exception):
    """No slot: the queue was full, or the wait ran out."""


def _grant(fut):
    # Scheduled on the waiter's loop by the ticket's grant callback.
    if not fut.done():
        fut.set_result(None)


class _Expiry:
    """The waits with a time limit of one bulkhead on one loop, in the
    order they queued. Waits are FIFO and share one duration, so they run
    out in that order: one timer of the loop, armed for the oldest, serves
    them all (instead of a timer per waiting call)."""

    # Neither the loop nor its timer handle is held here (the loop holds
    # the handle, which holds fire): a closed loop is freed, and its entry
    # in the bulkhead's WeakKeyDictionary goes with it.
    __slots__ = ("bulkhead", "loop", "waits", "armed", "__weakref__")

    def __init__(self, bulkhead, loop):
        self.bulkhead = bulkhead
        self.loop = weakref.ref(loop)
        self.waits = collections.deque()
        self.armed = False

    def add(self, loop, cm):
        waits = self.waits
        while waits and not waits[0][1]._waiting():
            waits.popleft()   # granted, cancelled or expired meanwhile
        deadline = loop.time() + self.bulkhead._wait_seconds
        waits.append((deadline, cm))
        if not self.armed:
            loop.call_at(deadline, self.fire)
            self.armed = True

    def fire(self):
        self.armed = False
        loop = self.loop()
        if loop is None:
            return
        now = loop.time()
        waits = self.waits
        while waits:
            deadline, cm = waits[0]
            if deadline > now and cm._waiting():
                break
            waits.popleft()
            if deadline <= now:
                cm._expire()   # a no-op unless it still waits
        if waits:
            loop.call_at(waits[0][0], self.fire)
            self.armed = True


def _expire_later(bulkhead, loop, cm):
    # Called by a queued isolate() of a bulkhead with max_wait_duration.
    e = bulkhead._expiries.get(loop)
    if e is None:
        e = bulkhead._expiries[loop] = _Expiry(bulkhead, loop)
    e.add(loop, cm)


class Bulkhead(_core._Bulkhead):
    """Bulkhead(config) -- `async with bulkhead.isolate():` or
    `async with bulkhead:`. clock (keyword only): a ManualClock."""

    def __init__(self, config: Optional[BulkheadConfig] = None, *,
                 clock: Optional[ManualClock] = None):
        if config is None:
            config = BulkheadConfig()
        if not isinstance(config, BulkheadConfig):
            raise TypeError("config must be a BulkheadConfig, not %s"
                            % type(config).__name__)
        if not isinstance(config.name, str):
            raise TypeError("name must be a str")
        super().__init__(config.name, config.max_concurrent_calls,
                         config.max_wait_duration, config.max_queue_size,
                         clock)
        self.config = config
        self._wait_seconds = float(config.max_wait_duration)
        self._expiries = weakref.WeakKeyDictionary()  # loop -> _Expiry

    def get_metrics(self) -> Dict[str, Any]:
        """name, max_concurrent, active_tasks, queue_size (callers waiting),
        available_slots, and the library's counts."""
        return self._raw_metrics()

    async def __aenter__(self):
        await _enter_self(self, self.isolate())

    async def __aexit__(self, et, e, tb):
        return await _pop_self(self).__aexit__(et, e, tb)

    def __repr__(self):
        return "Bulkhead(%r)" % (self.config.name,)


class BulkheadRegistry:
    """Bulkheads by name, created on first use."""

    def __init__(self):
        self._bulkheads: Dict[str, Bulkhead] = {}

    def get_or_create(self, name: str,
                      config: Optional[BulkheadConfig] = None) -> Bulkhead:
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        b = self._bulkheads.get(name)
        if b is None:
            if config is None:
                config = BulkheadConfig(name=name)
            b = self._bulkheads[name] = Bulkhead(config)
        return b

    def get_all_metrics(self) -> Dict[str, Dict[str, Any]]:
        return {n: b.get_metrics() for n, b in self._bulkheads.items()}


bulkhead_registry = BulkheadRegistry()


_core._setup(open_error=CircuitBreakerOpenError, full_error=BulkheadFullError,
             cancelled=asyncio.CancelledError,
             get_running_loop=asyncio.get_running_loop, grant=_grant,
             expire_later=_expire_later)
