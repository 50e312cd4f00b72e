package plugins

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// EnvGPU names the environment variable through which the supervisor
// tells a plugin the index of the one GPU it is to use (the agent's gpu
// setting, for one agent per GPU). The supervisor sets the device
// libraries' own variables along with it (CUDA_VISIBLE_DEVICES,
// HIP_VISIBLE_DEVICES, GGML_VK_VISIBLE_DEVICES), so that a plugin on CUDA,
// ROCm or ggml sees that GPU alone, as its device 0; a plugin that picks
// devices some other way reads it with [GPU].
const EnvGPU = "STOKER_PLUGIN_GPU"

// GPUVisibleDevices are the variables through which the GPU libraries
// restrict a process to some devices; the supervisor sets each to the
// agent's gpu setting.
var GPUVisibleDevices = []string{"CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GGML_VK_VISIBLE_DEVICES"}

// GPU returns the index of the GPU the supervisor gave this plugin
// ([EnvGPU]), and false when it gave none (the plugin may use any).
func GPU() (int, bool) {
	n, err := strconv.Atoi(os.Getenv(EnvGPU))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// HostDevice describes this machine as a Device of the given backend: the
// CPU's model name and the memory's total and available bytes, read from
// /proc on Linux (elsewhere the name is the architecture and the memory
// unknown). It is for engines that run on the CPU, or that cannot ask
// their library which device they use.
func HostDevice(backend string) Device {
	d := Device{Backend: backend, Name: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				d.Name = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				switch f[0] {
				case "MemTotal:":
					d.MemoryTotal = kb << 10
				case "MemAvailable:":
					d.MemoryFree = kb << 10
				}
			}
		}
	}
	return d
}
