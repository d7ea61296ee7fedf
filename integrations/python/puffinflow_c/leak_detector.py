"""ResourceLeakDetector: the library's leak detector
(include/puffinflow/leak.h) with the original's methods and records.

It tracks allocations (track_allocation / track_release, as the original's
states report them; an allocation held longer than leak_threshold_seconds
is a leak) and, with start_monitoring(), watches this process from a
thread of its own: memory against memory_threshold, open file descriptors
against file_handle_threshold, TCP and UDP sockets against
connection_threshold, and growth trends. Times are on the detector's
clock (the library's monotonic clock, or a ManualClock)."""

import collections
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from . import _clock, _core

__all__ = ["ResourceLeak", "ResourceAllocation", "ResourceLeakDetector",
           "leak_detector"]


@dataclass
class ResourceLeak:
    state_name: str
    agent_name: str
    resources: Dict[str, float]
    allocated_at: float
    held_for_seconds: float
    leak_threshold_seconds: float


@dataclass
class ResourceAllocation:
    state_name: str
    agent_name: str
    resources: Dict[str, float]
    allocated_at: float


# Resource names the library's detector keeps amounts of (others are kept
# in the Python records only).
_AMOUNTS = {"cpu": 0, "cpu_units": 0, "memory": 1, "memory_mb": 1,
            "io": 2, "io_weight": 2, "network": 3, "network_weight": 3,
            "gpu": 4, "gpu_units": 4}


class ResourceLeakDetector(_core._Leak):
    """ResourceLeakDetector(leak_threshold_seconds=300.0, *,
    check_interval=60.0, memory_threshold=0.8, file_handle_threshold=1000,
    connection_threshold=100, name="default", leak_history=100,
    clock=None, sample=None)

    The original's methods: track_allocation(state_name, agent_name,
    resources), track_release(state_name, agent_name), detect_leaks(),
    get_metrics(), clear_leak_history(), and the attributes leak_threshold,
    allocations, detected_leaks; the reference's start_monitoring() and
    `await stop_monitoring()`; and check(), the library's full report.
    sample: a function returning a dict of process figures (rss_bytes,
    memory_limit_bytes, open_fds, tcp, udp, ...) used by check() instead
    of /proc, for tests."""

    def __init__(self, leak_threshold_seconds: float = 300.0, *,
                 check_interval: float = 60.0,
                 memory_threshold: float = 0.8,
                 file_handle_threshold: int = 1000,
                 connection_threshold: int = 100,
                 name: str = "default", leak_history: int = 100,
                 clock: Optional[_clock.ManualClock] = None,
                 sample: Optional[Callable[[], Dict[str, int]]] = None):
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        super().__init__(name, check_interval, memory_threshold,
                         file_handle_threshold, connection_threshold,
                         leak_threshold_seconds, leak_history,
                         _clock.check_clock(clock), sample)
        self.leak_threshold = float(leak_threshold_seconds)
        self.check_interval = float(check_interval)
        self.memory_threshold = float(memory_threshold)
        self.file_handle_threshold = file_handle_threshold
        self.connection_threshold = connection_threshold
        self.clock = clock
        self.allocations: Dict[str, ResourceAllocation] = {}
        self._max_leaks_history = leak_history
        # Resources of leaks whose allocation is gone, for detected_leaks.
        self._gone = collections.OrderedDict()

    @property
    def name(self) -> str:
        return self._name()

    def _now(self):
        return _clock.now(self.clock)

    def track_allocation(self, state_name: str, agent_name: str,
                         resources: Dict[str, float]) -> None:
        """agent_name's state_name holds resources from now on (a second
        allocation of the pair replaces the first)."""
        if not isinstance(resources, dict):
            raise TypeError("resources must be a dict, not %s"
                            % type(resources).__name__)
        amounts = [0.0] * 5
        for k, v in resources.items():
            i = _AMOUNTS.get(k)
            if i is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError("resource %r must be a number" % (k,))
            amounts[i] += float(v)
        key = "%s:%s" % (agent_name, state_name)
        self._keep(self.allocations.get(key))
        self._track(agent_name, state_name, *amounts)
        self.allocations[key] = ResourceAllocation(
            state_name=state_name, agent_name=agent_name,
            resources=dict(resources), allocated_at=self._now())

    def track_release(self, state_name: str, agent_name: str) -> None:
        """agent_name's state_name gave its resources back (nothing held:
        a no-op, as in the original)."""
        self._release(agent_name, state_name)
        self._keep(self.allocations.pop("%s:%s" % (agent_name, state_name),
                                        None))

    def _keep(self, alloc):
        # An allocation going away after it became a leak: keep its
        # resources for detected_leaks.
        if alloc is None:
            return
        if self._now() - alloc.allocated_at > self.leak_threshold:
            self._gone[(alloc.agent_name, alloc.state_name,
                        alloc.allocated_at)] = dict(alloc.resources)
            while len(self._gone) > max(self._max_leaks_history, 1):
                self._gone.popitem(last=False)

    def _resources(self, agent, state, at):
        a = self.allocations.get("%s:%s" % (agent, state))
        if a is not None and abs(a.allocated_at - at) < 1e-6:
            return dict(a.resources)
        return dict(self._gone.get((agent, state, at), {}))

    def _leak(self, t) -> ResourceLeak:
        agent, state, at, held, threshold, _instance = t
        return ResourceLeak(state_name=state, agent_name=agent,
                            resources=self._resources(agent, state, at),
                            allocated_at=at, held_for_seconds=held,
                            leak_threshold_seconds=threshold)

    def check(self) -> Dict[str, Any]:
        """Check now: the library's report (leaks as ResourceLeak,
        leaks_by_agent, sample, sample_error, alerting, memory_slope,
        fd_slope); new leaks join detected_leaks."""
        r = self._check()
        r["leaks"] = [self._leak(t) for t in r["leaks"]]
        return r

    def detect_leaks(self) -> List[ResourceLeak]:
        """The allocations held longer than leak_threshold now."""
        return self.check()["leaks"]

    @property
    def detected_leaks(self) -> List[ResourceLeak]:
        """The leaks detected so far, oldest first (the last
        leak_history of them)."""
        return [self._leak(t) for t in self._history()]

    def get_metrics(self) -> Dict[str, Any]:
        """The original's keys (total_allocations, current_leaks,
        total_detected_leaks, leak_threshold_seconds,
        oldest_allocation_age, leaks_by_agent) and the library's."""
        report = self._check()
        m = self._raw_metrics()
        m["leaks_by_agent"] = report["leaks_by_agent"]
        return m

    def __repr__(self):
        return "ResourceLeakDetector(%r, leak_threshold_seconds=%g)" % (
            self.name, self.leak_threshold)


# The original's global instance.
leak_detector = ResourceLeakDetector()
