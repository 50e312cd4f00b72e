# shellcheck shell=bash
# versions.sh prints the engines this checkout's plugins are built against,
# one "name version" per line, from the engines cache's registrations
# ($STOKER_ENGINES_DIR/current/*: a prefix named <name>-<version>, or
# "system", then pkg-config's version) and STOKER_GPU (the llama build in
# use). build.sh and release.sh embed it in stoker (`stoker version`).
#
#   bash scripts/engines/versions.sh
set -euo pipefail
dir=${STOKER_ENGINES_DIR:-${HOME:-/root}/.cache/stoker/engines}
gpu=${STOKER_GPU:-cpu}
[ -d "$dir/current" ] || exit 0
for f in "$dir"/current/*; do
	[ -f "$f" ] || continue
	name=$(basename "$f")
	case "$name" in
	llama-*) [ "$name" = "llama-$gpu" ] || continue ;;
	llama) [ "$gpu" = cpu ] || continue ;;
	esac
	prefix=$(cat "$f")
	if [ "$prefix" = system ]; then
		echo "$name $(pkg-config --modversion "$name" 2>/dev/null || echo unknown) (system)"
		continue
	fi
	base=$(basename "$prefix")
	# llama.cpp-v0.4.0-vulkan: the version is what follows the name's last
	# '-' before an optional backend suffix.
	case "$base" in
	*-vulkan | *-cuda) backend=${base##*-} base=${base%-*} ;;
	*) backend= ;;
	esac
	echo "${base%-*} ${base##*-}${backend:+ ($backend)}"
done
