"""Builds the puffinflow_c package for `pip install .`: the Python files
of integrations/python/puffinflow_c, and its extension _core built by this
checkout's CMake (the target puffinflow_c_core, linked against the static
library), for the interpreter running the build. Needs cmake, a C compiler
and the interpreter's headers (Debian: cmake gcc python3-dev); nothing is
downloaded. PF_CMAKE_ARGS adds arguments to the CMake configure step."""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def version():
    text = open(os.path.join(ROOT, "include", "puffinflow",
                             "version.h")).read()
    parts = [re.search(r"#define PF_VERSION_%s (\d+)" % k, text).group(1)
             for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        os.makedirs(build, exist_ok=True)
        configure = [
            "cmake", "-S", ROOT, "-B", build,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DPF_WITH_PYTHON=ON",
            "-DPython3_EXECUTABLE=" + sys.executable,
        ]
        for part in ("PF_BUILD_TESTS", "PF_BUILD_EXAMPLES", "PF_BUILD_BENCH",
                     "PF_BUILD_TOOLS", "PF_WITH_HTTP", "PF_WITH_CURL"):
            configure.append("-D%s=OFF" % part)
        configure += shlex.split(os.environ.get("PF_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build, "--target",
                               "puffinflow_c_core", "-j",
                               os.environ.get("PF_BUILD_JOBS", "2")])
        built = glob.glob(os.path.join(build, "integrations", "python", "pkg",
                                       "puffinflow_c", "_core*.so"))
        if len(built) != 1:
            raise RuntimeError("the CMake build made %r" % (built,))
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(
    version=version(),
    packages=["puffinflow_c"],
    package_dir={"puffinflow_c": "integrations/python/puffinflow_c"},
    ext_modules=[Extension("puffinflow_c._core", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
