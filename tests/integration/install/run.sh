#!/bin/sh
# Installs the build into a temporary prefix, then builds a host program
# against it twice (pkg-config, CMake find_package) and runs both.
set -eu
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" LD_LIBRARY_PATH="$tmp/prefix/lib"
# shellcheck disable=SC2046
cc -o "$tmp/host-pc" "$src/tests/integration/install/host.c" $(pkg-config --cflags --libs onearm)
"$tmp/host-pc" "$src/examples/game-server/app.lua" "$tmp/var1"
test -s "$tmp/var1/state.oas"  # oa_service_snapshot wrote the state
cmake -S "$src/tests/integration/install" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
"$tmp/cmake/host" "$src/examples/game-server/app.lua" "$tmp/var2"
echo "install: pkg-config and CMake hosts built and ran"
