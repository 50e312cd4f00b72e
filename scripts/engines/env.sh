# shellcheck shell=bash
# env.sh is sourced (after scripts/install-engines.sh) to point cgo at the
# installed engines:
#
#   source scripts/engines/env.sh
#   go build -tags "llamacpp whispercpp sdcpp onnx" ./llamacpp-plugin ./whisper-plugin ./sdcpp-plugin ./onnx-plugin
#
# (onnx-plugin needs none of the flags: it opens the library that
# current/onnxruntime names at run time; see docs/onnx.md.)
#
# For every engine registered under $STOKER_ENGINES_DIR/current/ it prepends
# <prefix>/lib/pkgconfig to PKG_CONFIG_PATH and adds <prefix>/include to
# CGO_CFLAGS/CGO_CXXFLAGS and -L<prefix>/lib -Wl,-rpath,<prefix>/lib to
# CGO_LDFLAGS, so the binaries find their libraries without LD_LIBRARY_PATH.
# An engine registered as "system" adds only an rpath to the libdir
# pkg-config reports. Sourcing it twice adds nothing twice.
#
# STOKER_GPU=vulkan or cuda (as given to install-engines.sh) puts the GPU
# build current/llama-<gpu> in the CPU llama build's place. It adds its
# PKG_CONFIG_PATH and include directory but no -L or rpath: its llama.pc
# carries them, so only the llama plugin (the one that asks pkg-config for
# llama) links it, and whisper.cpp keeps the CPU ggml it was built on.
_stoker_env() {
	local dir=${STOKER_ENGINES_DIR:-${HOME:-/root}/.cache/stoker/engines}
	local f prefix name libdir gpu=${STOKER_GPU:-cpu} pconly
	[ -d "$dir/current" ] || return 0
	case "$gpu" in
	cpu) ;;
	vulkan | cuda)
		if [ ! -f "$dir/current/llama-$gpu" ]; then
			echo "env.sh: STOKER_GPU=$gpu but no llama-$gpu build is installed (run STOKER_GPU=$gpu scripts/install-engines.sh)" >&2
			return 1
		fi
		;;
	*)
		echo "env.sh: STOKER_GPU=$gpu: want cpu, vulkan or cuda" >&2
		return 1
		;;
	esac
	for f in "$dir"/current/*; do
		[ -f "$f" ] || continue
		name=$(basename "$f")
		pconly=
		case "$name" in
		llama-*) continue ;; # only in llama's place, below
		llama)
			if [ "$gpu" != cpu ]; then
				f=$dir/current/llama-$gpu
				pconly=1
			fi
			;;
		esac
		prefix=$(cat "$f")
		if [ -n "$pconly" ]; then
			case ":${PKG_CONFIG_PATH:-}:" in
			*":$prefix/lib/pkgconfig:"*) ;;
			*) PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" ;;
			esac
			continue
		fi
		if [ "$prefix" = system ]; then
			libdir=$(pkg-config --variable=libdir "$name" 2>/dev/null) || continue
		else
			[ -d "$prefix/lib/pkgconfig" ] || continue
			libdir=$prefix/lib
			case ":${PKG_CONFIG_PATH:-}:" in
			*":$prefix/lib/pkgconfig:"*) ;;
			*) PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" ;;
			esac
			case " ${CGO_CFLAGS:-} " in
			*" -I$prefix/include "*) ;;
			*)
				# Go's default for an unset CGO_CFLAGS is "-g -O2"; keep it.
				CGO_CFLAGS="${CGO_CFLAGS:--g -O2} -I$prefix/include"
				CGO_CXXFLAGS="${CGO_CXXFLAGS:--g -O2} -I$prefix/include"
				;;
			esac
		fi
		[ -n "$libdir" ] || continue
		case " ${CGO_LDFLAGS:-} " in
		*" -Wl,-rpath,$libdir "*) ;;
		*) CGO_LDFLAGS="${CGO_LDFLAGS:+$CGO_LDFLAGS }-L$libdir -Wl,-rpath,$libdir" ;;
		esac
	done
	export PKG_CONFIG_PATH CGO_CFLAGS CGO_CXXFLAGS CGO_LDFLAGS
}
_stoker_env
_stoker_rc=$?
unset -f _stoker_env
# A bad STOKER_GPU fails the `.` (and, under set -e, the sourcing script).
return "$_stoker_rc" 2>/dev/null || true
