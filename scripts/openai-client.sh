#!/usr/bin/env bash
# openai-client.sh installs OpenAI's own Node client library (the `openai`
# npm package, from the npm registry through npm's client) into a cache, for
# the tests that drive the local API's OpenAI-compatible routes with a real
# OpenAI client (supervisor/internal/agent/local_engines_test.go). It prints
# the node_modules directory. Quick when cached.
#
#   scripts/openai-client.sh          install once, print the directory
#
# OPENAI_NPM_VERSION is pinned: 6.x runs on Debian 12's Node 20 (7.x wants
# Node 22) and has no dependencies.
set -euo pipefail
OPENAI_NPM_VERSION=6.30.1
: "${STOKER_NPM_DIR:=${HOME:-/root}/.cache/stoker/npm}"
dir="$STOKER_NPM_DIR/openai-$OPENAI_NPM_VERSION"
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
	command -v npm >/dev/null || { echo "npm not found (apt-get install npm)" >&2; exit 1; }
	mkdir -p "$dir"
	echo "installing openai@$OPENAI_NPM_VERSION into $dir" >&2
	(cd "$dir" && npm install --silent --no-audit --no-fund --omit=peer --prefix "$dir" "openai@$OPENAI_NPM_VERSION" >&2)
fi
got=$(node -e 'console.log(require(process.argv[1]).version)' "$dir/node_modules/openai/package.json")
[ "$got" = "$OPENAI_NPM_VERSION" ] || { echo "openai in $dir is $got, want $OPENAI_NPM_VERSION" >&2; exit 1; }
echo "$dir/node_modules"
