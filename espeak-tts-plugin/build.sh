#!/usr/bin/env bash
# build.sh OUT makes the espeak-tts plugin: one executable file OUT, a Python
# zipapp (#!/usr/bin/python3) holding main.py and the engine stubs generated
# here from proto/engine/v1/engine.proto with Debian's protoc and
# grpc_python_plugin (packages protobuf-compiler, protobuf-compiler-grpc).
#
# Why generated at build time, not committed: the stubs must match the
# python3-protobuf/python3-grpcio the machine runs (Debian 12: 3.21 and
# 1.51), so they come from the same Debian release's compiler; and the proto
# stays the one definition (no second copy to go stale).
# Why a zipapp: the agent runs a plugin from a descriptor (/proc/self/fd/3,
# see docs/operations.md, plugin trust), so a script's own directory is not
# on sys.path; a zip carries its modules inside the one file that was
# checked and hashed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:?usage: build.sh OUT}
for t in protoc grpc_python_plugin; do
	command -v "$t" >/dev/null || { echo "build.sh: $t missing (scripts/install-engines.sh installs it)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/app"
protoc -I "$root/proto/engine/v1" --python_out="$tmp/app" --grpc_out="$tmp/app" \
	--plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" engine.proto
cp "$here/main.py" "$tmp/app/__main__.py"
/usr/bin/python3 -m zipapp "$tmp/app" -p /usr/bin/python3 -o "$tmp/plugin"
chmod 0755 "$tmp/plugin"
mv -f "$tmp/plugin" "$out"
