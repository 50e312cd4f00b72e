# shellcheck shell=bash
# setup-env.sh is sourced by the other scripts: it checks the machine has what
# they need and installs what is missing from Debian's archive (as root) or
# says how to get it.
_stoker_need() {
	local missing=()
	command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
	command -v go >/dev/null || { echo "Go is not installed (want Go 1.26 at /usr/local/go)" >&2; return 1; }
	for tool in cmake pkg-config git npm g++ flock promtool prometheus zsh patchelf systemd-analyze debootstrap podman runc; do
		command -v "$tool" >/dev/null || missing+=("$tool")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	local pkgs=()
	for tool in "${missing[@]}"; do
		case $tool in
		g++) pkgs+=(g++) ;;
		flock) pkgs+=(util-linux) ;;
		zsh) pkgs+=(zsh) ;;           # the zsh completion's test
		patchelf) pkgs+=(patchelf) ;; # release.sh: the binaries' RUNPATH relative to themselves
		systemd-analyze) pkgs+=(systemd) ;; # the units' security rating, offline
		debootstrap | podman | runc) pkgs+=("$tool") ;; # image.sh and the image's test (runc: crun refuses this machine's cgroups)
		promtool | prometheus) [[ " ${pkgs[*]} " == *" prometheus "* ]] || pkgs+=(prometheus) ;; # the alert rules' tests and the scrape test
		*) pkgs+=("$tool") ;;
		esac
	done
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing ${pkgs[*]} from Debian's archive" >&2
		apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
	else
		echo "missing tools: ${missing[*]} (install: apt-get install ${pkgs[*]})" >&2
		return 1
	fi
}
_stoker_need
unset -f _stoker_need
