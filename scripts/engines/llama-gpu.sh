#!/usr/bin/env bash
# llama-gpu.sh provides llama.cpp $LLAMA_VERSION with a GPU backend for the
# llama plugin: STOKER_GPU=vulkan or STOKER_GPU=cuda (install-engines.sh runs
# it after llama.sh, whose CPU build stays: whisper.cpp and
# stable-diffusion.cpp build on it, and its llama-simple is the reference the
# GPU build's tokens are compared with).
#
# Source, in this order:
#   1. STOKER_LLAMA_GPU_PREFIX: a farm's own build of llama.cpp $LLAMA_VERSION
#      (for example with -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90); it must
#      hold lib/pkgconfig/llama.pc, and is registered as it is.
#   2. The npm registry's @node-llama-cpp/linux-x64-<gpu>@$LLAMA_NPM_VERSION:
#      the same llama.cpp release prebuilt by node-llama-cpp with ggml's
#      backends as loadable modules (GGML_BACKEND_DL): libllama.<gpu>.<tag>.so,
#      libggml.<gpu>.<tag>.so (the backend registry), libggml-base.so,
#      libggml-<gpu>.so and one libggml-cpu-<variant>.so per x86-64 level
#      (ggml loads the best one the CPU runs). Every library's RUNPATH is
#      $ORIGIN, so the directory can move as a whole.
#
# Building ggml-vulkan from source is not done here: llama.cpp $LLAMA_VERSION's
# ggml-vulkan needs Vulkan headers newer than Debian 12's 1.3.239
# (VK_EXT_layer_settings). The CUDA package's libggml-cuda.so needs the CUDA
# 13 runtime (libcudart.so.13, libcublas.so.13) and the driver's libcuda.so.1
# on the node; where they are missing ggml cannot load it and the plugin runs
# on the package's CPU backend (and says backend cpu).
#
# The prefix, $STOKER_ENGINES_DIR/llama.cpp-$LLAMA_VERSION-<gpu>/, sits beside
# the CPU build and holds:
#   lib/            the package's libraries, plus libllama.so and libggml.so
#                   (link-time names for -lllama -lggml)
#   lib/pkgconfig/llama.pc   with its own -Wl,-rpath (env.sh adds no -L for it,
#                   so that the other plugins keep linking the CPU ggml)
#   include/        the CPU build's headers (the same release)
#   bin/llama-simple  the CPU build's llama-simple (the parity reference)
# and is registered as current/llama-<gpu>. `STOKER_GPU=<gpu> . env.sh` then
# points the llama plugin's build at it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

gpu=${STOKER_GPU:-cpu}
case "$gpu" in
vulkan | cuda) ;;
cpu) exit 0 ;;
*) engines_die "STOKER_GPU=$gpu: want cpu, vulkan or cuda" ;;
esac

# The Vulkan loader (the driver comes with the GPU's: NVIDIA's, or Mesa's
# mesa-vulkan-drivers, whose lavapipe runs on the CPU and is what the tests
# use).
[ "$gpu" = vulkan ] && engines_apt_install libvulkan1

if [ -n "${STOKER_LLAMA_GPU_PREFIX:-}" ]; then
	[ -f "$STOKER_LLAMA_GPU_PREFIX/lib/pkgconfig/llama.pc" ] ||
		engines_die "STOKER_LLAMA_GPU_PREFIX=$STOKER_LLAMA_GPU_PREFIX has no lib/pkgconfig/llama.pc"
	engines_log "llama-$gpu: using the farm's build at $STOKER_LLAMA_GPU_PREFIX"
	engines_register "llama-$gpu" "$STOKER_LLAMA_GPU_PREFIX"
	exit 0
fi

prefix="$STOKER_ENGINES_DIR/llama.cpp-$LLAMA_VERSION-$gpu"
if [ -f "$prefix/.stoker-complete" ]; then
	engines_log "llama-$gpu: reusing $prefix"
	engines_register "llama-$gpu" "$prefix"
	exit 0
fi

[ -f "$LLAMA_PREFIX/include/llama.h" ] ||
	engines_die "llama-$gpu: the CPU build $LLAMA_PREFIX is missing (run scripts/engines/llama.sh first, or set STOKER_LLAMA_GPU_PREFIX to a farm's GPU build)"
command -v npm >/dev/null || engines_die "npm not found (needed to fetch @node-llama-cpp/linux-x64-$gpu)"

pkg="@node-llama-cpp/linux-x64-$gpu@$LLAMA_NPM_VERSION"
work="$STOKER_ENGINES_DIR/.build/llama.cpp-$LLAMA_VERSION-$gpu"
rm -rf "$work"
mkdir -p "$work"
engines_log "llama-$gpu: fetching $pkg"
engines_npm_fetch "$pkg" "$work/npm"
bins="$work/npm/package/bins/linux-x64-$gpu"
release=$(sed -n 's/.*"release": *"\([^"]*\)".*/\1/p' "$bins/_nlcBuildMetadata.json" 2>/dev/null || true)
[ "$release" = "$LLAMA_VERSION" ] || engines_die "llama-$gpu: $pkg is llama.cpp '$release', expected $LLAMA_VERSION"
for f in "libllama.$gpu.$LLAMA_VERSION.so" "libggml.$gpu.$LLAMA_VERSION.so" libggml-base.so "libggml-$gpu.so"; do
	[ -f "$bins/$f" ] || engines_die "llama-$gpu: $pkg has no $f"
done

stage="$work/stage"
mkdir -p "$stage/lib/pkgconfig" "$stage/bin"
# The libraries ggml and llama need; not node-llama-cpp's addon or its
# libllama-common.
cp "$bins"/libllama."$gpu".*.so "$bins"/libggml*.so "$stage/lib/"
ln -s "libllama.$gpu.$LLAMA_VERSION.so" "$stage/lib/libllama.so"
ln -s "libggml.$gpu.$LLAMA_VERSION.so" "$stage/lib/libggml.so"
cp -r "$LLAMA_PREFIX/include" "$stage/include"
ln -s "$LLAMA_PREFIX/bin/llama-simple" "$stage/bin/llama-simple"
cat >"$stage/lib/pkgconfig/llama.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
# the GPU backend these libraries load (lib/libggml-$gpu.so)
gpu=$gpu

Name: llama
Description: llama.cpp $LLAMA_VERSION with ggml-$gpu ($pkg)
Version: ${LLAMA_VERSION#v}
Libs: -L\${libdir} -lllama -Wl,-rpath,\${libdir}
Cflags: -I\${includedir}
PC
printf 'llama.cpp %s %s\n%s\n' "$LLAMA_VERSION" "$gpu" "$pkg" >"$stage/.stoker-complete"

rm -rf "$prefix"
mv "$stage" "$prefix"
rm -rf "$work"
engines_register "llama-$gpu" "$prefix"
engines_log "llama-$gpu: installed $prefix"
