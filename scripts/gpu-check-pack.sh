#!/usr/bin/env bash
# gpu-check-pack.sh fills .gpucheck/ (ignored through .git/info/exclude) with
# what scripts/gpu-check.sh runs on a machine with a real GPU, which has no
# Go and no network: everything is built here.
#
#   scripts/gpu-check-pack.sh [DIR]      default DIR: <repo>/.gpucheck
#
# DIR then holds:
#   bundle.tar.xz    llamacpp-vulkan.test and llamacpp-cpu.test (the llama
#                    plugin's tests, `go test -c -tags llamacpp`, linked
#                    against the Vulkan and the CPU libraries of the engines
#                    cache), vulkan/ (the libraries of
#                    @node-llama-cpp/linux-x64-vulkan, scripts/engines/llama-gpu.sh)
#                    and cpu/ (the CPU build's libraries and llama-simple)
#   llama-src.tar.xz llama.cpp's source as the engine scripts fetch it
#                    (node-llama-cpp's git bundle), without models/, docs/,
#                    tools/, examples/ and .git: gpu-check.sh builds ggml-cuda
#                    from it
#   debs/            Debian's libvulkan1 (the Vulkan loader), for a machine
#                    without one
#   MANIFEST         what was packed, from which commit, with sizes
#
# The repository with DIR must stay under the 64 MiB the device machine takes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=setup-env.sh
. scripts/setup-env.sh
# shellcheck source=engines/common.sh
. scripts/engines/common.sh

out=${1:-$root/.gpucheck}
out=$(mkdir -p "$out" && cd "$out" && pwd)
case "$out" in
"$root"/*)
	exclude=$(git rev-parse --git-path info/exclude)
	rel=/${out#"$root"/}/
	mkdir -p "$(dirname "$exclude")"
	grep -qxF "$rel" "$exclude" 2>/dev/null || echo "$rel" >>"$exclude"
	;;
esac

STOKER_GPU=vulkan bash scripts/install-engines.sh
cpu=$(cat "$STOKER_ENGINES_DIR/current/llama")
vulkan=$(cat "$STOKER_ENGINES_DIR/current/llama-vulkan")
[ -d "$cpu/lib" ] || engines_die "the CPU llama build is '$cpu', not a prefix of the engines cache"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/pack/cpu" "$stage/pack/vulkan"

build_test() { # GPU OUTPUT
	(
		unset CGO_CFLAGS CGO_CXXFLAGS CGO_LDFLAGS PKG_CONFIG_PATH
		export STOKER_GPU=$1
		# shellcheck source=engines/env.sh
		. scripts/engines/env.sh
		go test -c -tags llamacpp -o "$2" ./llamacpp-plugin
	)
}
engines_log "gpu-check-pack: building the llama plugin's tests (cpu, vulkan)"
build_test cpu "$stage/pack/llamacpp-cpu.test"
build_test vulkan "$stage/pack/llamacpp-vulkan.test"
cp -a "$cpu"/lib/*.so* "$stage/pack/cpu/"
cp -L "$cpu/bin/llama-simple" "$stage/pack/cpu/"
cp -a "$vulkan"/lib/*.so "$stage/pack/vulkan/"
engines_log "gpu-check-pack: compressing the bundle"
tar -C "$stage/pack" -cf - . | xz -T0 -6 >"$out/bundle.tar.xz"

engines_log "gpu-check-pack: llama.cpp's source"
engines_llama_source "$stage/src"
commit=$(git -C "$stage/src" rev-parse HEAD)
tar -C "$stage/src" --exclude=./.git --exclude=./models --exclude=./docs --exclude=./tools \
	--exclude=./examples --exclude=./media --exclude=./gguf-py --exclude=./app --exclude=./benches \
	-cf - . | xz -T0 -6 >"$out/llama-src.tar.xz"

rm -rf "$out/debs"
mkdir -p "$out/debs"
(cd "$out/debs" && apt-get download libvulkan1 >/dev/null 2>&1) ||
	engines_log "gpu-check-pack: apt-get download libvulkan1 failed; the GPU machine must have a Vulkan loader"

{
	echo "packed $(date -u +%FT%TZ) from stoker $(git rev-parse --short HEAD)"
	echo "llama.cpp $LLAMA_VERSION ($commit), CPU build $cpu, Vulkan build $vulkan"
	(cd "$out" && find . -type f -printf '%s %p\n' | sort -k2)
} >"$out/MANIFEST"
cat "$out/MANIFEST"
du -sh "$out"
