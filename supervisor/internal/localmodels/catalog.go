// Package localmodels is the node's own model catalog for local jobs (the
// local API's /image, /models and OpenAI routes): model ids mapped to the
// studio's ModelSource shape (spec §6.3), kept in a JSON file so what an
// operator adds survives a restart. A local job's model files are fetched,
// verified and cached by the model store exactly as a studio job's are,
// on first use.
//
// The file is created with the seed models (a sensible default image
// model on a production node; the dev models under -dev) when it does not
// exist; after that it holds what the operator made of it. Model ids are
// plain names (they name the model's cache directory, spec §6.6), and the
// catalog is bounded in entries and in file size.
package localmodels

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// FileName is the catalog's file name in the agent's state dir.
const FileName = "local-models.json"

// MaxModels bounds the catalog's entries and MaxFileBytes its file: a node
// serves a handful of models; the bounds keep a hostile or mistaken POST
// loop from filling the disk or the memory.
const (
	MaxModels    = 256
	MaxFileBytes = 4 << 20
)

// Model is one catalog entry: an id and the studio's ModelSource fields
// (engine, files, cliDefaults) beside it.
type Model struct {
	ID          string                     `json:"id"`
	Engine      string                     `json:"engine"`
	Files       []protocol.ModelFile       `json:"files"`
	CliDefaults *protocol.ModelCliDefaults `json:"cliDefaults"`
}

// Source returns the model's ModelSource, as a studio would attach it to
// an offer.
func (m *Model) Source() protocol.ModelSource {
	files := m.Files
	if files == nil {
		files = []protocol.ModelFile{}
	}
	return protocol.ModelSource{Engine: m.Engine, Files: files, CliDefaults: m.CliDefaults}
}

// ErrInvalid wraps every refusal of a model or id (a client's mistake);
// ErrNotFound is the answer for an id the catalog does not hold; ErrFull
// for an add past MaxModels.
var (
	ErrInvalid  = errors.New("invalid model")
	ErrNotFound = errors.New("no such model")
	ErrFull     = errors.New("the local model catalog is full")
)

// validID: a plain name that is safe as a directory name (no separators,
// no leading dot, no "..") and short.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckID returns an ErrInvalid error unless id is a valid model id.
func CheckID(id string) error {
	if !validID.MatchString(id) || id == "." || id == ".." {
		return fmt.Errorf("%w: model id %.64q: want 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, id)
	}
	return nil
}

// Check returns an ErrInvalid error unless m is a valid entry: a valid
// id and a ModelSource the studio protocol accepts.
func (m *Model) Check() error {
	if err := CheckID(m.ID); err != nil {
		return err
	}
	src := m.Source()
	if err := src.Validate(); err != nil {
		return fmt.Errorf("%w: model %q: %v", ErrInvalid, m.ID, err)
	}
	return nil
}

// Catalog is the local model catalog. Create it with Open; its methods
// may be called from any goroutine.
type Catalog struct {
	path string

	mu     sync.Mutex // guards models and the file
	models []Model    // sorted by id
}

// Open reads the catalog at path, creating the file with seed when it
// does not exist. A seed entry that is invalid is an error (it is the
// program's, not the operator's); an invalid file is an error that says
// what to fix.
func Open(path string, seed []Model) (*Catalog, error) {
	c := &Catalog{path: path}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		for _, m := range seed {
			if err := m.Check(); err != nil {
				return nil, fmt.Errorf("localmodels: seed: %w", err)
			}
		}
		c.models = sortedCopy(seed)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := c.saveLocked(); err != nil {
			return nil, err
		}
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("localmodels: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("localmodels: %w", err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("localmodels: %s is over %d bytes", path, MaxFileBytes)
	}
	var file catalogFile
	if err := json.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("localmodels: %s: %w (fix it, or delete it to start from the default models)", path, err)
	}
	if len(file.Models) > MaxModels {
		return nil, fmt.Errorf("localmodels: %s holds %d models, over the limit of %d", path, len(file.Models), MaxModels)
	}
	seen := map[string]bool{}
	for _, m := range file.Models {
		if err := m.Check(); err != nil {
			return nil, fmt.Errorf("localmodels: %s: %w", path, err)
		}
		if seen[m.ID] {
			return nil, fmt.Errorf("localmodels: %s: model %q twice", path, m.ID)
		}
		seen[m.ID] = true
	}
	c.models = sortedCopy(file.Models)
	return c, nil
}

// catalogFile is the file's shape.
type catalogFile struct {
	Models []Model `json:"models"`
}

func sortedCopy(ms []Model) []Model {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b Model) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// List returns every model, sorted by id.
func (c *Catalog) List() []Model {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.models)
}

// Get returns the model with id.
func (c *Catalog) Get(id string) (Model, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.findLocked(id)
	if !ok {
		return Model{}, false
	}
	return c.models[i], true
}

func (c *Catalog) findLocked(id string) (int, bool) {
	return slices.BinarySearchFunc(c.models, id, func(m Model, id string) int {
		switch {
		case m.ID < id:
			return -1
		case m.ID > id:
			return 1
		}
		return 0
	})
}

// Put adds m, or replaces the model with its id, and saves the file; on
// a failed save the catalog is left as it was.
func (c *Catalog) Put(m Model) error {
	if err := m.Check(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := slices.Clone(c.models)
	if i, ok := c.findLocked(m.ID); ok {
		c.models[i] = m
	} else {
		if len(c.models) >= MaxModels {
			return fmt.Errorf("%w: %d models, the limit", ErrFull, MaxModels)
		}
		c.models = slices.Insert(c.models, i, m)
	}
	if err := c.saveLocked(); err != nil {
		c.models = old
		return err
	}
	return nil
}

// Delete removes the model with id and saves the file.
func (c *Catalog) Delete(id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.findLocked(id)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	old := slices.Clone(c.models)
	c.models = slices.Delete(c.models, i, i+1)
	if err := c.saveLocked(); err != nil {
		c.models = old
		return err
	}
	return nil
}

// saveLocked writes the file atomically (a temporary file renamed over
// it), owner-only.
func (c *Catalog) saveLocked() error {
	b, err := json.MarshalIndent(catalogFile{Models: c.models}, "", "  ")
	if err != nil {
		return fmt.Errorf("localmodels: encode: %w", err)
	}
	if len(b) > MaxFileBytes {
		return fmt.Errorf("%w: the catalog would be over %d bytes", ErrFull, MaxFileBytes)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".local-models-*")
	if err != nil {
		return fmt.Errorf("localmodels: save: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("localmodels: save: %w", werr)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		return fmt.Errorf("localmodels: save: %w", err)
	}
	return nil
}

// DefaultModels are what a new catalog holds on a production node: one
// image model, so that POST /image works with no setup. SD-Turbo
// (stabilityai/sd-turbo, a one-step distilled SD 2.1, 512×512) is small
// enough for most GPUs and fast on a CPU; stable-diffusion.cpp loads its
// safetensors checkpoint directly. Its file is fetched on first use, like
// any model; no checksum is pinned (add sha256 with POST /models to have
// it verified).
func DefaultModels() []Model {
	return []Model{{
		ID:     "sd-turbo",
		Engine: protocol.EngineSdCpp,
		Files: []protocol.ModelFile{{
			Role:     protocol.RoleModel,
			URL:      "https://huggingface.co/stabilityai/sd-turbo/resolve/main/sd_turbo.safetensors",
			Filename: "sd_turbo.safetensors",
		}},
		CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 512, Height: 512, SamplingMethod: "euler_a"},
	}}
}
