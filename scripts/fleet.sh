#!/usr/bin/env bash
# fleet.sh: a farm on one machine. It builds stoker, the synthetic plugin and
# the fleet driver into a temporary directory, starts one `stoker studio`
# (the dev studio alone, -auto-approve) and N `stoker agent` processes
# against it on loopback (env N, default 50), each with its own state
# directory, local API and synthetic plugin, submits M jobs (env M, default
# 1000; three in four JSON llm jobs, one in four image uploads), and prints
# resident memory per agent (alone, and with its plugin), jobs per second,
# the series one agent's /metrics holds, the size of a heartbeat, the CPU the
# idle fleet costs the studio and the agents over IDLE (default 10s) and the
# load average; the last line
# is exactly
#   lost=L duplicates=D agents=N jobs=M
# The logic lives in supervisor/internal/fleet (tested: TestFleetScript runs
# this script at N=8, M=200). Exit status is non-zero when a job was lost,
# duplicated or failed. FLEET_LOG=<file> keeps the studio's and agents' logs.
# Agents register like real nodes, so the run starts with one registration
# poll (30 s).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
N=${N:-50}
M=${M:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/" ./supervisor/cmd/stoker ./synthetic-plugin ./supervisor/cmd/fleet
mkdir -p "$work/plugins"
mv "$work/synthetic-plugin" "$work/plugins/"
chmod go-w "$work" "$work"/* "$work/plugins"/*
# Each agent runs a handful of processes and descriptors; 50 of them need
# more than a login shell's default 1024 open files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$work/fleet" -agents "$N" -jobs "$M" -stoker "$work/stoker" -plugin-dir "$work/plugins" \
	-work-dir "$work/state" -idle "${IDLE:-10s}" ${FLEET_LOG:+-log "$FLEET_LOG"}
