"""puffinflow_c: puffinflow's reliability API on the puffinflow C library.

    from puffinflow_c.reliability import CircuitBreaker, CircuitBreakerConfig

or, to run code written for the original unchanged:

    import puffinflow_c
    puffinflow_c.install()      # before importing puffinflow
    from puffinflow.core.reliability import CircuitBreaker
"""

import importlib.util
import sys
import types

from . import reliability

__all__ = ["reliability", "install", "uninstall"]

# The original's module paths that install() points at reliability.
_NAMES = ("puffinflow.core.reliability", "puffinflow.reliability")
_SUBMODULES = ("circuit_breaker", "bulkhead", "leak_detector")
_saved = {}


def install():
    """Make puffinflow.core.reliability (and its circuit_breaker,
    bulkhead and leak_detector submodules, and puffinflow.reliability)
    resolve to puffinflow_c.reliability through sys.modules.

    Call it before anything imports puffinflow: the original's own modules
    then bind these classes too. When the original is not installed, empty
    puffinflow and puffinflow.core packages are put in its place so the
    imports still resolve. Returns the module. Calling it twice is a no-op.
    """
    have_original = (sys.modules.get("puffinflow") is not None
                     or importlib.util.find_spec("puffinflow") is not None)
    if not have_original:
        for pkg in ("puffinflow", "puffinflow.core"):
            if pkg not in sys.modules:
                m = types.ModuleType(pkg, "placeholder made by "
                                     "puffinflow_c.install()")
                m.__path__ = []
                _saved.setdefault(pkg, None)
                sys.modules[pkg] = m
        sys.modules["puffinflow"].core = sys.modules["puffinflow.core"]
    targets = list(_NAMES)
    for n in _NAMES:
        targets += ["%s.%s" % (n, s) for s in _SUBMODULES]
    for name in targets:
        if sys.modules.get(name) is not reliability:
            _saved.setdefault(name, sys.modules.get(name))
            sys.modules[name] = reliability
        parent, _, leaf = name.rpartition(".")
        pm = sys.modules.get(parent)
        if pm is not None and pm is not reliability:
            setattr(pm, leaf, reliability)
    return reliability


def uninstall():
    """Undo install(): the sys.modules entries it replaced come back."""
    for name, old in _saved.items():
        if old is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = old
    _saved.clear()
