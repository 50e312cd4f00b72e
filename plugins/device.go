package plugins

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

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
