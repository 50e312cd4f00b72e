#!/usr/bin/env bash
# release.sh builds the release tarball of this checkout for linux-amd64:
#
#   dist/stoker-<version>-linux-amd64.tar.gz         (and .sha256 beside it)
#     stoker-<version>-linux-amd64/
#       bin/       stoker and the production engine plugins (llama.cpp,
#                  whisper.cpp, stable-diffusion.cpp, ONNX Runtime); no
#                  synthetic, faults or example plugin
#       lib/       the engine libraries the binaries load; every binary and
#                  library finds them by a RUNPATH relative to itself
#                  ($ORIGIN/../lib for bin/, $ORIGIN for lib/), never by a
#                  path of the machine that built it
#       systemd/   the units and an example config (stoker.toml.example)
#       docs/      README.md and docs/*.md
#       completion/ stoker.bash and _stoker (zsh)
#       VERSION, SHA256SUMS (of every other file)
#
#   scripts/release.sh                      version from supervisor/internal/agent (agent.Version)
#   STOKER_RELEASE_VERSION=1.2.3 scripts/release.sh
#   STOKER_RELEASE_DIR=/tmp/out scripts/release.sh   (default dist/)
#   STOKER_GPU=vulkan scripts/release.sh    the llama plugin on the GPU build (see docs/engines.md)
#
# It prints the tarball's path as its last line. Needs patchelf (Debian's
# archive; setup-env.sh installs it as root) for the libraries' RUNPATH.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=setup-env.sh
. scripts/setup-env.sh
command -v patchelf >/dev/null || { echo "release.sh: patchelf is missing (apt-get install patchelf)" >&2; exit 1; }

bash scripts/install-engines.sh >&2
# shellcheck source=engines/env.sh
. scripts/engines/env.sh
tags="llamacpp whispercpp sdcpp onnx"

version=${STOKER_RELEASE_VERSION:-$(sed -n 's/^var Version = "\(.*\)"$/\1/p' supervisor/internal/agent/agent.go)}
[ -n "$version" ] || { echo "release.sh: no version" >&2; exit 1; }
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	commit="$commit-dirty"
fi
engines=$(bash scripts/engines/versions.sh | paste -sd ';' -)
name=stoker-$version-linux-amd64
out=${STOKER_RELEASE_DIR:-$root/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "$out/.release.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/$name
mkdir -p "$stage"/{bin,lib,systemd,docs,completion}

echo "release.sh: building $name ($commit)" >&2
# The binaries' RUNPATH is set when they are linked (patchelf corrupts Go
# executables): the engines' -rpath flags, from env.sh and from pkg-config
# (a GPU llama.pc carries one), are dropped, and each binary gets
# $ORIGIN/../lib/<its name> (its own libraries, when another binary needs
# another build under the same name) then $ORIGIN/../lib.
strip_rpath() { local w out=(); for w in "$@"; do [[ $w == -Wl,-rpath,* ]] || out+=("$w"); done; echo "${out[*]}"; }
# shellcheck disable=SC2086
ldflags_base=$(strip_rpath ${CGO_LDFLAGS:-})
real_pkg_config=$(command -v pkg-config)
cat >"$work/pkg-config" <<PC
#!/usr/bin/env bash
out=\$("$real_pkg_config" "\$@") || exit
for w in \$out; do [[ \$w == -Wl,-rpath,* ]] || printf '%s ' "\$w"; done
echo
PC
chmod +x "$work/pkg-config"
ldflags="-X github.com/stokerhq/stoker/supervisor/internal/agent.Version=$version -X main.commit=$commit -X 'main.engineVersions=$engines'"
for pkg in ./supervisor/cmd/stoker ./llamacpp-plugin ./whisper-plugin ./sdcpp-plugin ./onnx-plugin; do
	exe=$(basename "$pkg")
	PKG_CONFIG=$work/pkg-config CGO_LDFLAGS="$ldflags_base -Wl,-rpath,\$ORIGIN/../lib/$exe:\$ORIGIN/../lib" \
		GOOS=linux GOARCH=amd64 go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$stage/bin/$exe" "$pkg"
done

# The libraries: every non-system library a binary needs (as the loader
# resolves it here), with the other shared objects of its directory (ggml
# loads its backends from there at run time), and ONNX Runtime, which the
# onnx plugin opens at run time. A library whose name another binary needs
# in a different build (STOKER_GPU's llama beside whisper's CPU ggml) goes
# to lib/<plugin>/, searched first by that plugin.
is_system() { case "$1" in /lib/* | /lib64/* | /usr/lib/* | /usr/lib64/* | /usr/local/lib/*) return 0 ;; esac; return 1; }
copy_dir_of() { # copy_dir_of LIBPATH DEST: the shared objects of LIBPATH's directory
	local src dst=$2 f base
	src=$(dirname "$(readlink -f "$1")")
	for f in "$src"/*.so*; do
		[ -e "$f" ] || continue
		base=$(basename "$f")
		# A soname link to a file beside it (libggml.so.0 ->
		# libggml.so.0.23.0) stays a link.
		if [ -L "$f" ] && [[ $(readlink "$f") != */* ]]; then
			if [ -L "$dst/$base" ]; then
				[ "$(readlink "$dst/$base")" = "$(readlink "$f")" ] && continue
				return 1
			fi
			[ -e "$dst/$base" ] && return 1
			ln -s "$(readlink "$f")" "$dst/$base"
			continue
		fi
		if [ -e "$dst/$base" ]; then
			cmp -s "$f" "$dst/$base" && continue
			return 1
		fi
		cp -L "$f" "$dst/$base"
		chmod 0644 "$dst/$base"
	done
}
onnxlib=$(pkg-config --variable=libfile onnxruntime 2>/dev/null || true)
if [ -z "$onnxlib" ] && libdir=$(pkg-config --variable=libdir onnxruntime 2>/dev/null); then
	onnxlib=$libdir/libonnxruntime.so
fi
# The loader finds the engines here through the directories the build
# linked against (the binaries' own RUNPATH points into lib/, empty yet).
# shellcheck disable=SC2086
engine_libdirs=$(for w in ${CGO_LDFLAGS:-}; do if [[ $w == -L* ]]; then printf '%s:' "${w#-L}"; fi; done)
llama_libdir=$(pkg-config --variable=libdir llama 2>/dev/null || true)
for exe in "$stage"/bin/*; do
	search=$engine_libdirs
	[ "$(basename "$exe")" = llamacpp-plugin ] && [ -n "$llama_libdir" ] && search=$llama_libdir:$search
	deps=$(LD_LIBRARY_PATH=$search ldd "$exe" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}') || true
	if LD_LIBRARY_PATH=$search ldd "$exe" 2>/dev/null | grep -q "not found"; then
		echo "release.sh: $(basename "$exe"): libraries not found:" >&2
		ldd "$exe" | grep "not found" >&2
		exit 1
	fi
	dest=$stage/lib
	for d in $deps; do
		is_system "$(readlink -f "$d")" && continue
		if ! copy_dir_of "$d" "$dest" 2>/dev/null; then
			dest=$stage/lib/$(basename "$exe")
			mkdir -p "$dest"
			copy_dir_of "$d" "$dest"
		fi
	done
done
if [ -z "$onnxlib" ] || [ ! -f "$onnxlib" ]; then
	echo "release.sh: ONNX Runtime's library not found (pkg-config onnxruntime)" >&2
	exit 1
fi
copy_dir_of "$onnxlib" "$stage/lib"
for lib in $(find "$stage/lib" -type f -name '*.so*'); do
	rel=$(realpath --relative-to="$(dirname "$lib")" "$stage/lib")
	if [ "$rel" = . ]; then r='$ORIGIN'; else r="\$ORIGIN:\$ORIGIN/$rel"; fi
	patchelf --set-rpath "$r" "$lib"
done

# Nothing may point at the machine that built it.
bad=$(for f in "$stage"/bin/* $(find "$stage/lib" -type f); do
	readelf -d "$f" 2>/dev/null | grep -E 'R(UN)?PATH' | grep -v '\[\$ORIGIN' && echo "  in $f"
done || true)
if [ -n "$bad" ]; then
	echo "release.sh: an rpath names a build directory:" >&2
	echo "$bad" >&2
	exit 1
fi

cp scripts/systemd/*.service scripts/systemd/stoker.toml.example "$stage/systemd/"
cp README.md "$stage/docs/"
cp docs/*.md "$stage/docs/"
"$stage/bin/stoker" completion bash >"$stage/completion/stoker.bash"
"$stage/bin/stoker" completion zsh >"$stage/completion/_stoker"
echo "$version" >"$stage/VERSION"
chmod 0755 "$stage"/bin/*
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f ! -path "$stage/bin/*" -exec chmod 0644 {} +
(cd "$stage" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)

epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tarball=$out/$name.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$work" -cf - "$name" | gzip -n >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "release.sh: $(du -h "$tarball" | cut -f1) $(cd "$stage" && echo bin/* | tr ' ' '\n' | sed 's|bin/||' | paste -sd ' ' -)" >&2
echo "$tarball"
