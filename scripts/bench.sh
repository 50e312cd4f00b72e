#!/usr/bin/env bash
# bench.sh measures the supervisor's figures the foundation promises:
#   - the pipeline's own overhead: a job round trip through the dev studio,
#     the session, the runner and a real synthetic plugin process, beside the
#     same synthetic engine called in-process, with the agent in the
#     benchmark's process and as a `stoker agent` process of its own
#     (BenchmarkPipelineRoundTripProcess); the worker's share (offer
#     written → outcome read, worker-p50-µs) apart from the dev studio's own
#     (studio-p50-µs); and one job between the host and a launched plugin
#     alone (BenchmarkPluginRoundTrip, the job stream's cost); and the
#     machine's own floor under the legs between processes, a bare message
#     to another process and back over loopback TCP and a unix socket
#     (BenchmarkLoopbackRoundTrip);
#   - one plugin launch, handshake and Describe (BenchmarkPluginLaunch: what a
#     relaunch or a warm spare waits for), with and without a pin;
#   - a 64 MiB output streamed through the pipeline (time, peak heap) beside
#     a plain multipart upload of the same bytes over loopback;
#   - the idle agent's resident memory with the synthetic plugin loaded.
# Figures vary with what else the machine runs; compare runs on one machine.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

echo "== pipeline overhead (p50/p99 per job)"
go test -run '^$' -bench 'PipelineRoundTrip|SyntheticInProcess|LoopbackRoundTrip' -benchtime "${BENCH_JOBS:-2000}x" ./supervisor/internal/agent/ | grep Benchmark
go test -run '^$' -bench 'PluginRoundTrip' -benchtime "${BENCH_JOBS:-2000}x" ./plugins/ | grep Benchmark

echo "== plugin launch (a relaunch or a warm spare)"
go test -run '^$' -bench 'PluginLaunch' -benchtime "${BENCH_LAUNCHES:-30}x" ./plugins/ | grep Benchmark

echo "== 64 MiB output"
go test -run '^$' -bench 'LargeOutput|PlainMultipartUpload' -benchtime 10x ./supervisor/internal/agent/ | grep Benchmark

echo "== idle agent RSS (synthetic plugin only)"
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/bin/" ./supervisor/cmd/stoker ./synthetic-plugin
chmod go-w "$tmp/bin" "$tmp/bin"/*
port=${BENCH_PORT:-8791}
"$tmp/bin/stoker" studio -listen "127.0.0.1:$port" -auto-approve >"$tmp/studio.log" 2>&1 &
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/api/workers" >/dev/null && break; sleep 0.1; done
STOKER_API_BASE_URL="http://127.0.0.1:$port" STOKER_STATE_DIR="$tmp/state" STOKER_LISTEN= \
	"$tmp/bin/stoker" agent >"$tmp/agent.log" 2>&1 &
agent=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/api/workers" | grep -q '"connected":true' && break; sleep 0.1; done
sleep "${IDLE_SECONDS:-10}" # let it idle through a couple of heartbeats
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$agent/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$agent/status")
# The plugin's processes by parent, not by name: a plugin is started
# through a descriptor of its verified file (fexecve), so its comm is that
# descriptor's number. Two with the warm spare on (plugin_warm_spare).
prss=0 nplugins=0
for p in $(pgrep -P "$agent" || true); do
	r=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
	prss=$((prss + r)) nplugins=$((nplugins + 1))
done
awk -v r="$rss" -v h="$hwm" -v p="$prss" -v n="$nplugins" 'BEGIN { printf "agent RSS %.1f MiB (peak %.1f MiB); synthetic plugin RSS %.1f MiB in %d processes (serving and warm spare)\n", r/1024, h/1024, p/1024, n }'
