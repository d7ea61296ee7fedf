"""Swap-in: a selection of the original puffinflow's own reliability unit
tests (tests/original_tests.txt) runs against this module, installed in
its place with puffinflow_c.install().

The original is not part of this repository: its test files are read at
test time from a git repository of it named by PUFFINFLOW_ORIGINAL_REPO
(CMake passes PF_PYTHON_ORIGINAL_REPO) into a temporary directory. Without
one, the test is skipped. The core suite does not depend on it."""

import os
import subprocess
import sys

import pytest

import puffinflow_c

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("PUFFINFLOW_ORIGINAL_REPO", "")
FILES = ("test_circuit_breaker", "test_bulkhead", "test_leak_detector",
         "test_init")


def selection():
    with open(os.path.join(HERE, "original_tests.txt")) as f:
        return [ln.strip() for ln in f
                if ln.strip() and not ln.startswith("#")]


@pytest.mark.skipif(not REPO or not os.path.isdir(REPO),
                    reason="no git repository of the original puffinflow "
                           "(set PUFFINFLOW_ORIGINAL_REPO)")
def test_originals_unit_tests_pass_on_this_module(tmp_path):
    for name in FILES:
        src = subprocess.run(
            ["git", "-C", REPO, "show",
             "HEAD:tests/unit/reliability/%s.py" % name],
            check=True, capture_output=True).stdout
        (tmp_path / (name + ".py")).write_bytes(src)
    (tmp_path / "conftest.py").write_text(
        "import puffinflow_c\npuffinflow_c.install()\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    tests = selection()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
        + tests, cwd=tmp_path, capture_output=True, text=True,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                 PYTHONPATH=os.pathsep.join(
                     [os.path.dirname(os.path.dirname(
                         os.path.abspath(puffinflow_c.__file__)))]
                     + os.environ.get("PYTHONPATH", "").split(os.pathsep))))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert ("%d passed" % len(tests)) in r.stdout, r.stdout[-2000:]
