// Package devmodels makes the small real models that `stoker agent -dev`
// puts in the dev studio's catalog (tiny-llama for llama.cpp, tiny-whisper
// for whisper.cpp, tiny-sd for stable-diffusion.cpp, tiny-lama for the
// onnx plugin's LaMa object removal), so a fresh machine
// serves real engine jobs with nothing downloaded; and, when espeak-ng is
// installed, the model "espeak" (engine espeak-ng, no files), which the
// Python example plugin espeak-tts-plugin serves. The models are
// random-weight and small: their output is noise, but every byte goes
// through the real engines.
package devmodels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
	"github.com/stokerhq/stoker/onnx-plugin/lamamodel"
	"github.com/stokerhq/stoker/sdcpp-plugin/sdmodel"
	"github.com/stokerhq/stoker/supervisor/internal/devstudio"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
	"github.com/stokerhq/stoker/whisper-plugin/ggmlmodel"
)

// Model is one generated dev model.
type Model struct {
	ID       string // catalog id, e.g. "tiny-llama"
	Engine   string // ModelSource engine id
	Filename string
	Path     string
	SHA256   string
	Size     int64
	// CliDefaults are the model's catalog defaults.
	CliDefaults protocol.ModelCliDefaults
}

// models lists what Ensure makes.
var models = []struct {
	id, engine, filename string
	write                func(io.Writer) error
	// sha256, when set, is the digest the generator is pinned to (its
	// package's tests keep it true): Ensure compares the file with it and
	// runs the generator only to replace the file. Unpinned models are
	// generated into a hash on every Ensure, which is cheap for small ones
	// and would double the start-up time of tiny-sd (about 190 MB).
	sha256   string
	defaults func() protocol.ModelCliDefaults
}{
	// The image fields of the models that make no images are placeholders
	// (the catalog requires them).
	{id: "tiny-llama", engine: protocol.EngineLlamaCpp, filename: "tiny-llama.gguf", write: gguf.WriteTinyLlama, defaults: func() protocol.ModelCliDefaults {
		cs := uint32(512)
		return protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1, ContextSize: &cs}
	}},
	{id: "tiny-whisper", engine: "whisper-cpp", filename: "tiny-whisper.bin", write: ggmlmodel.WriteTinyWhisper, defaults: func() protocol.ModelCliDefaults {
		return protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1}
	}},
	{id: "tiny-sd", engine: protocol.EngineSdCpp, filename: sdmodel.TinySDFilename, write: sdmodel.WriteTinySD, sha256: sdmodel.TinySDSHA256, defaults: func() protocol.ModelCliDefaults {
		d := sdmodel.TinySDDefaults()
		return protocol.ModelCliDefaults{
			CfgScale: d.CfgScale, Steps: uint32(d.Steps), Width: uint32(d.Width), Height: uint32(d.Height),
			SamplingMethod: d.SamplingMethod,
		}
	}},
	// tiny-lama takes its size from the job's init image; 64×64 is a
	// placeholder like the other image fields.
	{id: "tiny-lama", engine: protocol.EngineOnnx, filename: lamamodel.TinyLaMaFilename, write: lamamodel.WriteTinyLaMa, sha256: lamamodel.TinyLaMaSHA256, defaults: func() protocol.ModelCliDefaults {
		return protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 64, Height: 64}
	}},
}

// Ensure makes every dev model in dir, rewriting a file whose content is
// not what this build's generator makes (a model left by an older build),
// and returns them with their checksums. A model with a pinned digest costs
// one read of its file when the file is current.
func Ensure(dir string) ([]Model, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devmodels: %w", err)
	}
	var out []Model
	for _, m := range models {
		path := filepath.Join(dir, m.filename)
		want := m.sha256
		if want == "" {
			h := sha256.New()
			if err := m.write(h); err != nil {
				return nil, fmt.Errorf("devmodels: %s: %w", m.id, err)
			}
			want = hex.EncodeToString(h.Sum(nil))
		}
		sum, size, err := hashFile(path)
		if err != nil || sum != want {
			if err := writeAtomic(path, m.write); err != nil {
				return nil, fmt.Errorf("devmodels: %s: %w", m.id, err)
			}
			if sum, size, err = hashFile(path); err != nil {
				return nil, fmt.Errorf("devmodels: %s: %w", m.id, err)
			}
			if m.sha256 != "" && sum != m.sha256 {
				return nil, fmt.Errorf("devmodels: %s: generator wrote sha256 %s, want its pinned %s", m.id, sum, m.sha256)
			}
		}
		out = append(out, Model{ID: m.id, Engine: m.engine, Filename: m.filename, Path: path, SHA256: sum, Size: size, CliDefaults: m.defaults()})
	}
	return out, nil
}

// EspeakModel is the catalog id of the espeak-ng speech model.
const EspeakModel = "espeak"

// EspeakEngine is its engine id, the one the espeak-tts plugin serves.
const EspeakEngine = "espeak-ng"

// AddToCatalog adds each model to the dev studio's catalog, served from
// the studio's dev files route (the worker downloads and verifies them like
// any model), and the model "espeak" when espeak-ng is on PATH: it has no
// files (espeak-ng's voices come with the Debian package).
func AddToCatalog(s *devstudio.Server, cat *devstudio.Catalog, ms []Model) error {
	if _, err := exec.LookPath("espeak-ng"); err == nil {
		err := cat.Add(EspeakModel, devstudio.CatalogEntry{Source: protocol.ModelSource{
			Engine: EspeakEngine,
			Files:  []protocol.ModelFile{},
			// The image fields are placeholders (the catalog requires them).
			CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
		}})
		if err != nil {
			return err
		}
	}
	for _, m := range ms {
		size := uint64(m.Size)
		d := m.CliDefaults
		err := cat.Add(m.ID, devstudio.CatalogEntry{Source: protocol.ModelSource{
			Engine: m.Engine,
			Files: []protocol.ModelFile{{
				Role: protocol.RoleModel, URL: s.DevFileURL(m.Filename), Filename: m.Filename,
				ApproxBytes: &size, Sha256: m.SHA256,
			}},
			CliDefaults: &d,
		}, VramGbEstimate: 0.1})
		if err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".devmodel-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
