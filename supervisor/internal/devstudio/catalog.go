package devstudio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

// CatalogEntry is one model the studio can attach to an offer: the model
// source sent in every claim, and the studio's VRAM estimate used for
// selection (vramThresholdGb >= vramGbEstimate).
type CatalogEntry struct {
	Source         protocol.ModelSource
	VramGbEstimate float32
}

// Catalog maps studio model ids to entries. It is safe for concurrent use;
// entries may be added while the server runs.
type Catalog struct {
	mu      sync.Mutex
	entries map[string]CatalogEntry // guarded by mu
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog { return &Catalog{entries: map[string]CatalogEntry{}} }

// SyntheticModels are the ids of the built-in synthetic models.
var syntheticModels = []string{"synthetic", "synthetic-image", "synthetic-llm", "synthetic-stt", "synthetic-tts", "synthetic-video"}

// DefaultCatalog returns a catalog holding the synthetic models, each
// {engine:"synthetic", files:[], cliDefaults:{1,1,1,1}} (dummy numbers, as
// spec §6.3 notes non-image models send).
func DefaultCatalog() *Catalog {
	c := NewCatalog()
	for _, id := range syntheticModels {
		c.entries[id] = CatalogEntry{Source: protocol.ModelSource{
			Engine:      protocol.EngineSynthetic,
			Files:       []protocol.ModelFile{},
			CliDefaults: &protocol.ModelCliDefaults{CfgScale: 1, Steps: 1, Width: 1, Height: 1},
		}}
	}
	return c
}

// Add adds or replaces the entry for id after validating its model source.
func (c *Catalog) Add(id string, e CatalogEntry) error {
	if id == "" {
		return fmt.Errorf("catalog: empty model id")
	}
	if err := e.Source.Validate(); err != nil {
		return fmt.Errorf("catalog: model %q: %w", id, err)
	}
	if e.VramGbEstimate < 0 {
		return fmt.Errorf("catalog: model %q: negative vramGbEstimate", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[id] = e
	return nil
}

// Get returns the entry for id.
func (c *Catalog) Get(id string) (CatalogEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	return e, ok
}

// IDs returns the model ids, sorted.
func (c *Catalog) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.entries))
	for id := range c.entries {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// LoadCatalog reads a catalog file: a JSON object mapping model ids to a
// ModelSource (engine, files, cliDefaults) plus an optional vramGbEstimate.
// The result holds the built-in synthetic models plus the file's entries
// (which win on a clash). Unknown keys in an entry, a model source that
// fails validation, or a file that is not such an object are errors naming
// the model.
func LoadCatalog(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	c, err := parseCatalog(b)
	if err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	return c, nil
}

func parseCatalog(b []byte) (*Catalog, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("catalog is not a JSON object")
	}
	c := DefaultCatalog()
	ids := make([]string, 0, len(raw))
	for id := range raw {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw[id], &keys); err != nil || keys == nil {
			return nil, fmt.Errorf("model %q: not an object", id)
		}
		for k := range keys {
			switch k {
			case "engine", "files", "cliDefaults", "vramGbEstimate":
			default:
				return nil, fmt.Errorf("model %q: unknown key %q", id, k)
			}
		}
		var e CatalogEntry
		if err := json.Unmarshal(raw[id], &e.Source); err != nil {
			return nil, fmt.Errorf("model %q: %w", id, err)
		}
		var v struct {
			Vram *float32 `json:"vramGbEstimate"`
		}
		if err := json.Unmarshal(raw[id], &v); err != nil {
			return nil, fmt.Errorf("model %q: %w", id, err)
		}
		if v.Vram != nil {
			e.VramGbEstimate = *v.Vram
		}
		if err := c.Add(id, e); err != nil {
			return nil, err
		}
	}
	return c, nil
}
