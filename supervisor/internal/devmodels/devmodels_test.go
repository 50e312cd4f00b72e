package devmodels

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stokerhq/stoker/onnx-plugin/lamamodel"
	"github.com/stokerhq/stoker/sdcpp-plugin/sdmodel"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// countWrites wraps every generator so the test can see how often Ensure
// runs it, restoring the table when the test ends.
func countWrites(t *testing.T) map[string]int {
	t.Helper()
	saved := models
	t.Cleanup(func() { models = saved })
	models = slices.Clone(models)
	counts := map[string]int{}
	for i := range models {
		id, write := models[i].id, models[i].write
		models[i].write = func(w io.Writer) error {
			counts[id]++
			return write(w)
		}
	}
	return counts
}

func TestEnsureWritesAndRepairs(t *testing.T) {
	dir := t.TempDir()
	writes := countWrites(t)
	ensure := func(want map[string]int) []Model {
		t.Helper()
		clear(writes)
		ms, err := Ensure(dir)
		if err != nil {
			t.Fatal(err)
		}
		for id, n := range want {
			if writes[id] != n {
				t.Errorf("%s generated %d times, want %d", id, writes[id], n)
			}
		}
		return ms
	}

	// A fresh directory: the unpinned models are generated into a hash and
	// then into the file; tiny-sd, pinned, only into the file.
	first := ensure(map[string]int{"tiny-llama": 2, "tiny-whisper": 2, "tiny-sd": 1, "tiny-lama": 1})
	if len(first) != 4 {
		t.Fatalf("got %d models, want 4", len(first))
	}
	// A stale or damaged file is rewritten to this build's content; a
	// current tiny-sd is only read.
	if err := os.WriteFile(filepath.Join(dir, first[0].Filename), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	again := ensure(map[string]int{"tiny-llama": 2, "tiny-whisper": 1, "tiny-sd": 0, "tiny-lama": 0})
	for i := range first {
		if again[i].SHA256 != first[i].SHA256 || again[i].Size != first[i].Size || again[i].Size < 1000 {
			t.Errorf("%s: got %s (%d bytes), want %s (%d bytes)", first[i].ID, again[i].SHA256, again[i].Size, first[i].SHA256, first[i].Size)
		}
	}
	sd := first[2]
	if err := os.WriteFile(sd.Path, []byte("a model from an older build"), 0o644); err != nil {
		t.Fatal(err)
	}
	repaired := ensure(map[string]int{"tiny-sd": 1})
	if got := repaired[2]; got.SHA256 != sdmodel.TinySDSHA256 || got.Size != sdmodel.TinySDSize {
		t.Errorf("tiny-sd: got %s (%d bytes), want %s (%d bytes)", got.SHA256, got.Size, sdmodel.TinySDSHA256, sdmodel.TinySDSize)
	}
	if err := os.WriteFile(first[3].Path, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	repaired = ensure(map[string]int{"tiny-sd": 0, "tiny-lama": 1})
	if got := repaired[3]; got.SHA256 != lamamodel.TinyLaMaSHA256 || got.Size != lamamodel.TinyLaMaSize {
		t.Errorf("tiny-lama: got %s (%d bytes), want %s (%d bytes)", got.SHA256, got.Size, lamamodel.TinyLaMaSHA256, lamamodel.TinyLaMaSize)
	}
}

func TestEnsureCatalogFacts(t *testing.T) {
	d := sdmodel.TinySDDefaults()
	tests := []struct {
		id, engine, filename string
		defaults             protocol.ModelCliDefaults
		contextSize          uint32
	}{
		{"tiny-llama", protocol.EngineLlamaCpp, "tiny-llama.gguf", protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1}, 512},
		{"tiny-whisper", "whisper-cpp", "tiny-whisper.bin", protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1}, 0},
		{"tiny-sd", protocol.EngineSdCpp, "tiny-sd.gguf", protocol.ModelCliDefaults{
			CfgScale: d.CfgScale, Steps: uint32(d.Steps), Width: uint32(d.Width), Height: uint32(d.Height), SamplingMethod: d.SamplingMethod,
		}, 0},
		{"tiny-lama", protocol.EngineOnnx, "tiny-lama.onnx", protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 64, Height: 64}, 0},
	}
	if len(models) != len(tests) {
		t.Fatalf("got %d models, want %d", len(models), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			m := models[i]
			if m.id != tt.id || m.engine != tt.engine || m.filename != tt.filename {
				t.Errorf("got %s %s %s, want %s %s %s", m.id, m.engine, m.filename, tt.id, tt.engine, tt.filename)
			}
			got := m.defaults()
			var cs uint32
			if got.ContextSize != nil {
				cs = *got.ContextSize
			}
			got.ContextSize = nil
			if got.CfgScale != tt.defaults.CfgScale || got.Steps != tt.defaults.Steps || got.Width != tt.defaults.Width ||
				got.Height != tt.defaults.Height || got.SamplingMethod != tt.defaults.SamplingMethod || cs != tt.contextSize {
				t.Errorf("defaults %+v context %d, want %+v context %d", got, cs, tt.defaults, tt.contextSize)
			}
		})
	}
	if d.Width != 64 || d.Height != 64 || d.Steps != 2 {
		t.Errorf("tiny-sd defaults %+v, want 64x64 in 2 steps", d)
	}
}
