"""The reference's remaining examples, verbatim, after install(): resource
leak detection, the combined patterns, health checks, graceful degradation
and timeouts, on the minimal agent harness of conftest.py. What an example
leaves undefined (its services, helper methods) is supplied here."""

import asyncio
import datetime
import sys
import types

import pytest

from puffinflow_c import reliability

from conftest import Context, run_example


LEAK = '''
from puffinflow.core.reliability import ResourceLeakDetector

class LeakAwareAgent(Agent):
    def __init__(self):
        super().__init__()
        self.leak_detector = ResourceLeakDetector(
            check_interval=60,          # Check every 60 seconds
            memory_threshold=0.8,       # Alert if memory usage > 80%
            file_handle_threshold=1000, # Alert if file handles > 1000
            connection_threshold=100    # Alert if connections > 100
        )

        # Start monitoring
        self.leak_detector.start_monitoring()

    @state
    async def resource_using_task(self, ctx: Context) -> None:
        """Task that uses resources with leak detection."""
        # Open file with proper cleanup
        async with aiofiles.open('data.txt', 'r') as file:
            data = await file.read()

        # Database connection with proper cleanup
        async with database.connection() as conn:
            result = await conn.execute(query)

        ctx.result = result

    async def cleanup(self):
        """Cleanup method called on agent shutdown."""
        await self.leak_detector.stop_monitoring()
        await super().cleanup()
'''


class _AsyncCM:
    def __init__(self, value):
        self.value = value

    async def __aenter__(self):
        return self.value

    async def __aexit__(self, *exc):
        return False


class _File:
    async def read(self):
        return "data"


class _Conn:
    async def execute(self, q):
        return "rows for " + q


async def test_leak_aware_agent_example(installed):
    aiofiles = types.SimpleNamespace(open=lambda *a: _AsyncCM(_File()))
    database = types.SimpleNamespace(connection=lambda: _AsyncCM(_Conn()))
    ns = run_example(LEAK, aiofiles=aiofiles, database=database,
                     query="select 1")
    agent = ns["LeakAwareAgent"]()
    assert agent.leak_detector.is_monitoring()
    assert agent.leak_detector.file_handle_threshold == 1000
    ctx = await agent.run_state("resource_using_task")
    assert ctx.result == "rows for select 1"
    await agent.cleanup()
    assert not agent.leak_detector.is_monitoring()


COMBINED = '''
from puffinflow.core.reliability import (
    CircuitBreaker, CircuitBreakerConfig,
    Bulkhead, BulkheadConfig,
    ResourceLeakDetector
)

class HighlyResilientAgent(Agent):
    def __init__(self):
        super().__init__()

        # Circuit breaker for external dependencies
        self.external_service_cb = CircuitBreaker(
            CircuitBreakerConfig(
                failure_threshold=5,
                recovery_timeout=30,
                expected_exception=ServiceUnavailableError
            )
        )

        # Bulkhead for resource isolation
        self.processing_bulkhead = Bulkhead(
            BulkheadConfig(
                max_concurrent_calls=10,
                max_wait_duration=15
            )
        )

        # Resource leak detection
        self.leak_detector = ResourceLeakDetector()
        self.leak_detector.start_monitoring()

    @state
    async def resilient_processing(self, ctx: Context) -> None:
        """Highly resilient processing with multiple patterns."""
        try:
            # Use bulkhead for resource isolation
            async with self.processing_bulkhead:
                # Use circuit breaker for external calls
                async with self.external_service_cb:
                    external_data = await fetch_external_data()

                # Process data locally
                processed_data = await process_data(external_data)
                ctx.result = processed_data

        except BulkheadFullError:
            # Bulkhead is full, queue for later processing
            await self.queue_for_retry(ctx)

        except CircuitBreakerOpenError:
            # Circuit breaker is open, use cached data
            ctx.result = await get_cached_data()
'''


async def test_highly_resilient_agent_example(installed):
    class ServiceUnavailableError(Exception):
        pass

    up = {"ok": True}

    async def fetch_external_data():
        if not up["ok"]:
            raise ServiceUnavailableError()
        return 21

    async def process_data(x):
        return x * 2

    async def get_cached_data():
        return "cached"

    ns = run_example(COMBINED,
                     ServiceUnavailableError=ServiceUnavailableError,
                     fetch_external_data=fetch_external_data,
                     process_data=process_data,
                     get_cached_data=get_cached_data,
                     BulkheadFullError=reliability.BulkheadFullError,
                     CircuitBreakerOpenError=reliability
                     .CircuitBreakerOpenError)
    agent = ns["HighlyResilientAgent"]()
    try:
        assert (await agent.run_state("resilient_processing")).result == 42
        up["ok"] = False
        for _ in range(5):
            with pytest.raises(ServiceUnavailableError):
                await agent.run_state("resilient_processing")
        ctx = await agent.run_state("resilient_processing")
        assert ctx.result == "cached"
        assert agent.external_service_cb.state is reliability.CircuitState.OPEN
        assert agent.processing_bulkhead.get_metrics()["active_tasks"] == 0
    finally:
        await agent.leak_detector.stop_monitoring()


HEALTH = '''
from puffinflow.core.reliability import HealthChecker, HealthCheck

class MonitoredAgent(Agent):
    def __init__(self):
        super().__init__()
        self.health_checker = HealthChecker()

        # Register health checks
        self.health_checker.add_check("database", self.check_database)
        self.health_checker.add_check("external_api", self.check_external_api)
        self.health_checker.add_check("memory_usage", self.check_memory)

    async def check_database(self) -> HealthCheck:
        """Check database connectivity."""
        try:
            await database.ping()
            return HealthCheck(
                name="database",
                status="healthy",
                message="Database connection is active"
            )
        except Exception as e:
            return HealthCheck(
                name="database",
                status="unhealthy",
                message=f"Database check failed: {e}"
            )

    async def check_external_api(self) -> HealthCheck:
        """Check external API availability."""
        try:
            response = await external_api.health()
            return HealthCheck(
                name="external_api",
                status="healthy" if response.status == 200 else "degraded",
                message=f"API status: {response.status}"
            )
        except Exception as e:
            return HealthCheck(
                name="external_api",
                status="unhealthy",
                message=f"API check failed: {e}"
            )

    async def check_memory(self) -> HealthCheck:
        """Check memory usage."""
        import psutil
        memory_percent = psutil.virtual_memory().percent

        if memory_percent > 90:
            status = "unhealthy"
        elif memory_percent > 80:
            status = "degraded"
        else:
            status = "healthy"

        return HealthCheck(
            name="memory_usage",
            status=status,
            message=f"Memory usage: {memory_percent}%"
        )

    @state
    async def monitored_processing(self, ctx: Context) -> None:
        """Processing with health monitoring."""
        # Check health before processing
        health_status = await self.health_checker.check_all()

        if not health_status.is_healthy():
            raise HealthCheckFailedError(
                f"Health checks failed: {health_status.failed_checks}"
            )

        # Proceed with processing
        ctx.result = await process_data()
'''


async def test_monitored_agent_example(installed, monkeypatch):
    db = {"up": True}
    api = {"status": 200}
    mem = {"percent": 50.0}

    async def ping():
        if not db["up"]:
            raise ConnectionError("refused")

    async def health():
        return types.SimpleNamespace(status=api["status"])

    psutil = types.ModuleType("psutil")  # not a dependency: a stand-in
    psutil.virtual_memory = lambda: types.SimpleNamespace(
        percent=mem["percent"])
    monkeypatch.setitem(sys.modules, "psutil", psutil)

    async def process_data():
        return "processed"

    ns = run_example(HEALTH,
                     database=types.SimpleNamespace(ping=ping),
                     external_api=types.SimpleNamespace(health=health),
                     process_data=process_data,
                     HealthCheckFailedError=reliability
                     .HealthCheckFailedError)
    agent = ns["MonitoredAgent"]()
    assert (await agent.run_state("monitored_processing")).result == \
        "processed"
    api["status"] = 503   # degraded still serves
    mem["percent"] = 85.0
    assert (await agent.run_state("monitored_processing")).result == \
        "processed"
    report = agent.health_checker.last_report
    assert report.status == "degraded"
    assert sorted(report.degraded_checks) == ["external_api", "memory_usage"]
    db["up"] = False
    with pytest.raises(reliability.HealthCheckFailedError,
                       match=r"\['database'\]"):
        await agent.run_state("monitored_processing")
    assert "refused" in agent.health_checker.last_report.checks[
        "database"].message


DEGRADATION = '''
from puffinflow.core.reliability import GracefulDegradation

class DegradableAgent(Agent):
    def __init__(self):
        super().__init__()
        self.degradation = GracefulDegradation()

    @state
    async def adaptive_processing(self, ctx: Context) -> None:
        """Processing that adapts based on system health."""
        system_health = await self.check_system_health()

        if system_health.cpu_usage > 90:
            # High CPU usage - use simplified processing
            ctx.result = await self.simple_processing(ctx.input_data)

        elif system_health.memory_usage > 85:
            # High memory usage - process in smaller batches
            ctx.result = await self.batch_processing(ctx.input_data)

        elif not system_health.external_services_available:
            # External services down - use cached data
            ctx.result = await self.offline_processing(ctx.input_data)

        else:
            # Normal processing
            ctx.result = await self.full_processing(ctx.input_data)
'''


async def test_degradable_agent_example(installed):
    ns = run_example(DEGRADATION)

    class Agent(ns["DegradableAgent"]):
        # The processing methods the example leaves to the reader.
        async def simple_processing(self, d):
            return "simple"

        async def batch_processing(self, d):
            return "batch"

        async def offline_processing(self, d):
            return "offline"

        async def full_processing(self, d):
            return "full"

    agent = Agent()
    ctx = Context()
    ctx.input_data = [1, 2]
    # On this machine's real figures: some branch runs.
    await agent.run_state("adaptive_processing", ctx)
    assert ctx.result in ("simple", "batch", "offline", "full")

    figures = {"v": (10.0, 20.0, True)}
    agent.degradation = reliability.GracefulDegradation(
        source=lambda: figures["v"])
    for v, want in [((95.0, 20.0, True), "simple"),
                    ((10.0, 90.0, True), "batch"),
                    ((10.0, 20.0, False), "offline"),
                    ((10.0, 20.0, True), "full")]:
        figures["v"] = v
        await agent.run_state("adaptive_processing", ctx)
        assert ctx.result == want


TIMEOUTS = '''
import asyncio
from puffinflow.core.reliability import TimeoutManager

class TimeoutAwareAgent(Agent):
    def __init__(self):
        super().__init__()
        self.timeout_manager = TimeoutManager()

    @state
    async def time_bounded_operation(self, ctx: Context) -> None:
        """Operation with strict time bounds."""
        try:
            # Set operation timeout
            async with self.timeout_manager.timeout(30):  # 30 seconds max
                ctx.result = await long_running_operation()

        except asyncio.TimeoutError:
            # Handle timeout gracefully
            ctx.result = await get_partial_result()
            ctx.timeout_occurred = True

    @state
    async def deadline_aware_processing(self, ctx: Context) -> None:
        """Processing that respects deadlines."""
        deadline = ctx.get('deadline')
        if deadline:
            remaining_time = (deadline - datetime.utcnow()).total_seconds()

            if remaining_time <= 0:
                raise DeadlineExceededError("Processing deadline exceeded")

            # Adjust processing based on remaining time
            if remaining_time < 10:
                ctx.result = await quick_processing(ctx.input_data)
            else:
                ctx.result = await full_processing(ctx.input_data)
'''


async def test_timeout_aware_agent_example(installed, clock):
    started = asyncio.Event()

    async def long_running_operation():
        started.set()
        await asyncio.Event().wait()  # never done by itself

    async def get_partial_result():
        return "partial"

    async def quick_processing(d):
        return "quick"

    async def full_processing(d):
        return "full"

    ns = run_example(TIMEOUTS, long_running_operation=long_running_operation,
                     get_partial_result=get_partial_result,
                     quick_processing=quick_processing,
                     full_processing=full_processing,
                     datetime=datetime.datetime,
                     DeadlineExceededError=reliability.DeadlineExceededError)
    agent = ns["TimeoutAwareAgent"]()
    # The manager's clock, injected: 30 s pass without sleeping.
    agent.timeout_manager = reliability.TimeoutManager(clock=clock)
    run = asyncio.ensure_future(agent.run_state("time_bounded_operation"))
    await started.wait()
    clock.advance(29.9)
    await asyncio.sleep(0)
    assert not run.done()
    clock.advance(0.1)
    ctx = await run
    assert ctx.result == "partial" and ctx.timeout_occurred
    assert agent.timeout_manager.get_metrics()["timed_out"] == 1

    now = datetime.datetime.utcnow()
    for deadline, want in [(now + datetime.timedelta(hours=1), "full"),
                           (now + datetime.timedelta(seconds=5), "quick")]:
        ctx = Context()
        ctx.deadline, ctx.input_data = deadline, None
        assert (await agent.run_state("deadline_aware_processing",
                                      ctx)).result == want
    ctx = Context()
    ctx.deadline = now - datetime.timedelta(seconds=1)
    with pytest.raises(reliability.DeadlineExceededError):
        await agent.run_state("deadline_aware_processing", ctx)


def test_install_resolves_the_new_names(installed):
    from puffinflow.core.reliability import (  # noqa: F401
        DeadlineExceededError, GracefulDegradation, HealthCheck,
        HealthChecker, ResourceLeakDetector, TimeoutManager)
    from puffinflow.core.reliability.leak_detector import (
        ResourceAllocation, ResourceLeak, leak_detector)
    assert ResourceLeak is reliability.ResourceLeak
    assert isinstance(leak_detector, reliability.ResourceLeakDetector)
    assert ResourceAllocation is reliability.ResourceAllocation
