#!/usr/bin/env bash
# gpu-check.sh runs the llama plugin's GPU checks on a machine with a real
# GPU that has no Go and no network, from what scripts/gpu-check-pack.sh put
# into .gpucheck/ here:
#
#   (a) Vulkan: the plugin's tests linked against the Vulkan libraries of the
#       engines cache (@node-llama-cpp/linux-x64-vulkan) on the machine's
#       Vulkan driver: TestGPUBackend (backend vulkan with the device's name
#       and memory, every layer offloaded, greedy tokens equal to the CPU's)
#       and TestParityWithLlamaSimple (the text of the CPU build's
#       llama-simple).
#   (b) CUDA, when nvcc is there: ggml-cuda built from the same llama.cpp
#       source as the engine scripts use (CMAKE_CUDA_ARCHITECTURES, default
#       90), and the same two tests on it, with the tests built against the
#       CPU build (the same library names).
#
#   scripts/gpu-check.sh                 results in $OUT (else ./gpucheck-out)
#
# Settings: GPUCHECK_DIR (default <repo>/.gpucheck), GPUCHECK_BUDGET_S (the
# whole run's time, default 585 s: each step gets what is left, less what the
# steps after it need), GPUCHECK_CUDA_ARCH (90), GPUCHECK_JOBS (nproc),
# GPUCHECK_SKIP_CUDA=1.
#
# Each step has a timeout and prints what it found; the results are
# summary.txt (one line per step, then the figures), machine.txt, vulkan.log,
# cuda-build.log (its last lines), cuda.log and, when time is left at the
# end, vulkan-all.log (the plugin's whole suite on Vulkan) in $OUT. The exit status is 0
# when every step that ran passed.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
G=${GPUCHECK_DIR:-$root/.gpucheck}
OUT=${OUT:-$PWD/gpucheck-out}
budget=${GPUCHECK_BUDGET_S:-585}
arch=${GPUCHECK_CUDA_ARCH:-90}
jobs=${GPUCHECK_JOBS:-$(nproc)}
work=/tmp/gpucheck
mkdir -p "$OUT"
summary=$OUT/summary.txt
: >"$summary"
failed=0

say() { printf '%s\n' "$*" | tee -a "$summary"; }
# left RESERVE MAX: seconds for the next step: what the budget has left less
# RESERVE (for the steps after it), at most MAX, at least 10.
left() {
	local l=$((budget - SECONDS - $1))
	[ "$l" -gt "$2" ] && l=$2
	[ "$l" -lt 10 ] && l=10
	echo "$l"
}
step() { # NAME RC
	if [ "$2" -eq 0 ]; then
		say "PASS $1"
	elif [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; then
		say "TIMEOUT $1 (rc $2)"
		failed=1
	else
		say "FAIL $1 (rc $2)"
		failed=1
	fi
}

say "gpu-check $(date -u +%FT%TZ) on $(hostname), stoker $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), budget ${budget}s"
[ -f "$G/bundle.tar.xz" ] || {
	say "FAIL no $G/bundle.tar.xz: run scripts/gpu-check-pack.sh where Go is, and carry $G"
	exit 1
}
[ -f "$G/MANIFEST" ] && head -n 2 "$G/MANIFEST" | tee -a "$summary"

# What the machine has.
{
	echo "== nvidia-smi"
	timeout 20 nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version --format=csv 2>&1
	echo "== nvcc"
	timeout 20 nvcc --version 2>&1 || timeout 20 /usr/local/cuda/bin/nvcc --version 2>&1
	echo "== cmake / ninja"
	cmake --version 2>&1 | head -n 1
	ninja --version 2>&1
	echo "== cpu"
	nproc
	grep -m1 'model name' /proc/cpuinfo
	echo "== os"
	head -n 2 /etc/os-release
	ldd --version 2>&1 | head -n 1
	echo "== vulkan loader"
	ldconfig -p | grep -E 'libvulkan\.so' || echo "none in ldconfig"
	echo "== vulkan ICDs"
	ls -l /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
} >"$OUT/machine.txt" 2>&1
sed -n '/^== nvidia-smi/{n;n;p}' "$OUT/machine.txt" | sed 's/^/gpu: /' | tee -a "$summary"

rm -rf "$work"
mkdir -p "$work"
if ! timeout "$(left 400 120)" tar -C "$work" -xJf "$G/bundle.tar.xz" 2>"$work/untar.err"; then
	# No xz program: Python's lzma reads it too.
	timeout "$(left 400 120)" python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$G/bundle.tar.xz" "$work"
fi
step "unpack bundle" $?

# The Vulkan loader: the machine's, else the carried Debian package's,
# unpacked beside the rest (never into /).
vklib=
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
	for deb in "$G"/debs/libvulkan1_*.deb; do
		[ -f "$deb" ] || continue
		dpkg -x "$deb" "$work/root" && vklib=$work/root/usr/lib/x86_64-linux-gnu
	done
	say "vulkan loader: carried ${vklib:-(none: no libvulkan1 .deb in $G/debs)}"
else
	say "vulkan loader: the machine's"
fi
# NVIDIA's ICD where the loader does not look by itself.
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json >/dev/null 2>&1; then
	for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/icd.d/nvidia_icd.json; do
		if [ -f "$f" ]; then
			export VK_DRIVER_FILES=$f
			break
		fi
	done
fi
say "vulkan driver: ${VK_DRIVER_FILES:-(the search of the loader)}"

# The CPU build's llama-simple, on its own libraries whatever the tests'
# LD_LIBRARY_PATH says.
cat >"$work/llama-simple" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$work/cpu exec $work/cpu/llama-simple "\$@"
EOF
chmod +x "$work/llama-simple"

tests='^(TestGPUBackend|TestParityWithLlamaSimple)$'
figures() { # LOG
	grep -E 'device: backend|greedy tokens|generated, identical|offloaded|--- (PASS|FAIL)|^(ok|FAIL|panic)' "$1" | sed 's/^ *//' | tee -a "$summary"
}

# (a) Vulkan.
say "== (a) Vulkan"
(
	cd "$root/llamacpp-plugin" &&
		LD_LIBRARY_PATH=$work/vulkan${vklib:+:$vklib} STOKER_TEST_GPU=vulkan LLAMA_SIMPLE=$work/llama-simple \
			timeout "$(left 420 200)" "$work/llamacpp-vulkan.test" -test.v -test.count=1 -test.run "$tests"
) >"$OUT/vulkan.log" 2>&1
rc=$?
figures "$OUT/vulkan.log"
step "vulkan: TestGPUBackend and TestParityWithLlamaSimple" "$rc"

# (b) CUDA.
say "== (b) CUDA"
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ "${GPUCHECK_SKIP_CUDA:-0}" = 1 ]; then
	say "SKIP cuda (GPUCHECK_SKIP_CUDA=1)"
elif [ -z "$nvcc" ]; then
	say "SKIP cuda: no nvcc"
elif [ ! -f "$G/llama-src.tar.xz" ]; then
	say "SKIP cuda: no $G/llama-src.tar.xz"
else
	mkdir -p "$work/src"
	tar -C "$work/src" -xJf "$G/llama-src.tar.xz" 2>/dev/null ||
		python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$G/llama-src.tar.xz" "$work/src"
	gen="Unix Makefiles"
	command -v ninja >/dev/null && gen=Ninja
	{
		echo "== configure ($gen, nvcc $nvcc, CMAKE_CUDA_ARCHITECTURES=$arch)"
		CUDACXX=$nvcc timeout "$(left 200 120)" cmake -S "$work/src" -B "$work/cuda" -G "$gen" \
			-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
			-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_CUDA_NCCL=OFF \
			-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
			-DLLAMA_BUILD_NUMBER=0 -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
			-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF
	} >"$work/cuda-build.log" 2>&1
	rc=$?
	step "cuda: cmake configure" "$rc"
	if [ "$rc" -eq 0 ]; then
		t=$(left 60 520)
		say "cuda: building llama + ggml-cuda with $jobs jobs, at most ${t}s"
		start=$SECONDS
		timeout "$t" cmake --build "$work/cuda" -j "$jobs" --target llama >>"$work/cuda-build.log" 2>&1
		rc=$?
		step "cuda: build ($((SECONDS - start))s)" "$rc"
		if [ "$rc" -eq 0 ]; then
			libs=$(dirname "$(find "$work/cuda" -name 'libllama.so.0' | head -n 1)")
			ls "$libs" >>"$work/cuda-build.log"
			(
				cd "$root/llamacpp-plugin" &&
					LD_LIBRARY_PATH=$libs STOKER_TEST_GPU=cuda LLAMA_SIMPLE=$work/llama-simple \
						timeout "$(left 5 180)" "$work/llamacpp-cpu.test" -test.v -test.count=1 -test.run "$tests"
			) >"$OUT/cuda.log" 2>&1
			rc=$?
			figures "$OUT/cuda.log"
			step "cuda: TestGPUBackend and TestParityWithLlamaSimple" "$rc"
		fi
	fi
	tail -n 300 "$work/cuda-build.log" >"$OUT/cuda-build.log"
fi

# (c) With time to spare: the plugin's whole test suite on the Vulkan GPU
# (residency, cancellation, grammars...), but TestPluginBinary, which needs Go.
if [ $((budget - SECONDS)) -ge 60 ]; then
	say "== (c) the llama plugin's whole suite on Vulkan"
	(
		cd "$root/llamacpp-plugin" &&
			LD_LIBRARY_PATH=$work/vulkan${vklib:+:$vklib} STOKER_TEST_GPU=vulkan LLAMA_SIMPLE=$work/llama-simple \
				timeout "$(left 5 300)" "$work/llamacpp-vulkan.test" -test.v -test.count=1 -test.skip '^TestPluginBinary$'
	) >"$OUT/vulkan-all.log" 2>&1
	rc=$?
	grep -E '^--- FAIL|^(ok|FAIL|PASS)$|^panic' "$OUT/vulkan-all.log" | tee -a "$summary"
	echo "$(grep -c '^--- PASS' "$OUT/vulkan-all.log") tests passed" | tee -a "$summary"
	step "vulkan: the whole suite" "$rc"
fi

say "== done in ${SECONDS}s"
exit "$failed"
