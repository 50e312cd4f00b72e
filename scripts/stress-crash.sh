#!/usr/bin/env bash
# stress-crash.sh: the crash-isolation stress run. It builds stoker, the
# synthetic and faults plugins and the stress driver into a temporary
# directory, then runs N jobs (env N, default 500; FAULT_RATE, default 0.2)
# through a dev studio on loopback against a real `stoker agent` process,
# with injected crashes, and prints a table whose last line is exactly
#   lost=L duplicates=D supervisor_crashes=S jobs=N
# The logic lives in supervisor/internal/stresscrash (tested); this only
# drives it. Exit status is non-zero when anything was lost or duplicated or
# the supervisor crashed. AGENT_LOG=<file> keeps the agent's JSON log;
# NO_IMAGES=1 makes every job a JSON (llm) job (no binary uploads).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
N=${N:-500}
FAULT_RATE=${FAULT_RATE:-0.2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/" ./supervisor/cmd/stoker ./synthetic-plugin \
	./faults-plugin ./supervisor/cmd/stress-crash
chmod go-w "$work" "$work"/*
mkdir -p "$work/plugins"
mv "$work/synthetic-plugin" "$work/faults-plugin" "$work/plugins/"
chmod go-w "$work/plugins"
"$work/stress-crash" -n "$N" -fault-rate "$FAULT_RATE" -stoker "$work/stoker" \
	-plugin-dir "$work/plugins" ${AGENT_LOG:+-agent-log "$AGENT_LOG"} ${NO_IMAGES:+-no-images}
