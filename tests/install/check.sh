#!/usr/bin/env bash
# Installs the build in BUILD_DIR into a scratch prefix, then builds and
# runs a consumer with find_package(Eventloom) (and its loom_generate())
# and with pkg-config.
# CFLAGS (optional third argument) are the sanitizer flags of a sanitized
# build, which its consumers must be built with too.
set -euo pipefail
build=$1
src=$2
cflags=${3:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
libdir=$(find "$work/prefix" -name 'libloom.so*' -printf '%h\n' | head -n 1)

cmake -S "$src/tests/install/consumer" -B "$work/cmake" \
      -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_C_FLAGS="$cflags" >/dev/null
cmake --build "$work/cmake" >/dev/null
LD_LIBRARY_PATH=$libdir "$work/cmake/consumer" | grep -q '^LOOM_ECONFLICT '
# ping.proto compiled by the installed protoc-gen-loom (loom_generate()).
LD_LIBRARY_PATH=$libdir "$work/cmake/saga_consumer" |
    grep -q '^saga ping.PingPong: 1 step, participant pinger, 1 event$'

export PKG_CONFIG_PATH=$libdir/pkgconfig
# shellcheck disable=SC2046,SC2086
cc -std=c11 $cflags -o "$work/pc" "$src/tests/install/consumer/main.c" \
   $(pkg-config --cflags --libs loom)
LD_LIBRARY_PATH=$libdir "$work/pc" | grep -q '^LOOM_ECONFLICT '
echo "install: find_package(Eventloom), loom_generate() and pkg-config loom work"
