#!/usr/bin/env bash
# sdcpp.sh installs stable-diffusion.cpp (libstable-diffusion, its header, a
# stable-diffusion.pc and sd-cli, the reference program) into
# $STOKER_ENGINES_DIR/stable-diffusion.cpp-<commit>, keyed by the pinned
# commit. Idempotent: a complete prefix is reused.
#
# Where the engine comes from, first that works:
#
#   1. a farm's own build: STOKER_SDCPP_PREFIX (a prefix with
#      include/stable-diffusion.h and lib/libstable-diffusion.so), or one that
#      `pkg-config stable-diffusion` finds (a CUDA, Vulkan or Metal build, say);
#   2. a local source at STOKER_SDCPP_SOURCE: a checkout, or a bare git
#      directory holding the pinned commit;
#   3. a shallow clone of the upstream repository at the pinned commit
#      (STOKER_SDCPP_GIT_URL), for machines with network access.
#
# The source is exported file by file at the pinned commit, so a git
# directory that lacks some blobs still builds: the tokenizer vocabularies
# under src/tokenizers/vocab/ of models stoker does not serve by default (T5,
# UMT5, Qwen, Mistral, Gemma, GPT-OSS) get empty stand-ins, which the script
# names, and which are recorded in include/stoker-sdcpp-build.h so that the
# plugin refuses a model that needs one with a clear error. Any other missing
# file stops the build.
#
# stable-diffusion.cpp is built on the ggml sources of the llama.cpp release
# the llama prefix holds (llama.cpp $LLAMA_VERSION), in place of its own ggml
# submodule, with the same portable CPU baseline. ggml is compiled into
# libstable-diffusion itself, because stable-diffusion.cpp needs tensor names
# of 128 bytes or more (GGML_MAX_NAME=160, a size inside struct ggml_tensor)
# where llama.cpp's shared libggml has 64: the two cannot share a binary.
# WebP comes from Debian's libwebp (sd-cli writes .webp with it; the plugin
# encodes with the same library and settings). WebM (video) is off.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

# 487de75 (2026-08-11) is the last commit that builds against the ggml of
# llama.cpp v0.4.0: the next one calls functions only stable-diffusion.cpp's
# own ggml fork has.
SDCPP_COMMIT=487de75c96fe16f1a9806f022ecc4a784dd28b47
SDCPP_PREFIX="$STOKER_ENGINES_DIR/stable-diffusion.cpp-${SDCPP_COMMIT:0:7}"
: "${STOKER_SDCPP_GIT_URL:=https://github.com/leejet/stable-diffusion.cpp.git}"

# 1. A farm's own build.
if [ -n "${STOKER_SDCPP_PREFIX:-}" ]; then
	[ -f "$STOKER_SDCPP_PREFIX/include/stable-diffusion.h" ] ||
		engines_die "sdcpp: STOKER_SDCPP_PREFIX=$STOKER_SDCPP_PREFIX has no include/stable-diffusion.h"
	[ -f "$STOKER_SDCPP_PREFIX/lib/pkgconfig/stable-diffusion.pc" ] ||
		engines_die "sdcpp: STOKER_SDCPP_PREFIX=$STOKER_SDCPP_PREFIX has no lib/pkgconfig/stable-diffusion.pc"
	engines_log "sdcpp: using the build at $STOKER_SDCPP_PREFIX"
	engines_register stable-diffusion "$STOKER_SDCPP_PREFIX"
	exit 0
fi
if engines_system_pkg stable-diffusion; then
	engines_log "sdcpp: using system build at $(pkg-config --variable=prefix stable-diffusion)"
	engines_register stable-diffusion system
	exit 0
fi

stamp="$SDCPP_PREFIX/.stoker-complete"
if [ -f "$stamp" ]; then
	engines_log "sdcpp: reusing $SDCPP_PREFIX"
	engines_register stable-diffusion "$SDCPP_PREFIX"
	exit 0
fi

engines_apt_install cmake pkg-config git g++ make libwebp-dev libstb-dev
command -v npm >/dev/null || engines_die "npm not found (needed to fetch node-llama-cpp for the ggml sources)"

# The build tree persists until a successful install, so an interrupted run
# resumes where it stopped.
work="$STOKER_ENGINES_DIR/.build/stable-diffusion.cpp-${SDCPP_COMMIT:0:7}"
mkdir -p "$work"
src="$work/src"

# sdcpp_export GITDIR exports the pinned commit from GITDIR into $src, one
# file at a time; it fails when the commit is absent.
sdcpp_export() {
	local gitdir=$1 mode type sha path
	git --git-dir="$gitdir" cat-file -e "$SDCPP_COMMIT^{commit}" 2>/dev/null || return 1
	rm -rf "$src" "$work/missing"
	mkdir -p "$src"
	: >"$work/missing"
	while IFS=$' \t' read -r mode type sha path; do
		case $type in
		commit) mkdir -p "$src/$path" ;; # a submodule: supplied below where needed
		blob)
			mkdir -p "$src/$(dirname "$path")"
			if ! git --git-dir="$gitdir" cat-file -e "$sha" 2>/dev/null; then
				printf '%s\n' "$path" >>"$work/missing"
			elif [ "$mode" = 120000 ]; then
				ln -s "$(git --git-dir="$gitdir" cat-file blob "$sha")" "$src/$path"
			else
				git --git-dir="$gitdir" cat-file blob "$sha" >"$src/$path"
			fi
			;;
		esac
	done < <(git --git-dir="$gitdir" ls-tree -r --full-tree "$SDCPP_COMMIT")
}

if [ ! -f "$work/.stoker-exported" ]; then
	if [ -n "${STOKER_SDCPP_SOURCE:-}" ]; then
		gitdir=$(git -C "$STOKER_SDCPP_SOURCE" rev-parse --absolute-git-dir 2>/dev/null) ||
			engines_die "sdcpp: STOKER_SDCPP_SOURCE=$STOKER_SDCPP_SOURCE is not a git checkout or git directory"
		engines_log "sdcpp: exporting $SDCPP_COMMIT from $gitdir"
		sdcpp_export "$gitdir" || engines_die "sdcpp: $gitdir does not hold commit $SDCPP_COMMIT"
	else
		engines_log "sdcpp: shallow clone of $STOKER_SDCPP_GIT_URL at ${SDCPP_COMMIT:0:7}"
		rm -rf "$work/git"
		if ! { git init -q --bare "$work/git" &&
			git --git-dir="$work/git" fetch -q --depth 1 "$STOKER_SDCPP_GIT_URL" "$SDCPP_COMMIT"; } 2>/dev/null; then
			engines_die "sdcpp: no stable-diffusion.cpp source: set STOKER_SDCPP_SOURCE to a checkout or git directory of leejet/stable-diffusion.cpp holding commit $SDCPP_COMMIT (or STOKER_SDCPP_PREFIX to a build)"
		fi
		sdcpp_export "$work/git" || engines_die "sdcpp: the clone lacks commit $SDCPP_COMMIT"
		rm -rf "$work/git"
	fi

	# Missing blobs: pictures and documents do not matter, tokenizer
	# vocabularies get stand-ins, anything else stops.
	grep -v '^\(assets\|docs\)/' "$work/missing" >"$work/missing.build" || true
	mv "$work/missing.build" "$work/missing"
	if grep -v '^src/tokenizers/vocab/' "$work/missing" >&2; then
		engines_die "sdcpp: the source above is incomplete (files listed); use a full clone"
	fi
	if [ -s "$work/missing" ]; then
		vocab="$src/src/tokenizers/vocab"
		# The symbols vocab.cpp reads that no present header defines.
		: >"$vocab/stoker_missing_vocab.h"
		echo '#pragma once' >>"$vocab/stoker_missing_vocab.h"
		for sym in $(grep -o 'sizeof([A-Za-z0-9_]*)' "$vocab/vocab.cpp" | sed 's/sizeof(\(.*\))/\1/' | sort -u); do
			grep -qs "$sym\[\]" "$vocab"/*.hpp && continue
			echo "static const unsigned char $sym[] = {0};" >>"$vocab/stoker_missing_vocab.h"
		done
		names=
		while read -r f; do
			echo '#include "stoker_missing_vocab.h"' >"$src/$f"
			n=$(basename "$f" .hpp)
			n=${n%_merges}
			n=${n%_vocab}
			case " $names " in *" $n "*) ;; *) names="${names:+$names }$n" ;; esac
		done <"$work/missing"
		printf '%s\n' "$names" >"$work/missing-vocab"
		engines_log "sdcpp: WARNING: the source lacks the tokenizer vocabularies of: $names"
		engines_log "sdcpp: they get empty stand-ins; models that need them are refused (a full clone has them)"
	else
		: >"$work/missing-vocab"
	fi
	touch "$work/.stoker-exported"
fi

# The ggml sources: llama.cpp's, in place of the ggml submodule.
if [ ! -f "$src/ggml/.stoker-llama-ggml" ]; then
	engines_llama_source "$work/llama"
	rm -rf "$src/ggml"
	cp -a "$work/llama/ggml" "$src/ggml"
	printf 'llama.cpp %s %s\n' "$LLAMA_VERSION" "$(git -C "$work/llama" rev-parse HEAD)" >"$src/ggml/.stoker-llama-ggml"
	rm -rf "$work/llama"
fi

cmake -S "$src" -B "$work/build" -G "Unix Makefiles" \
	-DCMAKE_BUILD_TYPE=Release \
	-DCMAKE_INSTALL_RPATH="$SDCPP_PREFIX/lib" \
	-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
	-DSD_BUILD_SHARED_LIBS=ON -DSD_BUILD_EXAMPLES=ON \
	-DSD_WEBP=ON -DSD_USE_SYSTEM_WEBP=ON -DSD_WEBM=OFF \
	-DSD_SERVER_BUILD_FRONTEND=OFF \
	-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_BACKEND_DL=OFF -DGGML_OPENMP=ON \
	>"$work/configure.log" 2>&1 || { tail -n 30 "$work/configure.log" >&2; engines_die "sdcpp: cmake configure failed"; }

engines_log "sdcpp: building with $STOKER_BUILD_JOBS jobs (about 3 minutes on 2 cores)"
cmake --build "$work/build" --target sd-cli -j "$STOKER_BUILD_JOBS" >"$work/build.log" 2>&1 ||
	{ tail -n 30 "$work/build.log" >&2; engines_die "sdcpp: build failed"; }

# Install by hand into a staging root, then move it into place: only the
# library, its header, sd-cli and a pkg-config file (the cmake install would
# also want the server example, which is not built).
stage="$work/stage"
rm -rf "$stage"
mkdir -p "$stage/lib/pkgconfig" "$stage/include" "$stage/bin"
cp "$work/build/bin/libstable-diffusion.so" "$stage/lib/"
cp "$work/build/bin/sd-cli" "$stage/bin/"
cp "$src/include/stable-diffusion.h" "$stage/include/"
missing_vocab=$(cat "$work/missing-vocab")
cat >"$stage/include/stoker-sdcpp-build.h" <<H
/* Written by stoker's scripts/engines/sdcpp.sh: facts about this build. */
#define STOKER_SDCPP_COMMIT "$SDCPP_COMMIT"
#define STOKER_SDCPP_GGML "llama.cpp $LLAMA_VERSION"
/* Tokenizer vocabularies built as empty stand-ins (space-separated). */
#define STOKER_SDCPP_MISSING_VOCAB "$missing_vocab"
H
cat >"$stage/lib/pkgconfig/stable-diffusion.pc" <<PC
prefix=$SDCPP_PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include
# stable-diffusion.cpp's own CLI from the same build (parity and speed reference)
cli=\${prefix}/bin/sd-cli
missing_vocab=$missing_vocab

Name: stable-diffusion
Description: stable-diffusion.cpp ${SDCPP_COMMIT:0:7} (ggml of llama.cpp $LLAMA_VERSION, compiled in)
Version: 0.0.0-${SDCPP_COMMIT:0:7}
Libs: -L\${libdir} -lstable-diffusion -Wl,-rpath,\${libdir}
Cflags: -I\${includedir}
PC
printf 'stable-diffusion.cpp %s\nggml llama.cpp %s\nmissing vocab: %s\n' "$SDCPP_COMMIT" "$LLAMA_VERSION" "$missing_vocab" >"$stage/.stoker-complete"

rm -rf "$SDCPP_PREFIX"
mv "$stage" "$SDCPP_PREFIX"
rm -rf "$work"
engines_register stable-diffusion "$SDCPP_PREFIX"
engines_log "sdcpp: installed $SDCPP_PREFIX"
