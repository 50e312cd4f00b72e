#!/usr/bin/env bash
# llama.sh installs llama.cpp (libllama + the ggml it ships) into
# $STOKER_ENGINES_DIR/llama.cpp-$LLAMA_VERSION, or registers a system build
# that pkg-config already finds. Idempotent: a complete prefix is reused.
#
# Source: the npm package node-llama-cpp@$LLAMA_NPM_VERSION carries llama.cpp as
# a git bundle (llama/gitRelease.bundle). The build is library-only, shared,
# with a portable x86-64 baseline (AVX2/FMA/F16C/BMI2, never -march=native),
# no curl/openssl, no server; plus llama-simple compiled from the same source
# for the parity test and speed comparison. Rpaths point at the prefix so
# nothing needs LD_LIBRARY_PATH.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

if engines_system_pkg llama; then
	engines_log "llama: using system build at $(pkg-config --variable=prefix llama)"
	engines_register llama system
	exit 0
fi

stamp="$LLAMA_PREFIX/.stoker-complete"
if [ -f "$stamp" ]; then
	engines_log "llama: reusing $LLAMA_PREFIX"
	engines_register llama "$LLAMA_PREFIX"
	exit 0
fi

engines_apt_install cmake pkg-config git g++ make
command -v npm >/dev/null || engines_die "npm not found (needed to fetch node-llama-cpp)"

# The build tree persists until a successful install, so a failed or
# interrupted run resumes where it stopped (a full build is long on small
# shared machines).
work="$STOKER_ENGINES_DIR/.build/llama.cpp-$LLAMA_VERSION"
mkdir -p "$work"

if [ ! -f "$work/src/.stoker-cloned" ]; then
	engines_llama_source "$work/src"
	touch "$work/src/.stoker-cloned"
fi
tag=$LLAMA_VERSION
commit=$(git -C "$work/src" rev-parse HEAD)
engines_log "llama: llama.cpp $tag ($commit)"

cmake -S "$work/src" -B "$work/build" -G "Unix Makefiles" \
	-DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_INSTALL_PREFIX="$LLAMA_PREFIX" \
	-DCMAKE_INSTALL_LIBDIR=lib \
	-DCMAKE_INSTALL_RPATH="$LLAMA_PREFIX/lib" \
	-DBUILD_SHARED_LIBS=ON \
	-DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMIT="${commit:0:8}" \
	-DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
	-DLLAMA_OPENSSL=OFF -DLLAMA_ALL_WARNINGS=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_BACKEND_DL=OFF \
	>"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; engines_die "llama: cmake configure failed"; }

engines_log "llama: building with $STOKER_BUILD_JOBS jobs (about 100 s on 2 cores)"
cmake --build "$work/build" -j "$STOKER_BUILD_JOBS" >"$work/build.log" 2>&1 ||
	{ tail -n 30 "$work/build.log" >&2; engines_die "llama: build failed"; }

# Install into a staging root first and move it into place, so an interrupted
# run never leaves a prefix that looks complete.
rm -rf "$work/stage"
DESTDIR="$work/stage" cmake --install "$work/build" >"$work/install.log" 2>&1 ||
	{ tail -n 30 "$work/install.log" >&2; engines_die "llama: install failed"; }
stage="$work/stage$LLAMA_PREFIX"

# llama-simple: llama.cpp's own minimal greedy generator, from the same source,
# linked against the installed library (reference for parity and speed).
mkdir -p "$stage/bin"
g++ -O2 -std=c++17 "$work/src/examples/simple/simple.cpp" -o "$stage/bin/llama-simple" \
	-I"$stage/include" -L"$stage/lib" -lllama -lggml -lggml-base -Wl,-rpath,"$LLAMA_PREFIX/lib" -Wl,-rpath-link,"$stage/lib" -pthread ||
	engines_die "llama: building llama-simple failed"

# ggml.pc lets the whisper.cpp build (and anyone else) link this ggml.
if [ ! -f "$stage/lib/pkgconfig/ggml.pc" ]; then
	cat >"$stage/lib/pkgconfig/ggml.pc" <<PC
prefix=$LLAMA_PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: ggml
Description: ggml tensor library (built with llama.cpp $LLAMA_VERSION)
Version: ${LLAMA_VERSION#v}
Libs: -L\${libdir} -lggml -lggml-base
Cflags: -I\${includedir}
PC
fi
printf 'llama.cpp %s %s\nnode-llama-cpp %s\n' "$LLAMA_VERSION" "$commit" "$LLAMA_NPM_VERSION" >"$stage/.stoker-complete"

rm -rf "$LLAMA_PREFIX"
mkdir -p "$(dirname "$LLAMA_PREFIX")"
mv "$stage" "$LLAMA_PREFIX"
rm -rf "$work"
engines_register llama "$LLAMA_PREFIX"
engines_log "llama: installed $LLAMA_PREFIX"
