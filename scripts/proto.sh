#!/usr/bin/env bash
# proto.sh lints the engine contract and regenerates its Go code with buf
# (pinned in scripts/tools/go.mod) and the protoc plugins pinned in go.mod.
#
#   scripts/proto.sh          buf lint + buf generate
#   scripts/proto.sh check    buf lint, then fail if the committed generated
#                             code differs from what buf generates
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
buf=$root/.cache/bin/buf
if [ ! -x "$buf" ]; then
	echo "building buf (once)" >&2
	(cd scripts/tools && go build -o "$buf" github.com/bufbuild/buf/cmd/buf)
fi
"$buf" lint
case "${1:-}" in
check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	"$buf" generate -o "$tmp"
	for f in proto/engine/v1/*.pb.go; do
		if ! cmp -s "$f" "$tmp/$f"; then
			echo "generated code is stale: $f (run scripts/proto.sh and commit)" >&2
			diff -u "$f" "$tmp/$f" | head -20 >&2
			exit 1
		fi
	done
	echo "proto: lint clean, generated code up to date"
	;;
*)
	"$buf" generate
	;;
esac
