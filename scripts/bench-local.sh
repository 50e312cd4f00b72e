#!/usr/bin/env bash
# bench-local.sh measures the local API's streamed chat against the engine's
# own generation rate on tiny-llama (BenchmarkLocalChatStream): time to the
# first streamed token, the gap between chunks at the client, llama.cpp's own
# time per token, and the SSE stream's overhead per token (streamed minus
# unstreamed wall time of the same greedy answer). The load average is
# printed before and after: the figures move with what else the machine runs.
#
#   scripts/bench-local.sh                    20 request pairs, 128 tokens
#   BENCH_RUNS=100 BENCH_MAX_TOKENS=256 scripts/bench-local.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=setup-env.sh
. scripts/setup-env.sh
bash scripts/install-engines.sh
# shellcheck source=engines/env.sh
. scripts/engines/env.sh
echo "load average before: $(cat /proc/loadavg) ($(nproc) cores)"
BENCH_MAX_TOKENS=${BENCH_MAX_TOKENS:-128} go test -tags "llamacpp whispercpp" -run '^$' -bench 'LocalChatStream' \
	-benchtime "${BENCH_RUNS:-20}x" ./supervisor/internal/agent/ | grep -E 'Benchmark|prompt'
echo "load average after: $(cat /proc/loadavg)"
