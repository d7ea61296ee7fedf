"""Time for the Python layer: the library's clock, and timers on it.

Every object reads time from the library's clock: the system monotonic
clock (the event loop's clock too), or a ManualClock given as clock=. A
ManualClock also carries the timers the Python layer sets (timeout scopes,
health-check timeouts): they fire inside advance(), so tests move time by
hand and nothing sleeps."""

import asyncio
import heapq
import itertools
import math

from . import _core


class _Timer:
    __slots__ = ("fn", "cancelled", "clock")

    def __init__(self, fn, clock=None):
        self.fn = fn
        self.cancelled = False
        self.clock = clock

    def cancel(self):
        if not self.cancelled:
            self.cancelled = True
            self.fn = None
            if self.clock is not None:
                self.clock._cancelled_one()
                self.clock = None


class ManualClock(_core.ManualClock):
    """A clock that moves only when advanced (for tests): pass it as
    clock=. advance(seconds) moves it and runs the timers now due (timeout
    scopes, health-check timeouts), in time order; now() reads it."""

    def __init__(self):
        super().__init__()
        self._timers = []
        self._seq = itertools.count()
        self._cancelled = 0

    def advance(self, seconds):
        super().advance(seconds)
        now = self.now()
        while self._timers and self._timers[0][0] <= now:
            _, _, t = heapq.heappop(self._timers)
            if t.cancelled:
                self._cancelled -= 1
            else:
                fn, t.fn, t.clock = t.fn, None, None
                t.cancelled = True
                fn()

    def pending_timers(self):
        """How many timers wait for the clock (for tests that advance it
        once the work under test has set its timers)."""
        return len(self._timers) - self._cancelled

    def _cancelled_one(self):
        # Cancelled timers leave the heap in bulk once they are half of it.
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._timers):
            self._timers = [e for e in self._timers if not e[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled = 0

    def _call_at(self, at, fn):
        t = _Timer(fn, self)
        heapq.heappush(self._timers, (at, next(self._seq), t))
        return t


def now(clock):
    """Seconds on clock (None: the library's system clock)."""
    return clock.now() if clock is not None else _core._monotonic()


def call_later(clock, delay, fn):
    """Run fn() after delay seconds of clock; returns a handle with
    cancel(). The system clock uses the running loop's timer (the same
    monotonic clock); a ManualClock runs fn inside advance()."""
    if math.isinf(delay):
        return _Timer(None)
    if clock is None or not hasattr(clock, "_call_at"):
        loop = asyncio.get_running_loop()
        return loop.call_later(max(delay, 0.0), fn)
    if delay <= 0:
        return asyncio.get_running_loop().call_soon(fn)
    return clock._call_at(clock.now() + delay, fn)


def check_clock(clock):
    if clock is not None and not isinstance(clock, _core.ManualClock):
        raise TypeError("clock must be a ManualClock or None, not %s"
                        % type(clock).__name__)
    return clock


def seconds_arg(value, name, *, positive=False, inf_ok=True):
    """A number of seconds: TypeError for a non-number (bool and None
    included), ValueError for NaN, a negative value (or 0 when positive),
    or inf when not inf_ok."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be a number, not %s"
                        % (name, type(value).__name__))
    v = float(value)
    if math.isnan(v) or v < 0 or (positive and v == 0):
        raise ValueError("%s must be a %s number" %
                         (name, "positive" if positive else "non-negative"))
    if not inf_ok and math.isinf(v):
        raise ValueError("%s must be finite" % name)
    return v
