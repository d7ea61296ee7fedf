"""TimeoutManager and DeadlineExceededError: nested time limits for
coroutines, on the library's clock.

A scope's effective deadline is the earlier of its own and the enclosing
scope's (of the same manager, in the same task or the task that created
this one), so inner work never outlives an outer limit. When the effective
deadline passes, the task is cancelled and the scope raises
DeadlineExceededError (an asyncio.TimeoutError). Only the scope whose own
limit is the earliest sets a timer, so one expiry raises once, in the scope
that set it, and passes through the scopes inside it."""

import asyncio
import contextvars
import math
from typing import Any, Dict, Optional

from . import _clock

__all__ = ["DeadlineExceededError", "TimeoutManager"]


class DeadlineExceededError(asyncio.TimeoutError):
    """A time limit passed: a TimeoutManager scope ran out, or work was
    entered after its deadline. An asyncio.TimeoutError (TimeoutError), so
    `except asyncio.TimeoutError` catches it."""


# The scopes the current task is inside, innermost last (all managers).
_scopes = contextvars.ContextVar("puffinflow_c_timeouts", default=())


class _Scope:
    """One timeout scope: `async with manager.timeout(s):`. Serves one
    entry."""

    __slots__ = ("manager", "seconds", "at", "deadline", "_task", "_timer",
                 "_expired", "_token", "_used")

    def __init__(self, manager, seconds, at):
        self.manager = manager
        self.seconds = seconds
        self.at = at
        self.deadline = math.inf
        self._task = None
        self._timer = None
        self._expired = False
        self._token = None
        self._used = False

    def remaining(self) -> float:
        """Seconds left before this scope's effective deadline, >= 0."""
        return max(0.0, self.deadline - self.manager.now())

    @property
    def expired(self) -> bool:
        """True once this scope's own timer has fired."""
        return self._expired

    async def __aenter__(self):
        if self._used:
            raise RuntimeError("a timeout scope serves one `async with`; "
                               "call timeout() again")
        self._used = True
        m = self.manager
        now = m.now()
        outer = m._innermost()
        outer_deadline = outer.deadline if outer is not None else math.inf
        own = self.at if self.at is not None else now + self.seconds
        self.deadline = min(own, outer_deadline)
        if self.deadline <= now:
            m._deadline_exceeded += 1
            raise DeadlineExceededError(
                "%s: deadline already passed (%s)"
                % (m.name, "enclosing scope" if outer_deadline <= own
                   else "limit %g s" % self.seconds))
        self._task = asyncio.current_task()
        if self._task is None:
            raise RuntimeError("timeout() needs a running asyncio task")
        if own < outer_deadline:
            self._timer = _clock.call_later(m.clock, own - now, self._expire)
        self._token = _scopes.set(_scopes.get() + (self,))
        m._entered += 1
        m._active += 1
        return self

    def _expire(self):
        self._expired = True
        self._task.cancel()

    async def __aexit__(self, et, e, tb):
        m = self.manager
        _scopes.reset(self._token)
        if self._timer is not None:
            self._timer.cancel()
        m._active -= 1
        m._left += 1
        if not self._expired:
            return False
        m._timed_out += 1
        if et is not None and issubclass(et, asyncio.CancelledError):
            uncancel = getattr(self._task, "uncancel", None)
            if uncancel is None or uncancel() == 0:
                raise DeadlineExceededError(
                    "%s: timed out after %g s" % (m.name, self.seconds)
                    if self.at is None else
                    "%s: deadline exceeded" % m.name) from e
            return False
        # The body ended (in time for its own reasons, or raising) before
        # the cancellation reached it: take the cancellation back, so it
        # does not hit the task's next await; another one stays.
        cancelling = getattr(self._task, "cancelling", None)
        if cancelling is not None and cancelling() > 0:
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if self._task.uncancel() > 0:
                    raise
        return False


class TimeoutManager:
    """TimeoutManager(name="default", *, clock=None)

    `async with manager.timeout(seconds):` bounds the work inside to
    seconds (math.inf: no limit of its own, only the enclosing ones);
    `async with manager.deadline(at):` to an absolute time on the
    manager's clock (manager.now() + s). Exceeding it raises
    DeadlineExceededError (an asyncio.TimeoutError); entering with the
    deadline already past raises it at once. Scopes nest per task, and a
    task created inside a scope inherits its deadline. clock: a
    ManualClock for tests."""

    def __init__(self, name: str = "default", *,
                 clock: Optional[_clock.ManualClock] = None):
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        if not name:
            raise ValueError("name must not be empty")
        self.name = name
        self.clock = _clock.check_clock(clock)
        self._entered = self._left = self._timed_out = 0
        self._deadline_exceeded = self._active = 0

    def now(self) -> float:
        """The manager's clock, in seconds."""
        return _clock.now(self.clock)

    def timeout(self, seconds: float) -> _Scope:
        """A scope limited to seconds from entry (TypeError for a
        non-number, ValueError for NaN or a negative value; 0 raises
        DeadlineExceededError on entry)."""
        return _Scope(self, _clock.seconds_arg(seconds, "seconds"), None)

    def deadline(self, at: float) -> _Scope:
        """A scope that ends at `at` seconds of the manager's clock."""
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise TypeError("at must be a number, not %s" % type(at).__name__)
        if math.isnan(at):
            raise ValueError("at must not be NaN")
        return _Scope(self, math.inf, float(at))

    def _innermost(self):
        for s in reversed(_scopes.get()):
            if s.manager is self:
                return s
        return None

    def current_deadline(self) -> float:
        """The effective deadline of this task's innermost scope (on the
        manager's clock); inf outside any scope."""
        s = self._innermost()
        return s.deadline if s is not None else math.inf

    def remaining(self) -> float:
        """Seconds left in this task's innermost scope; inf outside."""
        s = self._innermost()
        return s.remaining() if s is not None else math.inf

    def check(self) -> None:
        """Raise DeadlineExceededError when this task's innermost scope's
        deadline has passed (for work that polls its limit)."""
        s = self._innermost()
        if s is not None and self.now() >= s.deadline:
            raise DeadlineExceededError("%s: deadline exceeded" % self.name)

    def depth(self) -> int:
        """How many scopes of this manager the current task is inside."""
        return sum(1 for s in _scopes.get() if s.manager is self)

    def get_metrics(self) -> Dict[str, Any]:
        return {"name": self.name, "entered": self._entered,
                "left": self._left, "timed_out": self._timed_out,
                "deadline_exceeded": self._deadline_exceeded,
                "active": self._active}

    def __repr__(self):
        return "TimeoutManager(%r)" % self.name
