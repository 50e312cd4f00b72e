#!/usr/bin/env bash
# image.sh builds an OCI image of a release without pulling anything from a
# container registry: a Debian root file system made by debootstrap from
# Debian's archive (one layer, cached), the release on top (a second
# layer), assembled into an OCI image layout and written as an OCI archive:
#
#   dist/stoker-<version>-linux-amd64.oci.tar
#
#   scripts/image.sh                         builds the release first (release.sh)
#   scripts/image.sh dist/stoker-…tar.gz     from a release tarball
#   podman load -i dist/stoker-<version>-linux-amd64.oci.tar    (named localhost/stoker:<version>;
#                                     or skopeo copy oci-archive:… docker://registry/…)
#
# The image runs `stoker agent -config /etc/stoker/stoker.toml` as the user
# stoker (uid 10001), with its state in the volume /var/lib/stoker and the
# local API on 127.0.0.1:8710 (docs/operations.md, "Containers").
#
# The root file system is cached under $STOKER_IMAGE_CACHE (default
# ~/.cache/stoker/image), keyed by the suite, mirror, package list and
# recipe below: a fresh build runs debootstrap (a few minutes, ~60 MB from
# the archive), later ones reuse it. Needs root (debootstrap, chroot, file
# owners in the layers) and debootstrap (setup-env.sh installs it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[ "$(id -u)" = 0 ] || { echo "image.sh: must run as root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "image.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

suite=bookworm
mirror=${STOKER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the engines need beyond minbase (libstdc++ and libgcc come with it):
# OpenMP for ggml, CA certificates for the studio's https.
packages=ca-certificates,libgomp1
uid=10001
recipe=2 # bump when the root file system's recipe below changes
key=$(printf '%s\n' "$suite" "$mirror" "$packages" "$uid" "$recipe" | sha256sum | cut -c1-16)
cache=${STOKER_IMAGE_CACHE:-${HOME:-/root}/.cache/stoker/image}
mkdir -p "$cache"
base=$cache/rootfs-$suite-$key.tar

tarball=${1:-}
if [ -z "$tarball" ]; then
	tarball=$(bash scripts/release.sh | tail -1)
fi
[ -f "$tarball" ] || { echo "image.sh: no release tarball $tarball" >&2; exit 1; }
name=$(basename "$tarball" .tar.gz)
version=${name#stoker-}
version=${version%-linux-amd64}
out=$(cd "$(dirname "$tarball")" && pwd)
work=$(mktemp -d "$out/.image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Layer 1: Debian.
if [ ! -f "$base" ]; then
	echo "image.sh: debootstrap $suite from $mirror (cached as $base)" >&2
	rfs=$work/rootfs
	debootstrap --variant=minbase --include="$packages" "$suite" "$rfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -30 "$work/debootstrap.log" >&2
		exit 1
	}
	chroot "$rfs" groupadd --system --gid "$uid" stoker
	chroot "$rfs" useradd --system --uid "$uid" --gid "$uid" --home-dir /var/lib/stoker --shell /usr/sbin/nologin stoker
	rm -rf "$rfs"/var/lib/apt/lists/* "$rfs"/var/cache/apt/*.bin "$rfs"/var/cache/apt/archives/*.deb \
		"$rfs"/var/log/* "$rfs"/dev/* "$rfs"/run/* "$rfs"/tmp/* "$rfs"/proc/* "$rfs"/sys/*
	# Reproducible: file times set to the suite's release date.
	tar --sort=name --numeric-owner --xattrs --mtime=@1686355200 --clamp-mtime -C "$rfs" -cf "$base.tmp" .
	mv "$base.tmp" "$base"
	rm -rf "$rfs"
fi

# Layer 2: the release, its config and the state directory.
rel=$work/release
mkdir -p "$rel/opt/stoker" "$rel/etc/stoker" "$rel/var/lib/stoker"
tar -xzf "$tarball" --strip-components=1 --no-same-owner -C "$rel/opt/stoker"
cat >"$rel/etc/stoker/stoker.toml" <<'TOML'
# The container's config: mount your own over it, or set STOKER_<KEY>
# variables (docs/operations.md). The studio must be set:
#   STOKER_API_BASE_URL=https://studio.example/
state_dir = "/var/lib/stoker"
log_json = true
TOML
chown -R 0:0 "$rel"
chmod 0755 "$rel/etc/stoker" && chmod 0644 "$rel/etc/stoker/stoker.toml"
chown "$uid:$uid" "$rel/var/lib/stoker" && chmod 0700 "$rel/var/lib/stoker"
tar --sort=name --numeric-owner --mtime="@$(git log -1 --format=%ct 2>/dev/null || date +%s)" -C "$rel" -cf "$work/release.tar" .

# The OCI image layout.
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() { # blob FILE: moves FILE into the layout, prints its digest
	local d
	d=$(sha256sum "$1" | cut -d' ' -f1)
	mv "$1" "$layout/blobs/sha256/$d"
	echo "$d"
}
# The base layer is compressed once and kept beside its tar.
if [ ! -f "$base.gz" ] || [ ! -f "$base.diffid" ]; then
	gzip -n -c "$base" >"$base.gz.tmp"
	sha256sum "$base" | cut -d' ' -f1 >"$base.diffid"
	mv "$base.gz.tmp" "$base.gz"
fi
cp "$base.gz" "$work/layer.gz"
layers=() diffs=() sizes=()
diffs+=("$(cat "$base.diffid")")
sizes+=("$(stat -c %s "$work/layer.gz")")
layers+=("$(blob "$work/layer.gz")")
diffs+=("$(sha256sum "$work/release.tar" | cut -d' ' -f1)")
gzip -n -c "$work/release.tar" >"$work/layer.gz"
sizes+=("$(stat -c %s "$work/layer.gz")")
layers+=("$(blob "$work/layer.gz")")
created=$(date -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)" +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"$created",
 "config":{"User":"$uid:$uid",
  "Env":["PATH=/opt/stoker/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],
  "Entrypoint":["/opt/stoker/bin/stoker"],"Cmd":["agent","-config","/etc/stoker/stoker.toml"],
  "WorkingDir":"/var/lib/stoker","Volumes":{"/var/lib/stoker":{}},"ExposedPorts":{"8710/tcp":{}},"StopSignal":"SIGTERM",
  "Labels":{"org.opencontainers.image.title":"stoker","org.opencontainers.image.version":"$version","org.opencontainers.image.revision":"$commit","org.opencontainers.image.base.name":"debian:$suite (debootstrap --variant=minbase)"}},
 "rootfs":{"type":"layers","diff_ids":["sha256:${diffs[0]}","sha256:${diffs[1]}"]},
 "history":[{"created":"$created","created_by":"debootstrap --variant=minbase --include=$packages $suite $mirror; useradd stoker ($uid)"},
            {"created":"$created","created_by":"scripts/image.sh: $name in /opt/stoker"}]}
JSON
config_size=$(stat -c %s "$work/config.json")
config=$(blob "$work/config.json")
cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:${layers[0]}","size":${sizes[0]}},
           {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:${layers[1]}","size":${sizes[1]}}]}
JSON
manifest_size=$(stat -c %s "$work/manifest.json")
manifest=$(blob "$work/manifest.json")
cat >"$layout/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
 "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,
   "annotations":{"org.opencontainers.image.ref.name":"stoker:$version"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
image=$out/$name.oci.tar
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$layout" -cf "$image.tmp" .
mv "$image.tmp" "$image"
echo "image.sh: $(du -h "$image" | cut -f1) OCI archive, tag $version, base $(basename "$base")" >&2
echo "$image"
