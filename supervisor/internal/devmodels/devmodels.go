// Package devmodels makes the small real models that `stoker agent -dev`
// puts in the dev studio's catalog (tiny-llama for llama.cpp, tiny-whisper
// for whisper.cpp), so a fresh machine serves real engine jobs with nothing
// downloaded. The models are random-weight and tiny: their output is noise,
// but every byte goes through the real engines.
package devmodels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/stokerhq/stoker/llamacpp-plugin/gguf"
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
	// ContextSize is set for LLMs.
	ContextSize uint32
}

// models lists what Ensure makes.
var models = []struct {
	id, engine, filename string
	contextSize          uint32
	write                func(io.Writer) error
}{
	{"tiny-llama", protocol.EngineLlamaCpp, "tiny-llama.gguf", 512, gguf.WriteTinyLlama},
	{"tiny-whisper", "whisper-cpp", "tiny-whisper.bin", 0, ggmlmodel.WriteTinyWhisper},
}

// Ensure makes every dev model in dir, rewriting a file whose content is
// not what this build's generator makes (a model left by an older build),
// and returns them with their checksums.
func Ensure(dir string) ([]Model, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devmodels: %w", err)
	}
	var out []Model
	for _, m := range models {
		path := filepath.Join(dir, m.filename)
		h := sha256.New()
		if err := m.write(h); err != nil {
			return nil, fmt.Errorf("devmodels: %s: %w", m.id, err)
		}
		want := hex.EncodeToString(h.Sum(nil))
		sum, size, err := hashFile(path)
		if err != nil || sum != want {
			if err := writeAtomic(path, m.write); err != nil {
				return nil, fmt.Errorf("devmodels: %s: %w", m.id, err)
			}
			if sum, size, err = hashFile(path); err != nil {
				return nil, fmt.Errorf("devmodels: %s: %w", m.id, err)
			}
		}
		out = append(out, Model{ID: m.id, Engine: m.engine, Filename: m.filename, Path: path, SHA256: sum, Size: size, ContextSize: m.contextSize})
	}
	return out, nil
}

// AddToCatalog adds each model to the dev studio's catalog, served from
// the studio's dev files route (the worker downloads and verifies them like
// any model).
func AddToCatalog(s *devstudio.Server, cat *devstudio.Catalog, ms []Model) error {
	for _, m := range ms {
		size := uint64(m.Size)
		d := &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1}
		if m.ContextSize > 0 {
			cs := m.ContextSize
			d.ContextSize = &cs
		}
		err := cat.Add(m.ID, devstudio.CatalogEntry{Source: protocol.ModelSource{
			Engine: m.Engine,
			Files: []protocol.ModelFile{{
				Role: protocol.RoleModel, URL: s.DevFileURL(m.Filename), Filename: m.Filename,
				ApproxBytes: &size, Sha256: m.SHA256,
			}},
			CliDefaults: d,
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
