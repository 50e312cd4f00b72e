#!/usr/bin/env bash
# whisper.sh installs whisper.cpp (libwhisper, its header, a whisper.pc and
# the whisper-cli/whisper-bench reference programs) into
# $STOKER_ENGINES_DIR/whisper.cpp-$WHISPER_VERSION, built against the ggml of
# the llama.cpp prefix (STOKER_GGML_PREFIX, set by scripts/install-engines.sh)
# so that only one ggml exists. A system libwhisper that `pkg-config whisper`
# finds is registered instead. Idempotent: a complete prefix built against the
# same ggml is reused; a different ggml (a llama.cpp upgrade) rebuilds it.
#
# Source: the npm package @fugood/whisper.node@$WHISPER_NPM_VERSION ships
# whisper.cpp's source tree (without its cmake folder). libwhisper is one
# translation unit (src/whisper.cpp), so it is compiled directly: about 10 s.
# whisper-cli (examples/cli) is the reference program the parity test and
# the speed benchmark compare the plugin against; it reads audio through
# miniaudio, so the parity test feeds it 16 kHz mono 16-bit WAV, which
# miniaudio and the plugin decode to identical floats.
#
# Run standalone it needs STOKER_GGML_PREFIX (or a ggml that pkg-config finds):
#   STOKER_GGML_PREFIX=~/.cache/stoker/engines/llama.cpp-v0.4.0 scripts/engines/whisper.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

WHISPER_NPM_VERSION=1.1.3
WHISPER_VERSION=1.9.3
WHISPER_PREFIX="$STOKER_ENGINES_DIR/whisper.cpp-$WHISPER_VERSION"

if engines_system_pkg whisper; then
	engines_log "whisper: using system build at $(pkg-config --variable=prefix whisper)"
	engines_register whisper system
	exit 0
fi

# The ggml to build against: the llama prefix's, else a system one.
ggml_pc_path=
if [ -n "${STOKER_GGML_PREFIX:-}" ]; then
	ggml_pc_path="$STOKER_GGML_PREFIX/lib/pkgconfig"
	[ -f "$ggml_pc_path/ggml.pc" ] || engines_die "whisper: no ggml.pc in $ggml_pc_path"
fi
ggml_pc() { PKG_CONFIG_PATH="$ggml_pc_path${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" pkg-config "$@" ggml; }
command -v pkg-config >/dev/null || engines_apt_install pkg-config
ggml_pc --exists || engines_die "whisper: no ggml found (set STOKER_GGML_PREFIX or install ggml with a ggml.pc)"
ggml_cflags=$(ggml_pc --cflags)
ggml_libs=$(ggml_pc --libs)
ggml_libdir=$(ggml_pc --variable=libdir)
# The identity of the ggml build: its prefix plus the llama stamp (commit).
ggml_id="ggml $(ggml_pc --variable=prefix) $(cat "${STOKER_GGML_PREFIX:-/nonexistent}/.stoker-complete" 2>/dev/null | head -n1)"

stamp="$WHISPER_PREFIX/.stoker-complete"
if [ -f "$stamp" ] && grep -qxF "$ggml_id" "$stamp"; then
	engines_log "whisper: reusing $WHISPER_PREFIX"
	engines_register whisper "$WHISPER_PREFIX"
	exit 0
fi

command -v g++ >/dev/null || engines_apt_install g++
command -v npm >/dev/null || engines_die "npm not found (needed to fetch @fugood/whisper.node)"

mkdir -p "$STOKER_ENGINES_DIR"
work=$(mktemp -d "$STOKER_ENGINES_DIR/.whisper-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

engines_log "whisper: fetching @fugood/whisper.node@$WHISPER_NPM_VERSION"
engines_npm_fetch "@fugood/whisper.node@$WHISPER_NPM_VERSION" "$work/npm"
src="$work/npm/package/whisper.cpp"
[ -f "$src/src/whisper.cpp" ] || engines_die "whisper: package has no whisper.cpp/src/whisper.cpp"
ver=$(sed -n 's/^set(WHISPER_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$src/CMakeLists.txt" | paste -sd.)
[ "$ver" = "$WHISPER_VERSION" ] || engines_die "whisper: package carries whisper.cpp $ver, expected $WHISPER_VERSION"

stage="$work/stage"
mkdir -p "$stage/lib/pkgconfig" "$stage/include" "$stage/bin"
# Same baseline as the llama build: portable x86-64 with the ggml headers;
# whisper.cpp itself has no SIMD code (ggml does the maths).
cxxflags=(-O3 -DNDEBUG -std=c++17 -fPIC -pthread $ggml_cflags -I"$src/include" -I"$src/src")
rpath="-Wl,-rpath,$WHISPER_PREFIX/lib -Wl,-rpath,$ggml_libdir"

engines_log "whisper: compiling libwhisper $WHISPER_VERSION against $(ggml_pc --variable=prefix)"
# shellcheck disable=SC2086
g++ "${cxxflags[@]}" -DWHISPER_SHARED -DWHISPER_BUILD -DWHISPER_VERSION="\"$WHISPER_VERSION\"" \
	-shared -Wl,-soname,libwhisper.so.1 -o "$stage/lib/libwhisper.so.$WHISPER_VERSION" \
	"$src/src/whisper.cpp" $ggml_libs $rpath -Wl,--no-undefined ||
	engines_die "whisper: compiling libwhisper failed"
ln -sf "libwhisper.so.$WHISPER_VERSION" "$stage/lib/libwhisper.so.1"
ln -sf libwhisper.so.1 "$stage/lib/libwhisper.so"
cp "$src/include/whisper.h" "$stage/include/"

engines_log "whisper: compiling whisper-cli and whisper-bench (reference programs)"
ex="$src/examples"
# shellcheck disable=SC2086
g++ "${cxxflags[@]}" -I"$ex" -o "$stage/bin/whisper-cli" \
	"$ex/cli/cli.cpp" "$ex/common.cpp" "$ex/common-whisper.cpp" "$ex/grammar-parser.cpp" \
	-L"$stage/lib" -lwhisper $ggml_libs $rpath -ldl ||
	engines_die "whisper: compiling whisper-cli failed"
# shellcheck disable=SC2086
g++ "${cxxflags[@]}" -I"$ex" -o "$stage/bin/whisper-bench" \
	"$ex/bench/bench.cpp" "$ex/common.cpp" \
	-L"$stage/lib" -lwhisper $ggml_libs $rpath ||
	engines_die "whisper: compiling whisper-bench failed"

cat >"$stage/lib/pkgconfig/whisper.pc" <<PC
prefix=$WHISPER_PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include
# whisper.cpp's own CLI built from the same source (parity and speed reference)
cli=\${prefix}/bin/whisper-cli
bench=\${prefix}/bin/whisper-bench

Name: whisper
Description: whisper.cpp speech recognition (built against $(ggml_pc --variable=prefix))
Version: $WHISPER_VERSION
Libs: -L\${libdir} -lwhisper -Wl,-rpath,\${libdir} $ggml_libs -Wl,-rpath,$ggml_libdir
Cflags: -I\${includedir} $ggml_cflags
PC

printf '%s\nwhisper.cpp %s @fugood/whisper.node %s\n' "$ggml_id" "$WHISPER_VERSION" "$WHISPER_NPM_VERSION" >"$stage/.stoker-complete"
rm -rf "$WHISPER_PREFIX"
mv "$stage" "$WHISPER_PREFIX"
engines_register whisper "$WHISPER_PREFIX"
engines_log "whisper: installed $WHISPER_PREFIX"
