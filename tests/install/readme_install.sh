#!/usr/bin/env bash
# Follow the README's install section literally: run the commands of the
# block README.md marks with <!-- install: ... --> and <!-- /install -->,
# line by line, from the root of the source, after saving the README's
# first C example as app.c (as the README says to). The run must end with
# the example printing "state: open".
#
#   readme_install.sh SRC
#       As written, as root: installs the Debian packages and the library
#       into /usr/local. For a bare machine or a fresh chroot.
#   readme_install.sh --scratch SRC
#       The CTest test: the same lines, run in a scratch copy of SRC,
#       needing no root and changing nothing outside the copy. Only these
#       lines are changed, everything else runs as written:
#         apt-get update           skipped
#         apt-get install -y P...  each package P must be installed already
#         cmake -S ...             -DPF_BUILD_TESTS=OFF appended (the suite
#                                  is built by the run this test is part of)
#         ldconfig                 the scratch lib folder goes on
#                                  LD_LIBRARY_PATH
#       and DESTDIR (for cmake --install) and PKG_CONFIG_PATH point into
#       the scratch folder.
set -euo pipefail
mode=literal
if [ "${1:-}" = "--scratch" ]; then
    mode=scratch
    shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--scratch] SRC"; exit 2; }
src=$(cd "$1" && pwd)
readme=$src/README.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

block=$(awk '/^<!-- install:/ {on = 1; next}
             /^<!-- \/install -->/ {on = 0}
             on && !/^```/ {print}' "$readme")
[ -n "$block" ] || { echo "no install block in $readme"; exit 1; }
example=$(awk '/^```c$/ {on = 1; next} /^```$/ {if (on) exit} on {print}' \
          "$readme")
[ -n "$example" ] || { echo "no C example in $readme"; exit 1; }

steps=$work/steps.sh
{
    echo 'set -ex'
    if [ "$mode" = scratch ]; then
        cat <<EOF
export DESTDIR='$work/destdir'
export PKG_CONFIG_PATH="\$DESTDIR/usr/local/lib/pkgconfig"
pf_check_installed() {
    for p in "\$@"; do
        case "\$p" in -*) continue ;; esac
        dpkg-query -W -f='\${Status}' "\$p" 2>/dev/null | grep -q "ok installed" ||
            { echo "the README's package \$p is not installed here"; exit 1; }
    done
}
EOF
    fi
    while IFS= read -r line; do
        if [ "$mode" = literal ]; then
            printf '%s\n' "$line"
            continue
        fi
        # shellcheck disable=SC2016 # $DESTDIR is expanded when the steps run
        case "$line" in
            "apt-get update"*) echo ": scratch: skipped: $line" ;;
            "apt-get install"*) echo "pf_check_installed ${line#apt-get install}" ;;
            "cmake -S "*) echo "$line -DPF_BUILD_TESTS=OFF" ;;
            "ldconfig") echo 'export LD_LIBRARY_PATH="$DESTDIR/usr/local/lib"' ;;
            *) printf '%s\n' "$line" ;;
        esac
    done <<<"$block"
} >"$steps"

if [ "$mode" = scratch ]; then
    root=$work/src
    mkdir "$root"
    tar -C "$src" --exclude=./build --exclude=./.git -cf - . |
        tar -C "$root" -xf -
else
    root=$src
    [ -e "$root/app.c" ] && { echo "$root/app.c exists: not overwriting it"; exit 1; }
    trap 'rm -rf "$work" "$root/app.c" "$root/app"' EXIT
fi
printf '%s\n' "$example" >"$root/app.c"

echo "== the README's install section ($mode), from $root"
(cd "$root" && bash "$steps") 2>&1 | tee "$work/log"
grep -q '^state: open$' "$work/log" ||
    { echo "the example did not print 'state: open'"; exit 1; }
echo "readme install test passed"
