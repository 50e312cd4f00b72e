#!/usr/bin/env bash
# stress-hostile.sh: the hostile-peer run. It builds stoker, the synthetic
# and faults plugins and the driver into a temporary directory, then runs
# every case of the kit (supervisor/internal/hostile) against a real
# `stoker agent` process on loopback: offer floods from a slow reader,
# huge and malformed frames, a silent studio, 1009 closes, a 40 MiB log
# line, empty claim strings, a 411 on upload; and a hostile plugin (the
# faults plugin): huge messages, floods, lying sizes, progress forever,
# output without end, a huge Describe. Each case prints its figures; the
# last line is exactly
#   node_crashes=C unbounded=U lost=L cases=N
# The logic lives in the Go package (tested); this only drives it. Exit
# status is non-zero when a case crashed the node, broke a bound or lost a
# job. CASES=a,b runs only those; SCALE=0.1 shrinks the sizes;
# AGENT_LOG=<file> keeps the agents' JSON logs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/" ./supervisor/cmd/stoker ./synthetic-plugin \
	./faults-plugin ./supervisor/cmd/stress-hostile
chmod go-w "$work" "$work"/*
mkdir -p "$work/plugins"
mv "$work/synthetic-plugin" "$work/faults-plugin" "$work/plugins/"
chmod go-w "$work/plugins"
"$work/stress-hostile" -stoker "$work/stoker" -plugin-dir "$work/plugins" \
	${CASES:+-cases "$CASES"} ${SCALE:+-scale "$SCALE"} ${AGENT_LOG:+-agent-log "$AGENT_LOG"}
