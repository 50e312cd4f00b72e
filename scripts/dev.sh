#!/usr/bin/env bash
# dev.sh builds everything and runs `stoker agent -dev`: a dev studio on
# 127.0.0.1:8700 (dashboard at http://127.0.0.1:8700/) and a worker with the
# real engines and small generated models (tiny-llama, tiny-whisper, tiny-sd, tiny-lama, and espeak when espeak-ng is installed),
# plus the synthetic models. Extra arguments go to `stoker agent`.
# STOKER_GPU=vulkan|cuda builds the llama plugin on that GPU build
# (docs/engines.md); the agent itself then runs without it (to the agent,
# STOKER_GPU is the gpu setting, a GPU's index).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/build.sh
case "${STOKER_GPU:-}" in
cpu | vulkan | cuda) unset STOKER_GPU ;;
esac
exec bin/stoker agent -dev "$@"
