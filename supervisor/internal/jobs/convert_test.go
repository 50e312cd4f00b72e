package jobs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stokerhq/stoker/plugins"
	"github.com/stokerhq/stoker/supervisor/internal/models"
	"github.com/stokerhq/stoker/supervisor/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata/requests from what the runner builds now")

// storeModels is a model store that "has" every file of a claim at
// /models/<model>/<filename> and fetches each input to <dir>/<kind>.
type storeModels struct{}

func (storeModels) Acquire(_ context.Context, model string, files []models.File) ([]models.Local, *models.Lease, error) {
	var out []models.Local
	for _, f := range files {
		out = append(out, models.Local{Role: f.Role, Path: "/models/" + model + "/" + f.Filename})
	}
	return out, nil, nil
}

func (storeModels) FetchInput(_ context.Context, _ string, kind models.InputKind, dir string) (string, error) {
	return filepath.Join(dir, kind.String()), nil
}

// loadOffers reads every claim under testdata/offers, by file name.
func loadOffers(t *testing.T) map[string]*protocol.JobOfferClaim {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "offers", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no offers in testdata/offers: %v", err)
	}
	out := map[string]*protocol.JobOfferClaim{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c protocol.JobOfferClaim
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s is not a valid claim: %v", p, err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = &c
	}
	return out
}

// TestOfferToRunRequest: every kind's offer, with nothing optional set (the
// spec's defaults apply) and with everything set, becomes the engine
// request in testdata/requests (go test -run TestOfferToRunRequest -update
// rewrites them; review the diff). The request is built the way a job's
// is, by the runner's prepare, model files and inputs included.
func TestOfferToRunRequest(t *testing.T) {
	offers := loadOffers(t)
	kinds := map[protocol.TaskKind][]string{}
	for name, c := range offers {
		kinds[c.Task.Kind] = append(kinds[c.Task.Kind], name)
	}
	for _, k := range protocol.Kinds() {
		if len(kinds[k]) < 2 {
			t.Errorf("kind %s has offers %v, want a minimal and a full one", k, kinds[k])
		}
	}
	r, err := New(Config{Engines: fakeEngines{}, Models: storeModels{}, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range offers {
		t.Run(name, func(t *testing.T) {
			dir := &scratch{parent: t.TempDir(), prefix: "job-"}
			req, _, err := r.prepare(context.Background(), c, dir)
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			got := goldenJSON(t, req, dir.dir)
			path := filepath.Join("testdata", "requests", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("request for %s differs from %s (run with -update and review the diff):\n%s", name, path, got)
			}
		})
	}
}

// goldenJSON renders req as indented JSON, with the job's scratch dir as
// $SCRATCH and the JSON held in []byte fields as JSON rather than base64.
func goldenJSON(t *testing.T, req *plugins.RunRequest, scratchDir string) []byte {
	t.Helper()
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	unbase64(t, v)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if scratchDir != "" {
		out = bytes.ReplaceAll(out, []byte(scratchDir), []byte("$SCRATCH"))
	}
	return append(out, '\n')
}

// jsonBytesFields are the []byte fields of the request that hold JSON.
var jsonBytesFields = map[string]bool{"JSONSchema": true, "ChatTemplateKwargs": true}

func unbase64(t *testing.T, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && jsonBytesFields[k] {
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				v[k] = json.RawMessage(b)
				continue
			}
			unbase64(t, x)
		}
	case []any:
		for _, x := range v {
			unbase64(t, x)
		}
	}
}

// TestPromptsAgree: the prompt sent with a result (protocol.Task.Prompt,
// spec §7.4) and the engine request's (plugins.Task.Prompt) are the same
// for every offer, the defaults applied in between changing nothing.
func TestPromptsAgree(t *testing.T) {
	tasks := map[string]protocol.Task{
		"llm without messages": {Kind: protocol.KindLLM, LLM: &protocol.LlmParams{}},
		"no parameters":        {Kind: protocol.KindImage},
	}
	for name, c := range loadOffers(t) {
		tasks[name] = *c.Task
	}
	for name, task := range tasks {
		pt := taskFromClaim(task)
		if got, want := pt.Prompt(), task.Prompt(); got != want {
			t.Errorf("%s: plugins prompt %q, protocol prompt %q", name, got, want)
		}
	}
}
