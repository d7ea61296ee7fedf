#!/usr/bin/env bash
# The README's first C example compiles against the library and runs.
set -eu
readme=$1
include_dir=$2
lib=$3
cc=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk '/^```c$/ {on = 1; next} /^```$/ {if (on) exit} on {print}' "$readme" >"$work/readme.c"
[ -s "$work/readme.c" ] || { echo "no C example found in $readme"; exit 1; }
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -I"$include_dir" \
    -o "$work/readme" "$work/readme.c" "$lib" -pthread -lm
"$work/readme"
