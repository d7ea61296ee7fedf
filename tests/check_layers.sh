#!/usr/bin/env bash
# The layers of DESIGN.md, checked on the source tree:
#   0 base      src/base      and the base public headers
#   1 patterns  src/patterns  and the pattern public headers
#   2 runtime   src/runtime   and the runtime public headers
#   3 integrations/*          (may include any public header, no private one)
# A file may include only headers of its own layer or a lower one, and the
# quoted includes of the core may form no circle.
#
# Usage: tests/check_layers.sh [--print] [SOURCE_DIR]
#   --print  also print the include graph, layer by layer
# Exits 1 and names each offending include when a rule is broken.
set -euo pipefail

print=0
if [ "${1:-}" = "--print" ]; then
    print=1
    shift
fi
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

# The layer of each public header (include/puffinflow/NAME).
public_layer() {
    case "$1" in
    version.h | export.h | types.h | error.h | alloc.h | clock.h | deadline.h | shared.h)
        echo 0 ;;
    breaker.h | sync.h | bulkhead.h | ratelimit.h | retry.h | timeout.h | health.h | \
        degrade.h | leak.h | registry.h)
        echo 1 ;;
    executor.h | context.h | agent.h | subprocess.h)
        echo 2 ;;
    puffinflow.h)
        echo 2 ;;
    *)
        echo "?" ;;
    esac
}

layer_of_dir() {
    case "$1" in
    src/base) echo 0 ;;
    src/patterns) echo 1 ;;
    src/runtime) echo 2 ;;
    *) echo 3 ;;
    esac
}

layer_name=(base patterns runtime integrations)
errors=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

fail() {
    echo "layers: $*" >&2
    errors=$((errors + 1))
}

# check_file FILE LAYER: every quoted include of FILE.
check_file() {
    local file=$1 layer=$2 dir inc target tl d
    dir=$(dirname "$file")
    while IFS= read -r inc; do
        if [[ $inc == puffinflow/* ]]; then
            if [ -f "include/$inc" ]; then
                tl=$(public_layer "${inc#puffinflow/}")
                if [ "$tl" = "?" ]; then
                    fail "$file: public header $inc has no layer in $0"
                    continue
                fi
                target="include/$inc"
            else
                # An integration's own public header.
                continue
            fi
        elif [ -f "$dir/$inc" ]; then
            target="$dir/$inc"
            tl=$layer
            if [ "$layer" -le 2 ]; then
                tl=$(layer_of_dir "$dir")
            fi
        else
            target=""
            for d in src/base src/patterns src/runtime; do
                if [ -f "$d/$inc" ]; then
                    target="$d/$inc"
                    tl=$(layer_of_dir "$d")
                    break
                fi
            done
            if [ -z "$target" ]; then
                continue
            fi
            if [ "$layer" -eq 3 ]; then
                fail "$file includes private header $target"
                continue
            fi
        fi
        if [ "$tl" -gt "$layer" ]; then
            fail "$file (${layer_name[$layer]}) includes $target" \
                 "(${layer_name[$tl]}): a lower layer reaches up"
        fi
        echo "$layer $tl $file $target" >>"$edges"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
}

for f in include/puffinflow/*.h; do
    l=$(public_layer "$(basename "$f")")
    if [ "$l" = "?" ]; then
        fail "$f has no layer in $0"
        continue
    fi
    check_file "$f" "$l"
done
for d in src/base src/patterns src/runtime; do
    for f in "$d"/*.c "$d"/*.h; do
        [ -e "$f" ] && check_file "$f" "$(layer_of_dir "$d")"
    done
done
if ls src/*.c src/*.h >/dev/null 2>&1; then
    fail "files directly in src/: every source belongs to a layer folder"
fi
for f in $(find integrations -name '*.c' -o -name '*.h' 2>/dev/null); do
    check_file "$f" 3
done

# Circles: tsort reports a cycle in the include graph of the core.
if ! awk '{ print $3, $4 }' "$edges" | tsort >/dev/null 2>"$edges.err"; then
    fail "include circle: $(grep -v '^tsort: -:' "$edges.err" | tr '\n' ' ')"
fi
rm -f "$edges.err"

if [ "$print" = 1 ]; then
    for l in 0 1 2 3; do
        echo "== layer $l: ${layer_name[$l]}"
        awk -v want="$l" '$1 == want { printf "  %-40s -> %s (%s)\n", $3, $4, $2 }' \
            "$edges" | sort -u
    done
fi

if [ "$errors" -ne 0 ]; then
    echo "layers: $errors problem(s)" >&2
    exit 1
fi
echo "layers: ok"
