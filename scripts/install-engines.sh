#!/usr/bin/env bash
# install-engines.sh provides the C/C++ engines the plugins link through cgo.
# Idempotent: installed prefixes are reused; run it before every build/test.
#
# Layout (the contract between the engine scripts; see docs/engines.md):
#
#   $STOKER_ENGINES_DIR            default ~/.cache/stoker/engines
#     llama.cpp-<tag>/             llama.cpp + the ggml it ships (scripts/engines/llama.sh)
#       include/ lib/ lib/pkgconfig/{llama,ggml}.pc bin/llama-simple
#     whisper.cpp-<version>/       libwhisper built against the ggml above
#                                  (scripts/engines/whisper.sh, when present)
#     stable-diffusion.cpp-<commit>/ libstable-diffusion with the same ggml
#                                  sources compiled in, and sd-cli
#                                  (scripts/engines/sdcpp.sh, when present)
#     (espeak-ng and the Python espeak-tts plugin's runtime and stub compiler
#     come from Debian: scripts/engines/espeak.sh, which registers nothing)
#     llama.cpp-<tag>-<gpu>/       with STOKER_GPU=vulkan|cuda: the same llama.cpp
#                                  with a GPU backend, beside the CPU build
#                                  (scripts/engines/llama-gpu.sh)
#     current/<engine>             one line: the prefix in use, or "system" when
#                                  pkg-config found a system/farm build instead
#                                  (current/llama-<gpu> for the GPU builds)
#
# STOKER_GPU=cpu (the default), vulkan or cuda selects the llama plugin's
# libraries: the CPU build is always installed (whisper.cpp and
# stable-diffusion.cpp build on its ggml); vulkan or cuda adds the GPU build,
# which `STOKER_GPU=<gpu> . scripts/engines/env.sh` then links the llama
# plugin against (docs/engines.md, GPU builds).
#
# Engines run in order: llama first, because whisper builds against the ggml
# the llama prefix holds (and stable-diffusion.cpp on its sources). Each engine script is run with STOKER_ENGINES_DIR,
# STOKER_BUILD_JOBS and STOKER_GGML_PREFIX (the prefix whose lib/pkgconfig has
# ggml.pc; empty when llama.cpp is a system build, in which case
# `pkg-config ggml` or the system's ggml applies) in its environment, and
# registers itself with engines_register from scripts/engines/common.sh.
#
# Afterwards `source scripts/engines/env.sh` exports PKG_CONFIG_PATH and the
# CGO flags for every registered engine.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=engines/common.sh
. "$here/engines/common.sh"

mkdir -p "$STOKER_ENGINES_DIR"
# One installer at a time per cache (build and test scripts may race).
exec 9>"$STOKER_ENGINES_DIR/.lock"
flock 9

"$here/engines/llama.sh"

STOKER_GGML_PREFIX=
if [ "$(cat "$STOKER_ENGINES_DIR/current/llama")" != system ]; then
	STOKER_GGML_PREFIX=$LLAMA_PREFIX
fi
export STOKER_GGML_PREFIX STOKER_BUILD_JOBS

bash "$here/engines/llama-gpu.sh"

if [ -f "$here/engines/whisper.sh" ]; then
	bash "$here/engines/whisper.sh"
fi

if [ -f "$here/engines/sdcpp.sh" ]; then
	bash "$here/engines/sdcpp.sh"
fi

if [ -f "$here/engines/espeak.sh" ]; then
	bash "$here/engines/espeak.sh"
fi

if [ -f "$here/engines/onnx.sh" ]; then
	bash "$here/engines/onnx.sh"
fi
