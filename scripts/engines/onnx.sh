#!/usr/bin/env bash
# onnx.sh installs ONNX Runtime's shared library for the onnx plugin
# (onnx-plugin, LaMa object removal) into
# $STOKER_ENGINES_DIR/onnxruntime-<version>, keyed by the version, and
# registers it as engine "onnxruntime". Nothing is compiled: the library is
# the Linux x64 build that the npm registry's onnxruntime-node ships
# (bin/napi-v*/linux/x64/libonnxruntime.so.1). The package has no C
# headers; none are needed, because the plugin's binding
# (github.com/yalue/onnxruntime_go) carries the C API header and opens the
# library at run time. Idempotent: a complete prefix is reused.
#
# The prefix holds lib/libonnxruntime.so.<version> (with the .so.1 and .so
# names), the package's LICENSE and ThirdPartyNotices, and
# lib/pkgconfig/onnxruntime.pc whose `libfile` variable is the library's
# path: what the plugin opens (see docs/onnx.md for the order it looks in).
#
# Where the library comes from, first that works:
#
#   1. a farm's own build (say, with the CUDA execution provider):
#      STOKER_ONNX_PREFIX (a prefix with lib/libonnxruntime.so), or one
#      that `pkg-config libonnxruntime` or `pkg-config onnxruntime` finds
#      outside the cache (ONNX Runtime's own builds install
#      libonnxruntime.pc);
#   2. onnxruntime-node@$ONNX_VERSION from the npm registry.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

ONNX_VERSION=1.30.0
ONNX_PREFIX="$STOKER_ENGINES_DIR/onnxruntime-$ONNX_VERSION"

# onnx_pc PREFIX LIBFILE VERSION writes PREFIX/lib/pkgconfig/onnxruntime.pc.
onnx_pc() {
	mkdir -p "$1/lib/pkgconfig"
	cat >"$1/lib/pkgconfig/onnxruntime.pc.tmp" <<PC
prefix=$1
libdir=\${prefix}/lib
libfile=$2

Name: onnxruntime
Description: ONNX Runtime shared library (opened at run time by stoker's onnx plugin)
Version: $3
Libs: -L\${libdir} -lonnxruntime
PC
	mv -f "$1/lib/pkgconfig/onnxruntime.pc.tmp" "$1/lib/pkgconfig/onnxruntime.pc"
}

# 1. A farm's own build.
if [ -n "${STOKER_ONNX_PREFIX:-}" ]; then
	lib=
	for d in lib lib64; do
		for f in "$STOKER_ONNX_PREFIX/$d"/libonnxruntime.so*; do
			[ -z "$lib" ] && [ -e "$f" ] && lib=$f
		done
	done
	[ -n "$lib" ] || engines_die "onnx: STOKER_ONNX_PREFIX=$STOKER_ONNX_PREFIX has no lib/libonnxruntime.so"
	[ -f "$STOKER_ONNX_PREFIX/lib/pkgconfig/onnxruntime.pc" ] || onnx_pc "$STOKER_ONNX_PREFIX" "$lib" unknown
	engines_log "onnx: using the build at $STOKER_ONNX_PREFIX"
	engines_register onnxruntime "$STOKER_ONNX_PREFIX"
	exit 0
fi
for pc in libonnxruntime onnxruntime; do
	if engines_system_pkg "$pc"; then
		engines_log "onnx: using system build at $(pkg-config --variable=prefix "$pc") ($pc.pc)"
		engines_register onnxruntime system
		exit 0
	fi
done

stamp="$ONNX_PREFIX/.stoker-complete"
if [ -f "$stamp" ]; then
	engines_log "onnx: reusing $ONNX_PREFIX"
	engines_register onnxruntime "$ONNX_PREFIX"
	exit 0
fi

[ "$(uname -m)" = x86_64 ] || engines_die "onnx: onnxruntime-node's library is installed for Linux x64 only (set STOKER_ONNX_PREFIX to a build for $(uname -m))"
command -v npm >/dev/null || engines_die "npm not found (needed to fetch onnxruntime-node)"
work="$STOKER_ENGINES_DIR/.build/onnxruntime-$ONNX_VERSION"
rm -rf "$work"
engines_log "onnx: fetching onnxruntime-node@$ONNX_VERSION"
engines_npm_fetch "onnxruntime-node@$ONNX_VERSION" "$work"
src=$(find "$work/package/bin" -path '*/linux/x64/libonnxruntime.so.*' -type f | sort | tail -n1)
[ -n "$src" ] || engines_die "onnx: onnxruntime-node@$ONNX_VERSION has no bin/napi-v*/linux/x64/libonnxruntime.so.*"

rm -rf "$ONNX_PREFIX"
mkdir -p "$ONNX_PREFIX/lib" "$ONNX_PREFIX/share/doc"
install -m 0644 "$src" "$ONNX_PREFIX/lib/libonnxruntime.so.$ONNX_VERSION"
ln -sf "libonnxruntime.so.$ONNX_VERSION" "$ONNX_PREFIX/lib/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.1" "$ONNX_PREFIX/lib/libonnxruntime.so"
for f in LICENSE ThirdPartyNotices.txt; do
	if [ -f "$work/package/$f" ]; then install -m 0644 "$work/package/$f" "$ONNX_PREFIX/share/doc/"; fi
done
onnx_pc "$ONNX_PREFIX" "$ONNX_PREFIX/lib/libonnxruntime.so.$ONNX_VERSION" "$ONNX_VERSION"
rm -rf "$work"
touch "$stamp"
engines_log "onnx: installed $ONNX_PREFIX"
engines_register onnxruntime "$ONNX_PREFIX"
