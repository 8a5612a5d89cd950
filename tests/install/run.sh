#!/usr/bin/env bash
# Installs the build tree given as $1 into a scratch prefix, then builds
# examples/hello.c out of tree against that copy two ways, with
# pkg-config and with CMake's find_package (shared and static), runs each
# and checks its answer.  Also checks what the shared library exports:
# the API and nothing internal.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "$build/install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name squirrel.pc)
lib=$(dirname "$(find "$prefix" -name 'libsquirrel.so' | head -1)")
[ -n "$pc" ] && [ -n "$lib" ] || { echo "install: squirrel.pc or libsquirrel.so missing" >&2; exit 1; }
for h in runtime.h sync.h check.h metrics.h list.h; do
    [ -f "$prefix/include/squirrel/$h" ] || { echo "install: squirrel/$h missing" >&2; exit 1; }
done

expect="sum of squares: 285"
check() { # program...
    local out
    out=$("$@")
    [ "$out" = "$expect" ] || { echo "$1 printed '$out', expected '$expect'" >&2; exit 1; }
}

# pkg-config, shared (the default) and static.
export PKG_CONFIG_PATH=$(dirname "$pc")
cc=${CC:-cc}
# shellcheck disable=SC2046
$cc -o "$work/pc_shared" "$src/examples/hello.c" $(pkg-config --cflags --libs squirrel) -Wl,-rpath,"$lib"
check "$work/pc_shared"
# shellcheck disable=SC2046
$cc -static-libgcc -o "$work/pc_static" "$src/examples/hello.c" $(pkg-config --cflags squirrel) \
    "$lib/libsquirrel.a" $(pkg-config --static --libs-only-other squirrel)
check "$work/pc_static"
# (ldd's output read whole: grep -q stopping early would make ldd die of
# SIGPIPE, which pipefail counts as a failure.)
deps=$(ldd "$work/pc_static")
grep -q libsquirrel <<<"$deps" && { echo "pc_static links libsquirrel.so" >&2; exit 1; }

# find_package.
cmake -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
      -DHELLO_SOURCE="$src/examples/hello.c" -DCMAKE_C_COMPILER="$cc" \
      -DCMAKE_BUILD_RPATH="$lib" >/dev/null
cmake --build "$work/consumer" >/dev/null
check "$work/consumer/hello_shared"
check "$work/consumer/hello_static"
deps=$(ldd "$work/consumer/hello_shared")
grep -q "$lib/libsquirrel.so" <<<"$deps" ||
    { echo "hello_shared does not use the installed libsquirrel.so" >&2; exit 1; }

# The shared library exports the API (sq_ names) and no internal name.
internal=$(nm -D --defined-only "$lib/libsquirrel.so" | awk '{print $3}' | grep -c '^sq__' || true)
api=$(nm -D --defined-only "$lib/libsquirrel.so" | awk '{print $3}' | grep -c '^sq_[a-z]' || true)
[ "$internal" = 0 ] || { echo "libsquirrel.so exports $internal internal (sq__) symbols" >&2; exit 1; }
[ "$api" -gt 100 ] || { echo "libsquirrel.so exports only $api API symbols" >&2; exit 1; }
echo "install test: pkg-config and find_package builds run, $api API symbols exported"
