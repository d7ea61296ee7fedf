"""Shared fixtures: a manual clock, and a minimal agent harness for the
reference's examples (Agent, Context, state: just enough to run a state),
with install() in place (`installed`) and a runner for an example's
source (run_example)."""

import sys

import pytest

import puffinflow_c

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


@pytest.fixture
def installed():
    """puffinflow_c.install() with the harness's names on `puffinflow`;
    afterwards uninstall() and the modules that were there put back."""
    had = {k: sys.modules.get(k) for k in list(sys.modules)
           if k == "puffinflow" or k.startswith("puffinflow.")}
    puffinflow_c.install()
    pf = sys.modules["puffinflow"]
    for k, v in harness().items():
        setattr(pf, k, v)
    yield
    puffinflow_c.uninstall()
    assert "puffinflow.core.reliability" not in sys.modules or had
    for k, v in had.items():
        sys.modules[k] = v


def run_example(source, **extra):
    """Runs an example's source with the harness's names and extra (what
    the example leaves undefined); returns its namespace."""
    ns = dict(harness())
    ns.update(extra)
    exec(compile(source, "<reference example>", "exec"), ns)
    return ns
