#!/usr/bin/env bash
# build.sh installs the engines (cached outside the clone) and puts stoker and
# every engine plugin into bin/. The plugins are found there by `stoker
# agent`, whose default plugin_dir is the directory of the stoker
# executable (the Python espeak-tts plugin, espeak-tts-plugin, is
# a zipapp that needs no Go). The fault-injection plugin is a test tool and goes to
# bin/test/ instead, out of the agent's way (scripts/stress-crash.sh and the
# tests build their own).
#
#   scripts/build.sh            engines + all binaries
#   STOKER_NO_ENGINES=1 scripts/build.sh
#                               skip llama.cpp/whisper.cpp/stable-diffusion.cpp:
#                               their plugins are built without the engines
#                               and report not ready
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=setup-env.sh
. scripts/setup-env.sh

tags=
if [ -z "${STOKER_NO_ENGINES:-}" ]; then
	bash scripts/install-engines.sh
	# shellcheck source=engines/env.sh
	. scripts/engines/env.sh
	tags="llamacpp whispercpp sdcpp onnx"
fi
mkdir -p bin
plugins=()
for d in synthetic-plugin llamacpp-plugin whisper-plugin sdcpp-plugin onnx-plugin; do
	[ -f "$d/main.go" ] && plugins+=("./$d")
done
# `stoker version` says which commit and engines it was built from.
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
engines=$(bash scripts/engines/versions.sh 2>/dev/null | paste -sd ';' - || true)
[ -n "$tags" ] || engines=
go build -trimpath -tags "$tags" -ldflags "-X main.commit=$commit -X 'main.engineVersions=$engines'" -o bin/ ./supervisor/cmd/stoker "${plugins[@]}"
# The Python espeak-tts plugin: one zipapp file (its stubs generated from
# proto/engine/v1 by Debian's protoc; install-engines.sh installs it).
if command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null; then
	bash espeak-tts-plugin/build.sh bin/espeak-tts-plugin
else
	echo "build.sh: no protoc/grpc_python_plugin: bin/espeak-tts-plugin not built" >&2
fi
mkdir -p bin/test
go build -trimpath -o bin/test/ ./faults-plugin
chmod go-w bin/* bin/test/*
echo "built: $(cd bin && echo *)"
