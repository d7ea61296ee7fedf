#!/usr/bin/env bash
# Fails if the shared library exports a symbol whose name does not start
# with pf_ (internal pf__ helpers must stay hidden too).
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' |
      grep -v -E '^pf_[a-z0-9]' | grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' || true)
internal=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -E '^pf__' || true)
count=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c -E '^pf_' || true)
if [ -n "$bad$internal" ]; then
    echo "symbols exported that should not be:"
    echo "$bad" "$internal"
    exit 1
fi
echo "$count pf_ symbols exported, nothing else"
