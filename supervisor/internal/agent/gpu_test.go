package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/engines"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// pluginEnvValue asks the faults plugin (its env= fault, through the dev
// studio and the agent) what its environment holds for name.
func (s *crashStack) pluginEnvValue(tb testing.TB, name string) (string, bool) {
	tb.Helper()
	v := s.run(tb, "faults-llm", "env="+name)
	if v.Status != devstudio.JobCompleted {
		tb.Fatalf("env=%s: job %+v", name, v)
	}
	var got struct {
		Value string `json:"value"`
		Set   bool   `json:"set"`
	}
	if err := json.Unmarshal(v.Result, &got); err != nil {
		tb.Fatalf("env=%s: result %s: %v", name, v.Result, err)
	}
	return got.Value, got.Set
}

// TestGPUSettingReachesPlugins: the agent's gpu setting (STOKER_GPU=1, as
// the stoker@.service template sets it) reaches a real plugin process as
// the device libraries' visible-device variables, in place of the agent's
// own CUDA_VISIBLE_DEVICES, and as STOKER_PLUGIN_GPU; without it the
// agent's own pass through and STOKER_PLUGIN_GPU is unset.
func TestGPUSettingReachesPlugins(t *testing.T) {
	t.Setenv("CUDA_VISIBLE_DEVICES", "0,1")
	t.Run("gpu 1", func(t *testing.T) {
		s := startCrashStack(t, crashOptions{env: []string{"STOKER_GPU=1"}})
		for _, name := range append(plugins.GPUVisibleDevices, plugins.EnvGPU) {
			if v, set := s.pluginEnvValue(t, name); !set || v != "1" {
				t.Errorf("plugin's %s = %q (set %v), want 1", name, v, set)
			}
		}
	})
	t.Run("no gpu", func(t *testing.T) {
		s := startCrashStack(t, crashOptions{})
		if v, _ := s.pluginEnvValue(t, "CUDA_VISIBLE_DEVICES"); v != "0,1" {
			t.Errorf("plugin's CUDA_VISIBLE_DEVICES = %q, want the agent's 0,1", v)
		}
		if v, set := s.pluginEnvValue(t, plugins.EnvGPU); set {
			t.Errorf("plugin's %s = %q, want it unset", plugins.EnvGPU, v)
		}
	})
}

// TestDeviceMemoryFollowedInHeartbeats: a plugin whose device memory
// changes while it runs (the faults plugin reading its device from a file
// at every Describe) is asked again every DeviceRefresh, and the studio's
// next heartbeats carry the new vramTotalGb, and with vram_threshold_gb
// unset the vramThresholdGb taken from it; the local status follows the
// free memory. A set vram_threshold_gb wins over the device's.
func TestDeviceMemoryFollowedInHeartbeats(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "device")
	writeDevice := func(totalGiB, freeGiB uint64) {
		t.Helper()
		line := fmt.Sprintf("vulkan %d %d Test GPU %d GiB\n", totalGiB<<30, freeGiB<<30, totalGiB)
		if err := os.WriteFile(dev+".tmp", []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dev+".tmp", dev); err != nil {
			t.Fatal(err)
		}
	}
	writeDevice(8, 6)
	t.Setenv("STOKER_FAULTS_DEVICE", dev)

	s := startCrashStack(t, crashOptions{deviceRefresh: 20 * time.Millisecond})
	caps := func(want string, cond func(c protocol.WorkerCapabilities) bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		id := s.workerID(t, ctx)
		v, err := s.studio.WaitWorker(ctx, id, func(v devstudio.WorkerView) bool { return v.Capabilities != nil && cond(*v.Capabilities) })
		if err != nil {
			t.Fatalf("heartbeats never carried %s: %v; last %+v", want, err, v.Capabilities)
		}
	}
	caps("8 GiB, threshold 8", func(c protocol.WorkerCapabilities) bool { return c.VramTotalGb == 8 && c.VramThresholdGb == 8 })

	writeDevice(16, 3)
	caps("16 GiB, threshold 16", func(c protocol.WorkerCapabilities) bool { return c.VramTotalGb == 16 && c.VramThresholdGb == 16 })
	st := s.waitFaults(t, "reported 3 GiB free", func(st engines.PluginStatus) bool {
		return st.Description != nil && st.Description.Device.MemoryFree == 3<<30
	})
	if d := st.Description.Device; d.Backend != "vulkan" || d.Name != "Test GPU 16 GiB" {
		t.Errorf("device %+v, want the file's", d)
	}

	// The plugin still serves between refreshes.
	if v := s.run(t, "faults-llm", "ok"); v.Status != devstudio.JobCompleted {
		t.Errorf("job %+v, want completed", v)
	}
	s.stop(t)

	s = startCrashStack(t, crashOptions{deviceRefresh: 20 * time.Millisecond, env: []string{"STOKER_VRAM_THRESHOLD_GB=6"}})
	caps("16 GiB, threshold 6 as configured", func(c protocol.WorkerCapabilities) bool { return c.VramTotalGb == 16 && c.VramThresholdGb == 6 })
}

// TestVRAMThresholdWithoutGPU: with vram_threshold_gb unset and only CPU
// plugins, the advertised threshold is the spec's default, 12.
func TestVRAMThresholdWithoutGPU(t *testing.T) {
	s := startCrashStack(t, crashOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := s.studio.WaitWorker(ctx, s.workerID(t, ctx), func(v devstudio.WorkerView) bool { return v.Capabilities != nil })
	if err != nil {
		t.Fatal(err)
	}
	if c := v.Capabilities; c.VramTotalGb != 0 || c.VramThresholdGb != 12 {
		t.Errorf("vramTotalGb %v, vramThresholdGb %v: want 0 and the default 12", c.VramTotalGb, c.VramThresholdGb)
	}
}
