"""puffinflow_c.install(): `puffinflow.core.reliability` resolves to this
module; the reference's examples then run as written, on a minimal agent
harness (conftest.py) standing in for puffinflow's Agent runtime."""

import asyncio
import importlib
import sys

import pytest

import puffinflow_c
from puffinflow_c import reliability

from conftest import run_example


def test_install_resolves_the_originals_module_paths(installed):
    m = importlib.import_module("puffinflow.core.reliability")
    assert m is reliability
    from puffinflow.core.reliability import CircuitBreaker
    from puffinflow.core.reliability.circuit_breaker import CircuitBreakerConfig
    from puffinflow.core.reliability.bulkhead import Bulkhead
    from puffinflow.reliability import BulkheadConfig
    assert CircuitBreaker is reliability.CircuitBreaker
    assert CircuitBreakerConfig is reliability.CircuitBreakerConfig
    assert (Bulkhead, BulkheadConfig) == (reliability.Bulkhead,
                                          reliability.BulkheadConfig)
    assert puffinflow_c.install() is reliability  # twice: a no-op


def test_uninstall_restores():
    assert "puffinflow.core.reliability" not in sys.modules
    puffinflow_c.install()
    puffinflow_c.uninstall()
    assert "puffinflow.core.reliability" not in sys.modules
    assert "puffinflow" not in sys.modules


# ---- the reference's examples, verbatim -----------------------------------

CIRCUIT_BREAKER_PATTERN = '''
from puffinflow import Agent, Context, state
from puffinflow.core.reliability import CircuitBreaker, CircuitBreakerConfig

class ResilientAgent(Agent):
    def __init__(self):
        super().__init__()

        # Configure circuit breaker for external API calls
        self.api_circuit_breaker = CircuitBreaker(
            CircuitBreakerConfig(
                failure_threshold=5,
                recovery_timeout=30,
                expected_exception=ConnectionError
            )
        )

    @state
    async def call_external_api(self, ctx: Context) -> None:
        """Call external API with circuit breaker protection."""
        try:
            async with self.api_circuit_breaker:
                response = await external_api_call()
                ctx.api_response = response
        except CircuitBreakerOpenError:
            # Circuit breaker is open, use fallback
            ctx.api_response = await get_cached_response()
'''

ADVANCED = '''
from puffinflow.core.reliability import CircuitBreaker, CircuitBreakerConfig

# Custom circuit breaker with advanced configuration
config = CircuitBreakerConfig(
    failure_threshold=10,           # Open after 10 failures
    recovery_timeout=60,            # Try to recover after 60 seconds
    expected_exception=(            # Exceptions that count as failures
        ConnectionError,
        TimeoutError,
        HTTPError
    ),
    success_threshold=3,            # Need 3 successes to close
    timeout=30,                     # Individual call timeout
    fallback_function=get_fallback_data
)

circuit_breaker = CircuitBreaker(config)

class AdvancedResilientAgent(Agent):
    @state
    async def protected_operation(self, ctx: Context) -> None:
        async with circuit_breaker:
            ctx.result = await risky_operation()
'''

BULKHEAD_PATTERN = '''
from puffinflow.core.reliability import Bulkhead, BulkheadConfig

class IsolatedAgent(Agent):
    def __init__(self):
        super().__init__()

        # Create separate bulkheads for different operations
        self.cpu_bulkhead = Bulkhead(
            BulkheadConfig(
                max_concurrent_calls=4,
                max_wait_duration=10,
                name="cpu_intensive_operations"
            )
        )

        self.io_bulkhead = Bulkhead(
            BulkheadConfig(
                max_concurrent_calls=20,
                max_wait_duration=5,
                name="io_operations"
            )
        )

    @state
    async def cpu_intensive_task(self, ctx: Context) -> None:
        """CPU intensive task isolated in its own bulkhead."""
        async with self.cpu_bulkhead:
            ctx.cpu_result = await heavy_computation()

    @state
    async def io_intensive_task(self, ctx: Context) -> None:
        """I/O intensive task isolated in its own bulkhead."""
        async with self.io_bulkhead:
            ctx.io_result = await database_operation()
'''

RETRY = '''
import asyncio
from puffinflow.core.reliability import CircuitBreaker, exponential_backoff

class RetryableAgent(Agent):
    def __init__(self):
        super().__init__()
        self.circuit_breaker = CircuitBreaker(
            CircuitBreakerConfig(failure_threshold=3)
        )

    @state
    async def resilient_operation_with_retry(self, ctx: Context) -> None:
        """Operation with retry logic and circuit breaker."""
        max_retries = 3
        base_delay = 1

        for attempt in range(max_retries + 1):
            try:
                async with self.circuit_breaker:
                    ctx.result = await unreliable_operation()
                    return  # Success, exit retry loop

            except CircuitBreakerOpenError:
                # Circuit breaker is open, don't retry
                ctx.result = await get_fallback_result()
                return

            except TransientError as e:
                if attempt == max_retries:
                    # Last attempt failed, re-raise
                    raise

                # Calculate delay with exponential backoff
                delay = base_delay * (2 ** attempt)
                await asyncio.sleep(delay)
'''


def names(**kw):
    # What the examples leave undefined (run_example adds the harness).
    d = dict(CircuitBreakerOpenError=reliability.CircuitBreakerOpenError,
             CircuitBreakerConfig=reliability.CircuitBreakerConfig)
    d.update(kw)
    return d


async def test_resilient_agent_example(installed):
    calls = {"n": 0}

    async def external_api_call():
        calls["n"] += 1
        raise ConnectionError("down")

    async def get_cached_response():
        return "cached"

    ns = run_example(CIRCUIT_BREAKER_PATTERN, **names(
        external_api_call=external_api_call,
        get_cached_response=get_cached_response))
    agent = ns["ResilientAgent"]()
    for _ in range(5):
        with pytest.raises(ConnectionError):
            await agent.run_state("call_external_api")
    ctx = await agent.run_state("call_external_api")
    assert ctx.api_response == "cached" and calls["n"] == 5
    assert agent.api_circuit_breaker.state.value == "open"


async def test_advanced_example(installed):
    class HTTPError(Exception):
        pass

    async def risky_operation():
        return 42

    ns = run_example(ADVANCED, **names(HTTPError=HTTPError,
                                     get_fallback_data=lambda: "fb",
                                     risky_operation=risky_operation))
    ctx = await ns["AdvancedResilientAgent"]().run_state(
        "protected_operation")
    assert ctx.result == 42
    cfg = ns["circuit_breaker"].config
    assert cfg.failure_threshold == 10 and cfg.success_threshold == 3


async def test_isolated_agent_example(installed):
    inside = peak = 0

    async def heavy_computation():
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0)
        inside -= 1
        return "cpu"

    async def database_operation():
        return "io"

    ns = run_example(BULKHEAD_PATTERN, **names(
        heavy_computation=heavy_computation,
        database_operation=database_operation))
    agent = ns["IsolatedAgent"]()
    ctxs = await asyncio.gather(*(agent.run_state("cpu_intensive_task")
                                  for _ in range(40)))
    assert all(c.cpu_result == "cpu" for c in ctxs) and peak == 4
    assert (await agent.run_state("io_intensive_task")).io_result == "io"
    assert agent.cpu_bulkhead.get_metrics()["name"] == \
        "cpu_intensive_operations"


async def test_retryable_agent_example(installed, monkeypatch):
    class TransientError(Exception):
        pass

    attempts = {"n": 0}

    async def unreliable_operation():
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise TransientError()
        return "done"

    slept = []

    async def fake_sleep(d):
        slept.append(d)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    ns = run_example(RETRY, **names(TransientError=TransientError,
                                  unreliable_operation=unreliable_operation,
                                  get_fallback_result=None))
    ctx = await ns["RetryableAgent"]().run_state(
        "resilient_operation_with_retry")
    assert ctx.result == "done" and slept == [1, 2]
