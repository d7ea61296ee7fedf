"""Shared fixtures: a manual clock, and a minimal agent harness for the
reference's examples (Agent, Context, state: just enough to run a state)."""

import pytest

from puffinflow_c.reliability import ManualClock


@pytest.fixture
def clock():
    return ManualClock()


class Context:
    """An attribute bag with get(), as the reference's examples use it."""

    def get(self, key, default=None):
        return getattr(self, key, default)


class Agent:
    def __init__(self):
        pass

    async def run_state(self, name, ctx=None):
        ctx = ctx if ctx is not None else Context()
        await getattr(self, name)(ctx)
        return ctx

    async def cleanup(self):
        pass

    async def check_system_health(self):
        # The reference's DegradableAgent calls this without defining it:
        # the harness asks the agent's GracefulDegradation.
        return await self.degradation.check_system_health()


def state(fn):
    fn.is_state = True
    return fn


def harness():
    """The names the reference's examples import from puffinflow."""
    return {"Agent": Agent, "Context": Context, "state": state}
