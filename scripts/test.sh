#!/usr/bin/env bash
# test.sh is the whole check, the same on a laptop and in CI: it installs the
# engines, checks the engine contract (buf lint, generated code fresh),
# formatting and vet, runs every test (engine tests included, with the real
# llama.cpp, whisper.cpp, stable-diffusion.cpp and ONNX Runtime), and runs each fuzz target
# briefly.
#
#   scripts/test.sh                 everything
#   STOKER_FUZZTIME=30s scripts/test.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=setup-env.sh
. scripts/setup-env.sh

bash scripts/install-engines.sh
# OpenAI's Node client, for the tests of the local API's OpenAI routes.
OPENAI_CLIENT_NODE_MODULES=$(bash scripts/openai-client.sh)
export OPENAI_CLIENT_NODE_MODULES
stoker_pkg_config_path=${PKG_CONFIG_PATH:-}
# shellcheck source=engines/env.sh
. scripts/engines/env.sh
tags="llamacpp whispercpp sdcpp onnx"

echo "== proto"
bash scripts/proto.sh check

echo "== gofmt"
unformatted=$(git ls-files '*.go' | grep -v '\.pb\.go$' | xargs gofmt -l)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...
go vet -tags "$tags" ./...

echo "== go test"
go test -tags "$tags" -timeout 30m ./...

echo "== deploy/check (the Kubernetes and Nomad files; a module of its own)"
(cd deploy/check && go vet ./... && go test ./...)

echo "== llama.cpp on Vulkan (Mesa's lavapipe)"
# The llama plugin on the GPU build of its libraries (STOKER_GPU=vulkan:
# scripts/engines/llama-gpu.sh, from the engines cache after its first run),
# with Mesa's Vulkan driver for the CPU as the device. ggml skips CPU-type
# Vulkan devices unless GGML_VK_VISIBLE_DEVICES names one. TestGPUBackend
# wants backend vulkan, every layer offloaded and the CPU's greedy tokens;
# TestParityWithLlamaSimple the CPU build's llama-simple's text.
(
	# shellcheck source=engines/common.sh
	. scripts/engines/common.sh
	engines_apt_install mesa-vulkan-drivers
	STOKER_GPU=vulkan bash scripts/install-engines.sh
	unset CGO_CFLAGS CGO_CXXFLAGS CGO_LDFLAGS
	PKG_CONFIG_PATH=$stoker_pkg_config_path
	export STOKER_GPU=vulkan
	# shellcheck source=engines/env.sh
	. scripts/engines/env.sh
	GGML_VK_VISIBLE_DEVICES=0 STOKER_TEST_GPU=vulkan go test -tags llamacpp -count=1 -v \
		-run '^(TestGPUBackend|TestParityWithLlamaSimple)$' ./llamacpp-plugin
)

echo "== fuzz (${STOKER_FUZZTIME:=10s} each)"
# Every Fuzz target, each in its own package run.
git grep -l '^func Fuzz' -- '*_test.go' | while read -r f; do
	pkg=./$(dirname "$f")
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "-- $pkg $target"
		go test -tags "$tags" -run '^$' -fuzz "^${target}\$" -fuzztime "$STOKER_FUZZTIME" "$pkg"
	done
done
echo "== all checks passed"
