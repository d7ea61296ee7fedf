#!/usr/bin/env bash
# Every public header compiles on its own, as strict C11 and as C++11, with
# warnings as errors: headers include what they need and nothing GNU-only.
set -eu
include_dir=$1
cc=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
for h in "$include_dir"/puffinflow/*.h; do
    name=$(basename "$h")
    printf '#include "puffinflow/%s"\nint pf_header_check_%s;\n' "$name" "$n" >"$work/t.c"
    "$cc" -std=c11 -Wall -Wextra -Werror -pedantic -I"$include_dir" \
        -fsyntax-only "$work/t.c"
    if command -v c++ >/dev/null; then
        cp "$work/t.c" "$work/t.cpp"
        c++ -std=c++11 -Wall -Wextra -Werror -pedantic -I"$include_dir" \
            -fsyntax-only "$work/t.cpp"
    fi
    n=$((n + 1))
done
echo "$n headers compile alone as C11 and C++11"
