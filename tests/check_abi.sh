#!/usr/bin/env bash
# The public ABI of libpuffinflow against the committed baseline of this
# version (abi/libpuffinflow-MAJOR.MINOR.abi, written by
# scripts/abi-baseline.sh with libabigail's abidw).
#
# Passes when the library is the baseline's ABI or a compatible growth of it
# (new functions, fields appended at the end of a struct that nothing embeds
# by value).
# Fails on an incompatible change (a removed or changed function, a field
# moved, a type changed), or when there is no baseline for this version: an
# incompatible change must come with a new version and a new baseline, on
# purpose, recorded in CHANGELOG.md.
#
# Usage: tests/check_abi.sh SOURCE_DIR LIBRARY.so
set -uo pipefail
src=$1
lib=$2

if ! command -v abidiff >/dev/null 2>&1; then
    echo "abi: abidiff not found (Debian: abigail-tools)" >&2
    exit 1
fi
major=$(sed -n 's/^#define PF_VERSION_MAJOR \([0-9]*\).*/\1/p' \
        "$src/include/puffinflow/version.h")
minor=$(sed -n 's/^#define PF_VERSION_MINOR \([0-9]*\).*/\1/p' \
        "$src/include/puffinflow/version.h")
baseline="$src/abi/libpuffinflow-$major.$minor.abi"
if [ ! -f "$baseline" ]; then
    echo "abi: no baseline for version $major.$minor ($baseline)." >&2
    echo "abi: after a deliberate ABI change, bump the version, run" >&2
    echo "abi: scripts/abi-baseline.sh and say so in CHANGELOG.md." >&2
    exit 1
fi
report=$(abidiff --no-show-locs "$baseline" "$lib")
rc=$?
echo "$report"
# abidiff's exit status is a bit set: 1 error, 2 usage error, 4 an ABI
# change, 8 an incompatible ABI change.
if [ $((rc & 3)) -ne 0 ]; then
    echo "abi: abidiff failed (status $rc)" >&2
    exit 1
fi
# abidiff counts a shifted field as a compatible change (status 4): the
# library's rule is stricter. Only appended fields, new enumerators at the
# end and new functions are compatible; a field that moves, a type or value
# that changes, anything removed is not.
breaking='offset changed|data members? deletion|type changed from|'
breaking+='value changed from|name changed|\[D\]|Removed [1-9]'
if [ $((rc & 8)) -ne 0 ] || grep -Eq "$breaking" <<<"$report"; then
    echo "abi: INCOMPATIBLE change against version $major.$minor's baseline." >&2
    echo "abi: keep the ABI (append fields, add functions), or bump the" >&2
    echo "abi: version, run scripts/abi-baseline.sh and record it in" >&2
    echo "abi: CHANGELOG.md." >&2
    exit 1
fi
if [ $((rc & 4)) -ne 0 ]; then
    echo "abi: compatible changes against $major.$minor's baseline (above)"
fi
echo "abi: ok (version $major.$minor)"
