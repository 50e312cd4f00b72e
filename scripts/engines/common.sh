# shellcheck shell=bash
# Shared helpers for the engine install scripts (scripts/install-engines.sh and
# scripts/engines/<engine>.sh). Sourced, never run. See docs/engines.md for the
# layout these helpers maintain.

# STOKER_ENGINES_DIR is the cache root; one prefix per engine and version
# lives below it, plus current/<engine> pointers written by engines_register.
: "${STOKER_ENGINES_DIR:=${HOME:-/root}/.cache/stoker/engines}"
export STOKER_ENGINES_DIR

# STOKER_BUILD_JOBS bounds compiler parallelism (the CI machines have 2 cores
# shared with other work).
: "${STOKER_BUILD_JOBS:=2}"

# LLAMA_NPM_VERSION is the node-llama-cpp release whose git bundle carries the
# llama.cpp source; LLAMA_VERSION is the llama.cpp tag it names (checked against
# llama/llama.cpp.info.json after unpacking). Used by the scripts that source
# this file.
# shellcheck disable=SC2034
LLAMA_NPM_VERSION=3.21.1
LLAMA_VERSION=v0.4.0
# shellcheck disable=SC2034
LLAMA_PREFIX="$STOKER_ENGINES_DIR/llama.cpp-$LLAMA_VERSION"

engines_log() { printf '[engines] %s\n' "$*" >&2; }
engines_die() { printf '[engines] error: %s\n' "$*" >&2; exit 1; }

# engines_apt_install installs Debian packages that are missing. It needs root
# (or sudo) only when something is missing.
engines_apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	engines_log "apt-get install ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq || engines_die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		engines_die "apt-get install ${missing[*]} failed"
}

# engines_npm_fetch PKG@VERSION DIR unpacks an npm package tarball (from the
# npm registry, through npm's own client) into DIR/package.
engines_npm_fetch() {
	local spec=$1 dir=$2 tgz
	mkdir -p "$dir"
	tgz=$(cd "$dir" && npm pack --silent "$spec" 2>/dev/null | tail -n1) || engines_die "npm pack $spec failed"
	[ -f "$dir/$tgz" ] || engines_die "npm pack $spec produced no tarball"
	tar -xzf "$dir/$tgz" -C "$dir" || engines_die "unpack $tgz failed"
}

# engines_llama_source DIR clones llama.cpp $LLAMA_VERSION (with the ggml it
# ships) into DIR from node-llama-cpp@$LLAMA_NPM_VERSION's git bundle, checking
# the tag the package names. Used by llama.sh, and by sdcpp.sh for the ggml
# sources stable-diffusion.cpp builds on.
engines_llama_source() {
	local dir=$1 npm="$1.npm" bundle tag
	rm -rf "$dir" "$npm"
	engines_log "fetching node-llama-cpp@$LLAMA_NPM_VERSION (llama.cpp $LLAMA_VERSION source)"
	engines_npm_fetch "node-llama-cpp@$LLAMA_NPM_VERSION" "$npm"
	bundle="$npm/package/llama/gitRelease.bundle"
	[ -f "$bundle" ] || engines_die "node-llama-cpp@$LLAMA_NPM_VERSION has no llama/gitRelease.bundle"
	tag=$(sed -n 's/.*"tag": *"\([^"]*\)".*/\1/p' "$npm/package/llama/llama.cpp.info.json")
	[ "$tag" = "$LLAMA_VERSION" ] || engines_die "bundle is llama.cpp $tag, expected $LLAMA_VERSION"
	git clone -q "$bundle" "$dir" 2>/dev/null || engines_die "git clone from bundle failed"
	rm -rf "$npm"
}

# engines_register NAME PREFIX records where engine NAME is installed
# ("system" when pkg-config finds a system build). env.sh reads these
# pointers to build PKG_CONFIG_PATH and the cgo flags.
engines_register() {
	mkdir -p "$STOKER_ENGINES_DIR/current"
	printf '%s\n' "$2" >"$STOKER_ENGINES_DIR/current/$1.tmp"
	mv -f "$STOKER_ENGINES_DIR/current/$1.tmp" "$STOKER_ENGINES_DIR/current/$1"
}

# engines_system_pkg NAME succeeds when pkg-config finds NAME outside the
# stoker cache (a distribution or farm build), unless STOKER_ENGINES_BUILD=1.
engines_system_pkg() {
	[ "${STOKER_ENGINES_BUILD:-0}" = 1 ] && return 1
	command -v pkg-config >/dev/null || return 1
	pkg-config --exists "$1" 2>/dev/null || return 1
	case "$(pkg-config --variable=prefix "$1")" in
	"$STOKER_ENGINES_DIR"/*) return 1 ;;
	esac
	return 0
}
