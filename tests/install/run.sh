#!/usr/bin/env bash
# Install the build in BUILD into a scratch prefix, then build an outside
# program against it twice: with pkg-config (shared and static) and with
# CMake's find_package(puffinflow). Each program must run and print the
# library's version.
set -eu
build=$1
here=$2
cc=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(ls -d "$work"/prefix/lib*)
export PKG_CONFIG_PATH="$libdir/pkgconfig"

# pkg-config, shared library
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -o "$work/via_pc" \
    "$here/consumer.c" $(pkg-config --cflags --libs puffinflow)
LD_LIBRARY_PATH="$libdir" "$work/via_pc"

# pkg-config, static library
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -o "$work/via_pc_static" \
    "$here/consumer.c" $(pkg-config --cflags puffinflow) \
    "$libdir/libpuffinflow.a" $(pkg-config --static --libs-only-l puffinflow | sed 's/-lpuffinflow//')
"$work/via_pc_static"

# find_package
cmake -S "$here/cmake_consumer" -B "$work/cmake_build" \
    -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$work/cmake_build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/cmake_build/consumer"
"$work/cmake_build/consumer_static"

# the versioned SONAME
soname=$(objdump -p "$libdir/libpuffinflow.so" | awk '/SONAME/ {print $2}')
case "$soname" in
    libpuffinflow.so.[0-9]*) echo "SONAME $soname" ;;
    *) echo "bad SONAME: '$soname'"; exit 1 ;;
esac
echo "install test passed"
